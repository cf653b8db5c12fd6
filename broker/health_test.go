package broker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/providers"
)

// openAIStandIn answers GET /v1/models as OpenAI would: 200 for the keys
// it accepts (Authorization: Bearer <key>, exactly), 401 for the others.
type openAIStandIn struct {
	srv      *httptest.Server
	mu       sync.Mutex
	accepted map[string]bool
	checks   atomic.Int32
}

func newOpenAIStandIn(t *testing.T) *openAIStandIn {
	s := &openAIStandIn{accepted: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.checks.Add(1)
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		good := ok && s.accepted[key]
		s.mu.Unlock()
		if r.URL.Path != "/v1/models" || !good {
			http.Error(w, `{"error":{"code":"invalid_api_key"}}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *openAIStandIn) accept(key string, yes bool) {
	s.mu.Lock()
	s.accepted[key] = yes
	s.mu.Unlock()
}

func (s *openAIStandIn) checker(t *testing.T) broker.KeyChecker {
	c, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": s.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const caller = "tok_0123456789abcdef"

func resolveAs(t *testing.T, b *broker.Broker, ws string) broker.Resolution {
	t.Helper()
	r, err := b.Resolve(context.Background(), broker.ResolveRequest{Workspace: ws, Provider: "openai", Caller: caller})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReportsFailOverAcrossReplicasAndRecover: a pool of two keys; the
// first is reported rate_limited on replica A, and replica B serves the
// second within a second, then the first again when the cooldown ends; the
// first reported unauthorized leaves the pool until its test passes.
func TestReportsFailOverAcrossReplicasAndRecover(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	first := addKey(t, e, pool, "first", 10, "")
	second := addKey(t, e, pool, "second", 20, "")
	provider.accept(first, true)
	replicaB := e.another(t, nil)
	listen(t, e, e.b)
	listen(t, e, replicaB)

	r := resolveAs(t, e.b, ws)
	if r.KeyID != "first" {
		t.Fatalf("before any report: %v", r)
	}
	res, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, RetryAfter: 2 * time.Second})
	if err != nil || !res.Changed || res.Health != broker.HealthCoolingDown || res.Ref != pool.Key("first") {
		t.Fatalf("report: %+v %v", res, err)
	}
	if d := untilServes(t, replicaB, ws, "openai", second); d > time.Second {
		t.Errorf("replica B served the second key %v after the report, want within 1 s", d)
	}
	meta, err := e.b.GetKey(ctx, pool.Key("first"))
	if err != nil || meta.Health != broker.HealthCoolingDown || meta.CooldownUntil.IsZero() {
		t.Fatalf("metadata while cooling down: %+v %v", meta, err)
	}
	waitFor(t, 5*time.Second, "the first key serves again after its cooldown", func() bool {
		r, err := replicaB.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
		return err == nil && r.APIKey() == first
	})

	// Refused by the provider: failing until a test passes.
	r = resolveAs(t, e.b, ws)
	if res, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized}); err != nil || res.Health != broker.HealthFailing {
		t.Fatalf("report unauthorized: %+v %v", res, err)
	}
	untilServes(t, replicaB, ws, "openai", second)
	time.Sleep(2500 * time.Millisecond) // no cooldown ends a failure
	if r := resolveAs(t, replicaB, ws); r.KeyID != "second" {
		t.Fatalf("a failing key served again by itself: %v", r)
	}
	provider.accept(first, false)
	tr, err := e.b.CheckKey(ctx, alice, pool.Key("first"))
	if err != nil || tr.Verdict != providers.VerdictRefused || tr.Status != 401 || tr.Health != broker.HealthFailing {
		t.Fatalf("a test the provider refuses: %+v %v", tr, err)
	}
	provider.accept(first, true)
	tr, err = e.b.CheckKey(ctx, alice, pool.Key("first"))
	if err != nil || tr.Verdict != providers.VerdictAccepted || tr.Health != broker.HealthHealthy {
		t.Fatalf("a test that passes: %+v %v", tr, err)
	}
	untilServes(t, replicaB, ws, "openai", first)

	// The trail says what happened; the key never appears in it.
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var health []string
	for _, ev := range evs {
		if ev.Action == broker.ActionHealth || ev.Action == broker.ActionTest {
			health = append(health, ev.Action+":"+ev.Outcome+":"+ev.KeyID)
		}
		if strings.Contains(ev.Detail, first) {
			t.Fatal("an audit event holds the key")
		}
	}
	if got := strings.Join(health, " "); got != "key.test:accepted:first key.test:refused:first key.health:success:first key.health:success:first" {
		t.Fatalf("health trail: %s", got)
	}
}

func TestReportsAreBoundToTheirResolutionAndCaller(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	addKey(t, e, broker.WorkspaceScope(ws).Pool("openai"), "only", 100, "")
	r := resolveAs(t, e.b, ws)
	for name, req := range map[string]broker.ReportRequest{
		"another token's resolution": {Caller: "tok_ffffffffffffffff", ResolutionID: r.ResolutionID, Outcome: broker.OutcomeUnauthorized},
		"a made-up id":               {Caller: caller, ResolutionID: "res_AAAAAAAAAAAAAAAAAAAAAAAAAAAA", Outcome: broker.OutcomeUnauthorized},
		"an id one letter off":       {Caller: caller, ResolutionID: r.ResolutionID[:len(r.ResolutionID)-1] + "x", Outcome: broker.OutcomeUnauthorized},
		"no id":                      {Caller: caller, Outcome: broker.OutcomeUnauthorized},
	} {
		if _, err := e.b.Report(ctx, req); !errors.Is(err, broker.ErrUnknownResolution) {
			t.Errorf("%s: %v, want ErrUnknownResolution", name, err)
		}
	}
	for name, req := range map[string]broker.ReportRequest{
		"an unknown outcome":     {Caller: caller, ResolutionID: r.ResolutionID, Outcome: "exploded"},
		"a negative Retry-After": {Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, RetryAfter: -time.Second},
		"a Retry-After of a day": {Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, RetryAfter: 24 * time.Hour},
	} {
		if _, err := e.b.Report(ctx, req); !errors.Is(err, broker.ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
	meta, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "openai", "only"))
	if err != nil || meta.Health != broker.HealthHealthy {
		t.Fatalf("refused reports changed the key: %+v %v", meta, err)
	}
	// Another replica with the same resolution key takes the report.
	other := e.another(t, nil)
	if res, err := other.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeServerError}); err != nil || !res.Changed {
		t.Fatalf("a report to another replica: %+v %v", res, err)
	}
}

// TestReportStormChangesTheKeyOnce: 1,000 concurrent reports of one
// resolution make one health change and one audit row.
func TestReportStormChangesTheKeyOnce(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	addKey(t, e, broker.WorkspaceScope(ws).Pool("openai"), "only", 100, "")
	r := resolveAs(t, e.b, ws)
	var wg sync.WaitGroup
	var changed atomic.Int32
	for range 1000 {
		wg.Go(func() {
			res, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited})
			if err != nil {
				t.Errorf("report: %v", err)
			}
			if res.Changed {
				changed.Add(1)
			}
		})
	}
	wg.Wait()
	var rows int
	if err := testenv.NewPoolFor(t, e.dbURL).QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'key.health' AND scope_id = $1`, ws).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if changed.Load() != 1 || rows != 1 {
		t.Fatalf("1000 reports: %d changes, %d audit rows; want 1 and 1", changed.Load(), rows)
	}
}

// TestNoUsableKeyMovesOnAlongTheChainOnlyAsAllowed: every key of the
// workspace failing, the hosted key serves (workspace_keys_unavailable),
// or nothing does when the workspace fails closed.
func TestNoUsableKeyMovesOnAlongTheChainOnlyAsAllowed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	e.setHosted(t, "openai", newKey(t, "openai"))
	addKey(t, e, broker.WorkspaceScope(ws).Pool("openai"), "only", 100, "")
	r := resolveAs(t, e.b, ws)
	if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeQuotaExceeded}); err != nil {
		t.Fatal(err)
	}
	if r := resolveAs(t, e.b, ws); r.ScopeKind != broker.ScopeHosted || r.FallbackReason != broker.ReasonWorkspaceKeysUnavailable {
		t.Fatalf("every workspace key failing: %v %q", r, r.FallbackReason)
	}
	off := false
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, HostedFallback: &off}); err != nil {
		t.Fatal(err)
	}
	var nk *broker.NoKeyError
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.As(err, &nk) || nk.Reason != broker.ReasonHostedFallbackOff {
		t.Fatalf("failing closed: %v", err)
	}
	// An admin setting the key active returns it to the pool.
	active := broker.KeyActive
	if meta, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", "only"), State: &active}); err != nil ||
		meta.Health != broker.HealthHealthy || meta.HealthReason != "set active by an admin" {
		t.Fatalf("set active: %+v %v", meta, err)
	}
	if r := resolveAs(t, e.b, ws); r.KeyID != "only" {
		t.Fatalf("after the admin: %v", r)
	}
}

