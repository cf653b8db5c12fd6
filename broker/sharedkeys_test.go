package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// sharedGround is a platform with an organization key and a hosted key
// (both accepted by the stand-in provider), and three workspaces: two of
// the organization, one on its own.
type sharedGround struct {
	e                      *env
	provider               *openAIStandIn
	org                    string
	orgKey, hostedKey      string
	tenantA, tenantB, solo string
}

func newSharedGround(t *testing.T) *sharedGround {
	t.Helper()
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	g := &sharedGround{e: e, provider: provider, tenantA: e.workspc + "-a", tenantB: e.workspc + "-b", solo: e.workspc + "-solo"}
	org := "org-" + testenv.RandomID(t)
	g.org = org
	g.orgKey = addKey(t, e, broker.OrganizationScope(org).Pool("openai"), "shared", 100, "")
	g.hostedKey = newKey(t, "openai")
	e.setHosted(t, "openai", g.hostedKey)
	provider.accept(g.orgKey, true)
	provider.accept(g.hostedKey, true)
	for _, ws := range []string{g.tenantA, g.tenantB} {
		if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, Organization: &org, MayLink: true}); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// resolverReplica is a replica of mode resolver: the reader identity, no
// writer, and PostgreSQL as the resolver's database role.
func (e *env) resolverReplica(t *testing.T) *broker.Broker {
	t.Helper()
	rs := kbtest.NewResolverStore(t, e.dbURL)
	return e.another(t, func(c *broker.Config) {
		c.Writer, c.Store = nil, nil
		c.Pools, c.Settings, c.Usage, c.Health = rs, rs, rs, rs
	})
}

func (g *sharedGround) resolve(t *testing.T, ws string) broker.Resolution {
	t.Helper()
	return resolveAs(t, g.e.b, ws)
}

func (g *sharedGround) report(t *testing.T, r broker.Resolution, outcome string) broker.ReportResult {
	t.Helper()
	res, err := g.e.b.Report(context.Background(), broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: outcome})
	if err != nil {
		t.Fatalf("report %s: %v", outcome, err)
	}
	return res
}

func (g *sharedGround) health(t *testing.T, ref broker.KeyRef) string {
	t.Helper()
	meta, err := g.e.b.GetKey(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return meta.Health
}

// TestOneTenantsReportsLeaveSharedKeysServingTheOthers: issue 28, item 2.
// Tenant A reports the organization's key and the hosted key refused and
// rate limited, again and again; keybroker checks them with the provider,
// which accepts them: they stay healthy, tenant B and a workspace of no
// organization are served them, and only tenant A is not (429
// keys_cooling_down once nothing else may serve it).
func TestOneTenantsReportsLeaveSharedKeysServingTheOthers(t *testing.T) {
	ctx := context.Background()
	g := newSharedGround(t)
	org, hosted := g.resolve(t, g.tenantB), g.resolve(t, g.solo)
	if org.ScopeKind != broker.ScopeOrganization || hosted.ScopeKind != broker.ScopeHosted {
		t.Fatalf("before any report: %v %v", org, hosted)
	}
	orgRef, hostedRef := broker.OrganizationScope(g.org).Pool("openai").Key("shared"), broker.HostedKey("openai", broker.DefaultKeyID)
	checksBefore := g.provider.checks.Load()

	r := g.resolve(t, g.tenantA)
	if res := g.report(t, r, broker.OutcomeRateLimited); !res.Changed || !res.WorkspaceOnly || res.Health != broker.HealthCoolingDown {
		t.Fatalf("tenant A's rate_limited about the organization's key: %+v", res)
	}
	r = g.resolve(t, g.tenantA)
	if r.ScopeKind != broker.ScopeHosted || r.FallbackReason != broker.ReasonOrganizationKeysUnavailable {
		t.Fatalf("tenant A after its report: %v %q, want the hosted key", r, r.FallbackReason)
	}
	// 50 refusals of the hosted key, at once: one check with the provider.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := g.e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized}); err != nil {
				t.Errorf("report: %v", err)
			}
		})
	}
	wg.Wait()
	if err := g.e.b.WaitVerifications(ctx); err != nil {
		t.Fatal(err)
	}
	if n := g.provider.checks.Load() - checksBefore; n != 1 {
		t.Fatalf("50 reports of one key made %d checks with the provider, want 1", n)
	}
	for _, ref := range []broker.KeyRef{orgRef, hostedRef} {
		if h := g.health(t, ref); h != broker.HealthHealthy {
			t.Fatalf("%s after tenant A's reports: %s, want healthy", ref, h)
		}
	}
	for range 5 {
		if r := g.resolve(t, g.tenantB); r.ScopeKind != broker.ScopeOrganization || r.APIKey() != g.orgKey {
			t.Fatalf("tenant B after tenant A's reports: %v", r)
		}
		if r := g.resolve(t, g.solo); r.ScopeKind != broker.ScopeHosted || r.APIKey() != g.hostedKey {
			t.Fatalf("a workspace of no organization after tenant A's reports: %v", r)
		}
	}
	// Tenant A: nothing may serve it until the earliest cooldown ends.
	_, err := g.e.b.Resolve(ctx, broker.ResolveRequest{Workspace: g.tenantA, Provider: "openai"})
	var cd *broker.CoolingDownError
	if !errors.As(err, &cd) || !errors.Is(err, broker.ErrKeysCoolingDown) || cd.RetryAfter < time.Second || cd.RetryAfter > 37*time.Second ||
		cd.Reason != broker.ReasonOrganizationKeysCoolingDown && cd.Reason != broker.ReasonHostedKeysCoolingDown {
		t.Fatalf("tenant A with both keys cooling down for it: %v, want a CoolingDownError", err)
	}
	// Its "ok" ends its own cooldown of the hosted key, nobody else's.
	if res := g.report(t, r, broker.OutcomeOK); !res.Changed || !res.WorkspaceOnly {
		t.Fatalf("tenant A's ok: %+v", res)
	}
	if r := g.resolve(t, g.tenantA); r.ScopeKind != broker.ScopeHosted {
		t.Fatalf("tenant A after its ok: %v", r)
	}
	// Nothing of it reached the shared keys' trails but keybroker's own
	// check, which names the reporter.
	evs, err := g.e.store.ListAudit(ctx, broker.HostedScope(), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Action == broker.ActionHealth || ev.Action == broker.ActionTest {
			got = append(got, ev.Action+":"+ev.Outcome+":"+ev.Actor)
			if !strings.Contains(ev.Detail, g.tenantA) || strings.Contains(ev.Detail, g.hostedKey) {
				t.Fatalf("the check's audit detail: %q", ev.Detail)
			}
		}
	}
	if strings.Join(got, " ") != "key.test:accepted:"+broker.ActorVerifier {
		t.Fatalf("hosted trail: %v", got)
	}
}

