package broker_test

import (
	"context"
	"testing"

	"github.com/keybroker/keybroker/broker"
)

// fixedChecker answers every check with one status, as a provider would.
type fixedChecker struct{ status int }

func (c fixedChecker) Check(context.Context, *broker.Provider, string) broker.CheckResult {
	v := broker.VerdictRefused
	if c.status < 300 {
		v = broker.VerdictAccepted
	}
	return broker.CheckResult{Verdict: v, Status: c.status, Detail: "stand-in"}
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