func TestVerifiedWritesAskTheProviderFirst(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	good, bad := newKey(t, "openai"), newKey(t, "openai")
	provider.accept(good, true)
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "bad", Credential: providers.APIKey(bad), Check: true}); !errors.Is(err, broker.ErrVerificationFailed) ||
		strings.Contains(err.Error(), bad) {
		t.Fatalf("a refused key: %v, want ErrVerificationFailed", err)
	}
	if names, err := e.rootKV.List(ctx, pool.KeysDir()); err != nil || len(names) != 0 {
		t.Fatalf("a refused key reached Vault: %v %v", names, err)
	}
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "good", Credential: providers.APIKey(good), Check: true}); err != nil {
		t.Fatalf("an accepted key: %v", err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: pool.Key("good"), Credential: providers.APIKey(bad), Check: true}); !errors.Is(err, broker.ErrVerificationFailed) {
		t.Fatalf("a rotation to a refused key: %v", err)
	}
	provider.srv.Close() // the provider is now unreachable
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: pool.Key("good"), Credential: providers.APIKey(newKey(t, "openai")), Check: true}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("a verified write with the provider down: %v, want ErrUnavailable", err)
	}
	if meta, err := e.b.GetKey(ctx, pool.Key("good")); err != nil || meta.Version != 1 {
		t.Fatalf("refused writes changed the key: %+v %v", meta, err)
	}
}