// TestARefusalTheProviderConfirmsFailsASharedKeyForEveryone: tenant A
// reports the organization's key unauthorized, and the provider does
// refuse it when keybroker asks: the key fails for every workspace, with
// keybroker's check in the organization's trail.
func TestARefusalTheProviderConfirmsFailsASharedKeyForEveryone(t *testing.T) {
	ctx := context.Background()
	g := newSharedGround(t)
	g.provider.accept(g.orgKey, false) // revoked at the provider
	// The report reaches a resolver replica: its reader identity and
	// database role check the key and mark it failing.
	replica := g.e.resolverReplica(t)
	r := resolveAs(t, replica, g.tenantA)
	if r.ScopeKind != broker.ScopeOrganization {
		t.Fatalf("tenant A: %v", r)
	}
	res, err := replica.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized})
	if err != nil || !res.WorkspaceOnly || !res.Verifying {
		t.Fatalf("the report: %+v %v, want a check with the provider", res, err)
	}
	if err := replica.WaitVerifications(ctx); err != nil {
		t.Fatal(err)
	}
	ref := broker.OrganizationScope(g.org).Pool("openai").Key("shared")
	if h := g.health(t, ref); h != broker.HealthFailing {
		t.Fatalf("a key the provider refused to keybroker: %s, want failing", h)
	}
	if r := resolveAs(t, replica, g.tenantB); r.ScopeKind != broker.ScopeHosted || r.FallbackReason != broker.ReasonOrganizationKeysUnavailable {
		t.Fatalf("tenant B once the organization's key fails: %v", r)
	}
	evs, err := g.e.store.ListAudit(ctx, broker.OrganizationScope(g.org), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		if ev.Action == broker.ActionHealth || ev.Action == broker.ActionTest {
			got = append(got, ev.Action+":"+ev.Outcome+":"+ev.Actor)
		}
	}
	if strings.Join(got, " ") != "key.test:refused:"+broker.ActorVerifier {
		t.Fatalf("organization trail: %v", got)
	}
}

