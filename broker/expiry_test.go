package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/webhook"
	"github.com/keybroker/keybroker/providers"
)

// movingClock is a clock a test moves forward.
type movingClock struct{ ns atomic.Int64 }

func newMovingClock(t time.Time) *movingClock {
	c := &movingClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *movingClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *movingClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *movingClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }

// recordingSink keeps the events a replica published.
type recordingSink struct {
	mu  sync.Mutex
	evs []broker.AuditEvent
}

func (s *recordingSink) Publish(ev broker.AuditEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
}

func (s *recordingSink) actions(action string) []broker.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []broker.AuditEvent
	for _, ev := range s.evs {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

// TestExpiredKeyIsNotServedAndTheNextServes: a key past its expiresAt is
// not served; the pool's next key serves, and when the workspace has no
// other, the hosted key serves with fallbackReason "expired". The answers
// say "expiring" within the window and "expired" after; clearing the
// expiry serves the key again.
func TestExpiredKeyIsNotServedAndTheNextServes(t *testing.T) {
	ctx := context.Background()
	clock := newMovingClock(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
	e := newEnv(t, func(c *broker.Config) { c.Now = clock.Now; c.CacheTTL = time.Millisecond })
	ws := broker.WorkspaceScope(e.workspc).Pool("openai")
	expires := clock.Now().Add(20 * 24 * time.Hour)
	first, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: ws, KeyID: "first", Credential: providers.APIKey(newKey(t, "openai")),
		Priority: ptr(10), ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
	if first.Meta.Expiry != broker.ExpiryValid || !first.Meta.ExpiresAt.Equal(expires) {
		t.Fatalf("a key expiring in 20 days: %q %v", first.Meta.Expiry, first.Meta.ExpiresAt)
	}
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: ws, KeyID: "second", Credential: providers.APIKey(newKey(t, "openai")),
		Priority: ptr(20)}); err != nil {
		t.Fatal(err)
	}
	e.setHosted(t, "openai", newKey(t, "openai"))
	resolve := func() broker.Resolution {
		t.Helper()
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := resolve(); r.KeyID != "first" {
		t.Fatalf("before expiry, %s served", r.KeyID)
	}
	clock.Add(10 * 24 * time.Hour)
	if m, _ := e.b.GetKey(ctx, ws.Key("first")); m.Expiry != broker.ExpiryExpiring {
		t.Fatalf("10 days before expiry the key is %q", m.Expiry)
	}
	clock.Add(10*24*time.Hour + time.Second)
	if m, _ := e.b.GetKey(ctx, ws.Key("first")); m.Expiry != broker.ExpiryExpired {
		t.Fatalf("past expiry the key is %q", m.Expiry)
	}
	if r := resolve(); r.KeyID != "second" || r.FallbackReason != "" || r.ScopeKind != broker.ScopeWorkspace {
		t.Fatalf("past first's expiry: %+v", r)
	}
	// The second expires too (set by an admin, in the past): the hosted key.
	past := clock.Now().Add(-time.Minute)
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: ws.Key("second"), ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	if r := resolve(); r.ScopeKind != broker.ScopeHosted || r.FallbackReason != broker.ReasonExpired {
		t.Fatalf("every workspace key expired: %+v", r)
	}
	eff, err := e.b.Effective(ctx, e.workspc)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range eff {
		if src.Provider == "openai" && (src.ScopeKind != broker.ScopeHosted || src.Reason != broker.ReasonExpired) {
			t.Fatalf("effective says %+v, resolve served the hosted key for expiry", src)
		}
	}
	// Without the hosted key's fallback: no key, reason expired.
	var zero time.Time
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: ws.Key("second"), ExpiresAt: &zero}); err != nil {
		t.Fatal(err)
	}
	if r := resolve(); r.KeyID != "second" || r.ScopeKind != broker.ScopeWorkspace {
		t.Fatalf("with its expiry removed, second does not serve: %+v", r)
	}
	// A bad provider key id is refused and changes nothing.
	bad := "svc acct\n"
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: ws.Key("second"), ProviderKeyID: &bad}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("a provider key id with a space and a newline: %v", err)
	}
}

// teeSink records what a replica publishes and hands it to its webhook.
type teeSink struct {
	recordingSink
	next broker.EventSink
}