// BenchmarkResolveHitWithCoolingKeys: a pool of 10 keys of which 3 are
// cooling down costs what a pool of healthy keys does (run side by side
// with BenchmarkResolveHit/keys=10).
func BenchmarkResolveHitWithCoolingKeys(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, nil)
	pool := broker.WorkspaceScope(e.workspc).Pool("openai")
	for i := range 10 {
		if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "k" + string(rune('0'+i)), Credential: providers.APIKey(newKey(b, "openai"))}); err != nil {
			b.Fatal(err)
		}
	}
	cooled := 0
	for cooled < 3 {
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai", Caller: caller})
		if err != nil {
			b.Fatal(err)
		}
		res, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, RetryAfter: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if res.Changed {
			cooled++
		}
	}
	for range 10 {
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestProberReturnsKeysThatPassToTheirPools: failing keys are re-tested,
// at most the given number at a time; those the provider accepts again
// serve again, the others stay failing.
func TestProberReturnsKeysThatPassToTheirPools(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	e := newEnv(t, func(c *broker.Config) { c.Checker = provider.checker(t) })
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	back, gone := addKey(t, e, pool, "back", 10, ""), addKey(t, e, pool, "gone", 20, "")
	for _, id := range []string{"back", "gone"} {
		if tr, err := e.b.CheckKey(ctx, alice, pool.Key(id)); err != nil || tr.Health != broker.HealthFailing {
			t.Fatalf("test %s while the provider refuses it: %+v %v", id, tr, err)
		}
	}
	provider.accept(back, true)
	before := provider.checks.Load()
	tested, passed, err := e.b.ProbeFailing(ctx, 2)
	if err != nil || tested != 2 || passed != 1 || provider.checks.Load()-before != 2 {
		t.Fatalf("probe: tested %d, passed %d, %v (%d checks)", tested, passed, err, provider.checks.Load()-before)
	}
	if r := resolveAs(t, e.b, ws); r.KeyID != "back" || r.APIKey() != back {
		t.Fatalf("after the probe: %v", r)
	}
	if meta, err := e.b.GetKey(ctx, pool.Key("gone")); err != nil || meta.Health != broker.HealthFailing {
		t.Fatalf("the key still refused: %+v %v", meta, err)
	}
	// Nothing failing: nothing to test.
	provider.accept(gone, true)
	if _, err := e.b.CheckKey(ctx, alice, pool.Key("gone")); err != nil {
		t.Fatal(err)
	}
	if tested, _, err := e.b.ProbeFailing(ctx, 2); err != nil || tested != 0 {
		t.Fatalf("a probe with no failing key tested %d (%v)", tested, err)
	}
}

// TestANewValueOfAFailingKeyStartsHealthy: an admin rotates a key the
// provider refused (or rate-limited) to a new value; the new value is
// another key, so it serves at once on every replica, with no failure or
// cooldown carried over. Rewriting the version without changing the value
// (a rollback to the same value) keeps what is known.
func TestANewValueOfAFailingKeyStartsHealthy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	addKey(t, e, pool, "first", 10, "")
	second := addKey(t, e, pool, "second", 20, "")
	replicaB := e.another(t, nil)
	listen(t, e, e.b)
	listen(t, e, replicaB)

	for _, outcome := range []string{broker.OutcomeUnauthorized, broker.OutcomeRateLimited} {
		r := resolveAs(t, e.b, ws)
		if r.KeyID != "first" {
			t.Fatalf("%s: resolved %s before the report", outcome, r.KeyID)
		}
		if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: outcome, RetryAfter: time.Hour}); err != nil {
			t.Fatal(err)
		}
		untilServes(t, replicaB, ws, "openai", second)
		rotated := newKey(t, "openai")
		if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: pool.Key("first"), Credential: providers.APIKey(rotated)}); err != nil {
			t.Fatalf("rotate: %v", err)
		}
		meta, err := e.b.GetKey(ctx, pool.Key("first"))
		if err != nil || meta.Health != broker.HealthHealthy || meta.HealthReason != "" || !meta.CooldownUntil.IsZero() {
			t.Fatalf("%s, then rotated: %+v %v", outcome, meta, err)
		}
		untilServes(t, replicaB, ws, "openai", rotated)
	}
}
