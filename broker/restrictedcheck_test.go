package broker_test

import (
	"context"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// fixedChecker answers every check with one status, as a provider would.
type fixedChecker struct{ status int }

func (c fixedChecker) Check(context.Context, *providers.Provider, providers.Credential) providers.CheckResult {
	v := providers.VerdictRefused
	if c.status < 300 {
		v = providers.VerdictAccepted
	}
	return providers.CheckResult{Verdict: v, Status: c.status, Detail: "stand-in"}
}

// A refusal the proxy saw is confirmed only by the provider refusing the
// key itself (401, 402) when keybroker checks it. A restricted key (one
// without the permission of the check's endpoint) answers the check with
// 403: that confirms nothing, and the key keeps serving everyone else — a
// tenant cannot knock out a restricted hosted key by calling what it may not.
func TestAForbiddenCheckDoesNotConfirmARefusal(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		status int
		fails  bool
	}{{403, false}, {401, true}} {
		e := newEnv(t, func(cfg *broker.Config) { cfg.Checker = fixedChecker{status: c.status} })
		pool := broker.WorkspaceScope(e.workspc).Pool("openai")
		addKey(t, e, pool, "main", 10, "")
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai", Caller: "ptk_sandbox0123456789"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: "ptk_sandbox0123456789", ResolutionID: r.ResolutionID,
			Outcome: broker.OutcomeUnauthorized, Proxied: true}); err != nil {
			t.Fatal(err)
		}
		if err := e.b.WaitVerifications(ctx); err != nil {
			t.Fatal(err)
		}
		meta, err := e.b.GetKey(ctx, pool.Key("main"))
		if err != nil {
			t.Fatal(err)
		}
		if failing := meta.Health == broker.HealthFailing; failing != c.fails {
			t.Fatalf("check answered %d: health %s, want failing=%v", c.status, meta.Health, c.fails)
		}
	}
}

// A 429 the proxy saw (a sandbox's request over a model's per-minute
// tokens is one) cools the key down for that sandbox alone: the workspace's
// other callers keep its own key, and nothing is written for everyone.
func TestARateLimitTheProxySawCoolsTheKeyForItsCallerAlone(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(cfg *broker.Config) { cfg.Checker = fixedChecker{status: 200} })
	pool := broker.WorkspaceScope(e.workspc).Pool("openai")
	addKey(t, e, pool, "main", 10, "")
	addKey(t, e, pool, "backup", 20, "")
	const sandbox, other = "ptk_sandbox0123456789", "ptk_other0123456789"
	resolve := func(caller string) string {
		t.Helper()
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai", Caller: caller})
		if err != nil {
			t.Fatal(err)
		}
		return r.KeyID
	}
	r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai", Caller: sandbox})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.b.Report(ctx, broker.ReportRequest{Caller: sandbox, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited,
		RetryAfter: broker.MaxRetryAfter, Proxied: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CallerOnly || res.Verifying {
		t.Fatalf("the proxy's 429: %+v, want a cooldown for its caller alone and no check", res)
	}
	if got := resolve(sandbox); got != "backup" {
		t.Fatalf("the limited sandbox gets %s, want backup", got)
	}
	if got := resolve(other); got != "main" {
		t.Fatalf("another caller of the workspace gets %s, want its own main key", got)
	}
	meta, err := e.b.GetKey(ctx, pool.Key("main"))
	if err != nil || meta.Health != broker.HealthHealthy {
		t.Fatalf("main is %s (%v) for everyone, want healthy", meta.Health, err)
	}
}