func (s *teeSink) Publish(ev broker.AuditEvent) {
	s.recordingSink.Publish(ev)
	s.next.Publish(ev)
}

// TestExpiryWarningsSentOnceAcrossReplicas moves a clock past each
// warning step (14, 7, 1 days before expiry) with two replicas sweeping
// at every step, each with its own events webhook posting to one
// endpoint: each step's key.expiring event is published once in all, by
// whichever replica recorded it first, and the endpoint receives the
// three; the gauges count the key by provider.
func TestExpiryWarningsSentOnceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	clock := newMovingClock(time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var received []webhook.Event
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev webhook.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, ev)
		mu.Unlock()
	}))
	t.Cleanup(endpoint.Close)
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	hook := func() broker.EventSink {
		s, err := webhook.New(webhook.Config{URL: endpoint.URL, Secret: []byte("expiry-test-webhook-secret"), Logger: testLogger})
		if err != nil {
			t.Fatal(err)
		}
		go s.Run(runCtx)
		return s
	}
	sinkA, sinkB := &teeSink{next: hook()}, &teeSink{next: hook()}
	regA := prometheus.NewRegistry()
	metricsA := broker.NewMetrics(regA)
	e := newEnv(t, func(c *broker.Config) { c.Now = clock.Now; c.Events = sinkA; c.Metrics = metricsA })
	b := e.another(t, func(c *broker.Config) { c.Events = sinkB; c.Metrics = nil })
	expires := clock.Now().Add(30 * 24 * time.Hour)
	pool := broker.WorkspaceScope(e.workspc).Pool("anthropic")
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "k", Credential: providers.APIKey(newKey(t, "anthropic")),
		ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	sweep := func() {
		t.Helper()
		var wg sync.WaitGroup
		for _, r := range []*broker.Broker{e.b, b} {
			wg.Go(func() {
				if _, err := r.WarnExpiring(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	total := func() int {
		return len(sinkA.actions(broker.ActionExpiring)) + len(sinkB.actions(broker.ActionExpiring))
	}
	sweep()
	if n := total(); n != 0 {
		t.Fatalf("30 days before expiry, %d warnings", n)
	}
	for i, at := range []time.Duration{14*24*time.Hour - time.Minute, 7*24*time.Hour - time.Minute, 24*time.Hour - time.Minute} {
		clock.Set(expires.Add(-at))
		sweep()
		sweep() // again: nothing new
		if n := total(); n != i+1 {
			t.Fatalf("at step %d: %d events across the two replicas, want %d", i+1, n, i+1)
		}
	}
	if g := testutil.ToFloat64(metricsA.KeysExpiring("anthropic")); g != 1 {
		t.Fatalf("keybroker_keys_expiring{provider=anthropic} = %v", g)
	}
	evs := append(sinkA.actions(broker.ActionExpiring), sinkB.actions(broker.ActionExpiring)...)
	for _, ev := range evs {
		if ev.KeyID != "k" || ev.ScopeID != e.workspc || ev.Provider != "anthropic" {
			t.Fatalf("event %+v", ev)
		}
	}
	// Each is in the audit trail once too.
	trail, err := e.b.QueryAudit(ctx, broker.AuditQuery{Scope: ptr(broker.WorkspaceScope(e.workspc)), Limit: 50, Action: broker.ActionExpiring})
	if err != nil || len(trail) != 3 {
		t.Fatalf("the trail holds %d key.expiring events (%v)", len(trail), err)
	}
	clock.Set(expires.Add(time.Second))
	sweep()
	if total() != 3 {
		t.Fatal("an expired key was warned again")
	}
	// The endpoint gets the three (published once, so delivered once).
	waitFor(t, 10*time.Second, "the webhook delivered the three warnings", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	steps := map[string]bool{}
	for _, ev := range received {
		if ev.Action != broker.ActionExpiring || ev.KeyID != "k" {
			t.Fatalf("the endpoint received %+v", ev)
		}
		steps[ev.Detail[strings.Index(ev.Detail, "the "):]] = true
	}
	if len(received) != 3 || len(steps) != 3 {
		t.Fatalf("the endpoint received %d events, %d steps: %+v", len(received), len(steps), received)
	}
}
