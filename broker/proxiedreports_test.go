package broker_test

import (
	"context"
	"testing"

	"github.com/keybroker/keybroker/broker"
)

// TestARefusalTheProxySawCoolsTheKeyForItsCallerAlone: review finding M2
// of issue 28. A refusal the proxy saw (Proxied) about the workspace's own
// key takes the key out of the calling token's chain alone, on this
// replica, and starts keybroker's own check: the caller's next resolve
// (the proxy's retry) is served the next key, every other caller of the
// workspace the first, the workspace's view is unchanged and nothing
// fails while the provider accepts the key. When the provider refuses it
// to keybroker's check, it fails for everyone. A resolver token's own
// report (not Proxied) about its workspace's key still counts for
// everyone at once.
func TestARefusalTheProxySawCoolsTheKeyForItsCallerAlone(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	main := addKey(t, e, pool, "main", 10, "")
	backup := addKey(t, e, pool, "backup", 20, "")
	provider.accept(main, true)
	provider.accept(backup, true)
	const sandbox, other = "ptk_sandbox0123456789", "ptk_other0123456789"
	resolve := func(caller string) broker.Resolution {
		t.Helper()
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai", Caller: caller})
		if err != nil {
			t.Fatalf("resolve as %s: %v", caller, err)
		}
		return r
	}
	proxiedRefusal := func(r broker.Resolution, caller string) broker.ReportResult {
		t.Helper()
		res, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized, Proxied: true})
		if err != nil {
			t.Fatalf("the proxy's report: %v", err)
		}
		return res
	}

	r := resolve(sandbox)
	if r.KeyID != "main" {
		t.Fatalf("before any report: %v", r)
	}
	res := proxiedRefusal(r, sandbox)
	if !res.CallerOnly || res.WorkspaceOnly || !res.Changed || !res.Verifying || res.Health != broker.HealthCoolingDown {
		t.Fatalf("the proxy's report of main: %+v", res)
	}
	if again := proxiedRefusal(r, sandbox); again.Changed {
		t.Fatalf("a repeated report changed the key again: %+v", again)
	}
	if r := resolve(sandbox); r.KeyID != "backup" {
		t.Fatalf("the refused caller's retry: %v, want backup", r)
	}
	if err := e.b.WaitVerifications(ctx); err != nil {
		t.Fatal(err)
	}
	if n := provider.checks.Load(); n != 1 {
		t.Fatalf("%d checks with the provider, want 1", n)
	}
	for _, caller := range []string{other, caller, ""} {
		if r := resolve(caller); r.KeyID != "main" || r.APIKey() != main {
			t.Fatalf("caller %q after another's refused call: %v, want main", caller, r)
		}
	}
	meta, err := e.b.GetKey(ctx, pool.Key("main"))
	if err != nil || meta.Health != broker.HealthHealthy {
		t.Fatalf("main after a refusal the provider does not confirm: %+v %v", meta.Health, err)
	}
	eff, err := e.b.Effective(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range eff {
		if s.Provider == "openai" && (s.ScopeKind != broker.ScopeWorkspace || s.UsableKeys != 2) {
			t.Fatalf("the workspace's view after one caller's refusal: %+v", s)
		}
	}

	// Revoked at the provider: the next refusal the proxy sees (another
	// caller's) is confirmed by keybroker's check and fails main for all.
	provider.accept(main, false)
	r = resolve(other)
	if res := proxiedRefusal(r, other); !res.Changed {
		t.Fatalf("another caller's refusal: %+v", res)
	}
	// The replica checks a key at most once a minute: the next check is
	// the prober's or a test's. A second replica (its own bounds) sees
	// the refusal now.
	replica := e.another(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	r, err = replica.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai", Caller: other})
	if err != nil || r.KeyID != "main" {
		t.Fatalf("the other replica before the check: %v %v", r, err)
	}
	res, err = replica.Report(ctx, broker.ReportRequest{Caller: other, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized, Proxied: true})
	if err != nil || !res.Verifying {
		t.Fatalf("the other replica's report: %+v %v", res, err)
	}
	if err := replica.WaitVerifications(ctx); err != nil {
		t.Fatal(err)
	}
	if meta, err := e.b.GetKey(ctx, pool.Key("main")); err != nil || meta.Health != broker.HealthFailing {
		t.Fatalf("main refused to keybroker's check: %+v %v, want failing", meta.Health, err)
	}
	if r := resolveAs(t, replica, ws); r.KeyID != "backup" {
		t.Fatalf("once main fails: %v", r)
	}
	// A resolver's own report about its workspace's key is taken at its
	// word, for everyone, as before.
	r = resolveAs(t, replica, ws)
	if res, err := replica.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeForbidden}); err != nil ||
		res.CallerOnly || res.Health != broker.HealthFailing {
		t.Fatalf("a resolver's report of backup: %+v %v, want failing for everyone", res, err)
	}
	if meta, err := e.b.GetKey(ctx, pool.Key("backup")); err != nil || meta.Health != broker.HealthFailing {
		t.Fatalf("backup after a resolver's report: %+v %v", meta.Health, err)
	}
}

// TestARefusalTheProxySawOfASharedKeyCoolsItForItsCallerAlone: the same
// about the organization's key: the calling token alone stops being served
// it; the other callers of its workspace are not changed.
func TestARefusalTheProxySawOfASharedKeyCoolsItForItsCallerAlone(t *testing.T) {
	ctx := context.Background()
	g := newSharedGround(t)
	const sandbox = "ptk_sandbox0123456789"
	r, err := g.e.b.Resolve(ctx, broker.ResolveRequest{Workspace: g.tenantA, Provider: "openai", Caller: sandbox})
	if err != nil || r.ScopeKind != broker.ScopeOrganization {
		t.Fatalf("before: %v %v", r, err)
	}
	res, err := g.e.b.Report(ctx, broker.ReportRequest{Caller: sandbox, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized, Proxied: true})
	if err != nil || !res.CallerOnly || !res.Changed || !res.Verifying {
		t.Fatalf("the proxy's report: %+v %v", res, err)
	}
	if r, err := g.e.b.Resolve(ctx, broker.ResolveRequest{Workspace: g.tenantA, Provider: "openai", Caller: sandbox}); err != nil || r.ScopeKind != broker.ScopeHosted {
		t.Fatalf("the refused caller: %v %v, want the next of the chain", r, err)
	}
	if r := g.resolve(t, g.tenantA); r.ScopeKind != broker.ScopeOrganization || r.APIKey() != g.orgKey {
		t.Fatalf("another caller of the same workspace: %v, want the organization's key", r)
	}
	if err := g.e.b.WaitVerifications(ctx); err != nil {
		t.Fatal(err)
	}
	if h := g.health(t, broker.OrganizationScope(g.org).Pool("openai").Key("shared")); h != broker.HealthHealthy {
		t.Fatalf("the organization's key: %s", h)
	}
}