// TestEveryKeyCoolingDownIs429NotNoKey: when every key that could serve
// is cooling down, resolve answers a CoolingDownError with the earliest
// end (never under a second), and /effective says the same; no_key stays
// for pools where nothing could ever serve.
func TestEveryKeyCoolingDownIs429NotNoKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	addKey(t, e, pool, "main", 10, "")
	addKey(t, e, pool, "off", 20, broker.KeyDisabled)
	r := resolveAs(t, e.b, ws)
	if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, RetryAfter: 120 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// The hosted fallback on, but no hosted key: the workspace's key will
	// serve again.
	var cd *broker.CoolingDownError
	_, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if !errors.As(err, &cd) || errors.Is(err, broker.ErrNoKey) || cd.Reason != broker.ReasonWorkspaceKeysCoolingDown ||
		cd.RetryAfter < 100*time.Second || cd.RetryAfter > 121*time.Second || cd.RetryAfter%time.Second != 0 {
		t.Fatalf("the only key cooling down for 120 s: %v, want a CoolingDownError of about 120 s", err)
	}
	off := false
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, HostedFallback: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.As(err, &cd) {
		t.Fatalf("failing closed with the key cooling down: %v", err)
	}
	srcs, err := e.b.Effective(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		if s.Provider != "openai" {
			continue
		}
		if s.ScopeKind != "" || s.Reason != broker.ReasonWorkspaceKeysCoolingDown || s.CoolingDownUntil.IsZero() {
			t.Fatalf("effective while the key cools down: %+v", s)
		}
	}
	// A pool whose keys can never serve: no_key, as before.
	disabled := broker.KeyDisabled
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("main"), State: &disabled}); err != nil {
		t.Fatal(err)
	}
	var nk *broker.NoKeyError
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.As(err, &nk) || nk.Reason != broker.ReasonHostedFallbackOff {
		t.Fatalf("every key disabled: %v, want no_key", err)
	}
}

// TestResolutionIDsAreKeyedApartFromThePepper: replicas take each
// other's reports when they share the resolution key, whatever their
// pepper; not when only the pepper is shared; a previous key is still
// accepted during a rotation.
func TestResolutionIDsAreKeyedApartFromThePepper(t *testing.T) {
	ctx := context.Background()
	keyA, keyB := []byte("resolution-key-a-0123456789abcdef"), []byte("resolution-key-b-0123456789abcdef")
	e := newEnv(t, func(c *broker.Config) { c.ResolutionKey = keyA })
	addKey(t, e, broker.WorkspaceScope(e.workspc).Pool("openai"), "only", 100, "")
	r := resolveAs(t, e.b, e.workspc)
	report := func(b *broker.Broker) error {
		_, err := b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeOK})
		return err
	}
	for name, tc := range map[string]struct {
		tune func(*broker.Config)
		ok   bool
	}{
		"the same pepper, another resolution key": {func(c *broker.Config) { c.ResolutionKey = keyB }, false},
		"the same pepper, no resolution key":      {func(c *broker.Config) { c.ResolutionKey = nil }, false},
		"another pepper, the same resolution key": {func(c *broker.Config) { c.Pepper = []byte("another-pepper-0123456789") }, true},
		"a rotation: keyA now previous":           {func(c *broker.Config) { c.ResolutionKey, c.PreviousResolutionKeys = keyB, [][]byte{keyA} }, true},
	} {
		err := report(e.another(t, tc.tune))
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, broker.ErrUnknownResolution) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAResolverReplicaProbesFailingKeys: the prober needs the reader
// identity, a checker and the health store, not the writer: a resolver
// replica (with the resolver's database role) returns a key that passes
// to its pool.
func TestAResolverReplicaProbesFailingKeys(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	pool := broker.WorkspaceScope(e.workspc).Pool("openai")
	key := addKey(t, e, pool, "only", 100, "")
	if tr, err := e.b.CheckKey(ctx, alice, pool.Key("only")); err != nil || tr.Health != broker.HealthFailing {
		t.Fatalf("test while the provider refuses the key: %+v %v", tr, err)
	}
	resolver := e.resolverReplica(t)
	if tested, passed, err := resolver.ProbeFailing(ctx, 2); err != nil || tested != 1 || passed != 0 {
		t.Fatalf("a probe while the provider still refuses: tested %d, passed %d, %v", tested, passed, err)
	}
	provider.accept(key, true)
	if tested, passed, err := resolver.ProbeFailing(ctx, 2); err != nil || tested != 1 || passed != 1 {
		t.Fatalf("a probe once the provider accepts: tested %d, passed %d, %v", tested, passed, err)
	}
	if r := resolveAs(t, resolver, e.workspc); r.APIKey() != key {
		t.Fatalf("after the probe: %v", r)
	}
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(e.workspc), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	probes := 0
	for _, ev := range evs {
		if ev.Actor == "prober" {
			probes++
			if ev.Outcome != providers.VerdictAccepted {
				t.Fatalf("a probe that changed nothing was audited: %+v", ev)
			}
		}
	}
	if probes != 1 {
		t.Fatalf("%d probes audited, want the one that returned the key", probes)
	}
}
