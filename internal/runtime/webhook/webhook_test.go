package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/webhook"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var secret = []byte("webhook-test-secret-0123")

// receiver is a webhook endpoint that checks the signature as a real one
// must, and fails the first failFirst deliveries.
type receiver struct {
	srv       *httptest.Server
	failFirst int32
	calls     atomic.Int32
	mu        sync.Mutex
	events    []webhook.Event
	bodies    []string
}

func newReceiver(t *testing.T, failFirst int32) *receiver {
	r := &receiver{failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.Header.Get(webhook.SignatureHeader) != webhook.Sign(secret, req.Header.Get(webhook.TimestampHeader), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			t.Errorf("a delivery with a bad signature")
			return
		}
		if r.calls.Add(1) <= r.failFirst {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("undecodable event: %s", body)
		}
		r.mu.Lock()
		r.events, r.bodies = append(r.events, ev), append(r.bodies, string(body))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.events...)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeliveriesAreSignedRetriedAndNeverBlock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newReceiver(t, 2)
	s, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, Queue: 5})
	if err != nil {
		t.Fatal(err)
	}
	masked := "sk-pro...cdef"
	s.Publish(broker.AuditEvent{Action: broker.ActionHealth, ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Provider: "openai", KeyID: "k",
		Outcome: "success", MaskedKey: &masked, Detail: "rate_limited reported"})
	// A full queue drops, it does not wait.
	start := time.Now()
	for range 1000 {
		s.Publish(broker.AuditEvent{Action: "key.update"})
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("publishing into a full queue took %v", took)
	}
	go s.Run(ctx)
	waitFor(t, "the first event delivered after two failures", func() bool { return len(r.got()) >= 1 })
	if ev := r.got()[0]; ev.Action != broker.ActionHealth || ev.KeyID != "k" || ev.MaskedKey != masked || r.calls.Load() < 3 {
		t.Fatalf("delivered %+v after %d calls", ev, r.calls.Load())
	}
	waitFor(t, "the queued events delivered", func() bool { return len(r.got()) == 5 })

	// An endpoint that stays down: the sink gives up and keeps going.
	down := newReceiver(t, 1<<30)
	s2, err := webhook.New(webhook.Config{URL: down.srv.URL, Secret: secret, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	go s2.Run(ctx)
	s2.Publish(broker.AuditEvent{Action: "key.update"})
	waitFor(t, "two attempts at a down endpoint", func() bool { return down.calls.Load() == 2 })

	for name, cfg := range map[string]webhook.Config{
		"no secret":    {URL: r.srv.URL},
		"not a URL":    {URL: "ftp://x", Secret: secret},
		"short secret": {URL: r.srv.URL, Secret: []byte("short")},
	} {
		if _, err := webhook.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestHealthChangesAndTheAuditTrailReachTheEndpoint: a report's health
// change reaches a sink wired as the broker's events, and the audit stream
// sends what is written after it starts — never a key.
func TestHealthChangesAndTheAuditTrailReachTheEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newReceiver(t, 0)
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	go sink.Run(ctx)
	g := kbtest.NewGround(t, kbtest.Options{Events: sink})
	key := "sk-proj-webhook-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: broker.Actor{Subject: "alice"}, Pool: broker.WorkspaceScope("ws1").Pool("openai"), KeyID: "k", Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}
	res, err := g.Broker.Resolve(ctx, broker.ResolveRequest{Workspace: "ws1", Provider: "openai", Caller: "tok_0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Broker.Report(ctx, broker.ReportRequest{Caller: "tok_0123456789abcdef", ResolutionID: res.ResolutionID, Outcome: broker.OutcomeForbidden}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the health change delivered", func() bool { return len(r.got()) == 1 })
	if ev := r.got()[0]; ev.Action != broker.ActionHealth || ev.ScopeID != "ws1" || !strings.Contains(ev.Detail, "forbidden") {
		t.Fatalf("delivered %+v", ev)
	}

	streamCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sink.StreamAudit(streamCtx, g.Store, &memCursor{}, 50*time.Millisecond) }()
	time.Sleep(200 * time.Millisecond) // the stream starts after what exists
	if _, err := g.Broker.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: broker.Actor{Subject: "alice"}, Ref: broker.WorkspaceKey("ws1", "openai", "k"), Name: new("renamed")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the audit event streamed", func() bool { return len(r.got()) == 2 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ev := r.got()[1]; ev.Action != broker.ActionUpdate || ev.ID == 0 {
		t.Fatalf("streamed %+v", ev)
	}
	for _, b := range r.bodies {
		if strings.Contains(b, key) {
			t.Fatal("a delivery holds the key")
		}
	}
}

func TestPlainHTTPToAHostOffLoopbackIsRefusedUnlessAllowed(t *testing.T) {
	for _, u := range []string{"http://hooks.example.com/keybroker", "http://10.0.0.7:8080/hook", "http://[2001:db8::1]/hook"} {
		_, err := webhook.New(webhook.Config{URL: u, Secret: secret})
		if err == nil || !strings.Contains(err.Error(), "plain http") {
			t.Errorf("%s: %v, want a refusal", u, err)
		}
		if _, err := webhook.New(webhook.Config{URL: u, Secret: secret, AllowPlaintext: true}); err != nil {
			t.Errorf("%s, explicitly allowed: %v", u, err)
		}
	}
	for _, u := range []string{"https://hooks.example.com/keybroker", "http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"} {
		if _, err := webhook.New(webhook.Config{URL: u, Secret: secret}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestTheAuditStreamLosesNothingBehindASlowEndpoint: the endpoint is
// down for its first 12 deliveries, then answers; 40 audit events written
// meanwhile all reach it, once each and in order, although the queue
// holds 5 and health events get 2 attempts.
func TestTheAuditStreamLosesNothingBehindASlowEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := kbtest.NewStore(t, testenv.DatabaseURL(t))
	r := newReceiver(t, 12)
	reg := prometheus.NewRegistry()
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, Queue: 5, Attempts: 2, Backoff: 5 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	go sink.Run(ctx)
	started := make(chan struct{})
	src := &startSignal{AuditSource: st, started: started}
	done := make(chan error, 1)
	go func() { done <- sink.StreamAudit(ctx, src, &memCursor{}, 10*time.Millisecond) }()
	<-started
	const n = 40
	for i := range n {
		if err := st.AppendAudits(ctx, []store.AuditEvent{{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event",
			Actor: "test", Outcome: "success", Detail: fmt.Sprintf("event %d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every audit event delivered", func() bool { return len(r.got()) >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := r.got()
	if len(got) != n {
		t.Fatalf("%d deliveries, want %d", len(got), n)
	}
	for i, ev := range got {
		if want := fmt.Sprintf("event %d", i); ev.Detail != want || (i > 0 && ev.ID <= got[i-1].ID) {
			t.Fatalf("delivery %d is %q (id %d), want %q in order", i, ev.Detail, ev.ID, want)
		}
	}
	if d, f := counter(t, reg, "keybroker_webhook_dropped_total"), counter(t, reg, "keybroker_webhook_failed_total"); d != 0 || f != 0 {
		t.Fatalf("dropped %v, failed %v: the audit stream must drop nothing", d, f)
	}
}

// startSignal says when the stream has read where to start.
type startSignal struct {
	webhook.AuditSource
	started chan struct{}
}

func (s *startSignal) LatestAuditID(ctx context.Context) (int64, error) {
	defer close(s.started)
	return s.AuditSource.LatestAuditID(ctx)
}

// memCursor is a Cursor in memory.
type memCursor struct {
	mu  sync.Mutex
	pos int64
	set bool
}

func (c *memCursor) Position(context.Context) (int64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos, c.set, nil
}

func (c *memCursor) Advance(_ context.Context, id int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos, c.set = id, true
	return nil
}

func (c *memCursor) at() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// TestTheAuditStreamResumesAfterTheLastEventDeliveredOnFailover: replica
// A streams under the audit stream's lease and is killed (it neither
// renews nor releases the lease); events are written while nobody
// streams; replica B takes the lease once it expires and delivers, from
// A's cursor on, every event written in between, in order, then the new
// ones. The events from before the stream ever ran are not sent.
func TestTheAuditStreamResumesAfterTheLastEventDeliveredOnFailover(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	stA, stB := kbtest.NewStore(t, dbURL), kbtest.NewStore(t, dbURL) // two replicas' pools, as the runtime role
	r := newReceiver(t, 0)
	write := func(details ...string) {
		t.Helper()
		for _, d := range details {
			if err := stA.AppendAudit(ctx, store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event",
				Actor: "test", Outcome: "success", Detail: d}); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("history")

	// Replica A: takes the lease for 3 s and renews it while it runs.
	const ttl = 3 * time.Second
	if _, ok, err := stA.TakeLease(ctx, store.LeaseAuditStream, "replica-a", ttl); err != nil || !ok {
		t.Fatal(ok, err)
	}
	actx, kill := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for actx.Err() == nil {
			if _, ok, err := stA.TakeLease(actx, store.LeaseAuditStream, "replica-a", ttl); actx.Err() == nil && (err != nil || !ok) {
				t.Errorf("replica A renews: %v %v", ok, err)
			}
			select {
			case <-actx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	sinkA, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	curA := store.LeaseCursor{Store: stA, Lease: store.LeaseAuditStream, Holder: "replica-a"}
	wg.Go(func() {
		if err := sinkA.StreamAudit(actx, stA, curA, 10*time.Millisecond); err != nil {
			t.Errorf("replica A's stream: %v", err)
		}
	})
	waitFor(t, "replica A's stream recording where it starts", func() bool { _, ok, _ := curA.Position(ctx); return ok })
	write("before 1", "before 2", "before 3")
	waitFor(t, "the events before the failover delivered", func() bool { return len(r.got()) == 3 })
	kill() // replica A dies: no release; its lease runs out
	wg.Wait()
	write("during 1", "during 2", "during 3", "during 4", "during 5")

	// Replica B stands by until the lease is free, then streams.
	sinkB, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	leaseB := &store.Lease{Store: stB, Name: store.LeaseAuditStream, Holder: "replica-b", Continuous: true, TTL: ttl, Logger: slog.New(slog.DiscardHandler)}
	wg.Go(func() {
		for bctx.Err() == nil {
			err := leaseB.Run(bctx, func(ctx context.Context) error {
				return sinkB.StreamAudit(ctx, stB, store.LeaseCursor{Store: stB, Lease: store.LeaseAuditStream, Holder: "replica-b"}, 10*time.Millisecond)
			})
			if err != nil && !errors.Is(err, store.ErrLeaseHeld) && bctx.Err() == nil {
				t.Errorf("replica B: %v", err)
			}
			select {
			case <-bctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	waitFor(t, "replica B delivering what was written while nobody streamed", func() bool { return len(r.got()) >= 8 })
	write("after 1", "after 2")
	waitFor(t, "the events after the failover delivered", func() bool { return len(r.got()) >= 10 })
	stopB()
	wg.Wait()

	var details []string
	var last int64
	for _, ev := range r.got() {
		if ev.ID == last {
			continue // at least once: a redelivery of the last event is allowed
		}
		if ev.ID < last {
			t.Fatalf("event %d delivered after %d: out of order", ev.ID, last)
		}
		details, last = append(details, ev.Detail), ev.ID
	}
	want := "before 1,before 2,before 3,during 1,during 2,during 3,during 4,during 5,after 1,after 2"
	if got := strings.Join(details, ","); got != want {
		t.Fatalf("delivered %s\nwant      %s", got, want)
	}
	if pos, _, err := curA.Position(ctx); err != nil || pos != last {
		t.Fatalf("the cursor is at %d (%v), want %d", pos, err, last)
	}
}

// gappedTrail is an audit source whose ids can have holes: the ids of
// transactions not committed yet, or rolled back.
type gappedTrail struct {
	mu    sync.Mutex
	evs   []broker.AuditEvent // by id
	polls atomic.Int32
}

func (g *gappedTrail) add(ids ...int64) { g.addAt(time.Now(), ids...) }

// addAt adds events written at t.
func (g *gappedTrail) addAt(t time.Time, ids ...int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.evs = append(g.evs, broker.AuditEvent{ID: id, OccurredAt: t, Action: "test.event", Detail: fmt.Sprint(id)})
	}
	slices.SortFunc(g.evs, func(a, b broker.AuditEvent) int { return int(a.ID - b.ID) })
}

func (g *gappedTrail) AuditAfter(_ context.Context, after int64, limit int) ([]broker.AuditEvent, error) {
	defer g.polls.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []broker.AuditEvent
	for _, ev := range g.evs {
		if ev.ID > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (g *gappedTrail) LatestAuditID(context.Context) (int64, error) { return 0, nil }

func ids(evs []webhook.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// TestTheAuditStreamWaitsForAnIdNotCommittedYet: ids 1, 2 and 4 are in the
// trail, 3 is being written (its transaction has not committed). The
// stream delivers 1 and 2, then waits for 3 instead of moving its cursor
// past it, and delivers 3 and 4 in order once 3 is there.
func TestTheAuditStreamWaitsForAnIdNotCommittedYet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newReceiver(t, 0)
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, GapWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	trail := &gappedTrail{}
	trail.add(1, 2, 4)
	cur := &memCursor{set: true}
	done := make(chan error, 1)
	go func() { done <- sink.StreamAudit(ctx, trail, cur, time.Millisecond) }()
	waitFor(t, "1 and 2 delivered", func() bool { return len(r.got()) >= 2 })
	// Two more reads: the stream has seen 4 after 2, with 3 missing.
	polls := trail.polls.Load()
	waitFor(t, "two more reads of the trail", func() bool { return trail.polls.Load() >= polls+2 })
	if got := ids(r.got()); !slices.Equal(got, []int64{1, 2}) || cur.at() != 2 {
		t.Fatalf("delivered %v, cursor %d, while 3 is not committed: want 1, 2 and the cursor at 2", got, cur.at())
	}
	trail.add(3)
	waitFor(t, "3 and 4 delivered", func() bool { return len(r.got()) >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ids(r.got()); !slices.Equal(got, []int64{1, 2, 3, 4}) || cur.at() != 4 {
		t.Fatalf("delivered %v, cursor %d, want 1, 2, 3, 4 and 4", got, cur.at())
	}
}

// TestTheAuditStreamSkipsAnIdNeverWritten: an id left out for good (a
// rolled-back transaction) holds the stream up for GapWait, then is
// skipped, counted and logged.
func TestTheAuditStreamSkipsAnIdNeverWritten(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newReceiver(t, 0)
	reg := prometheus.NewRegistry()
	var logs testenv.SyncBuffer
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, GapWait: 20 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	trail := &gappedTrail{}
	trail.add(1, 2, 5)
	done := make(chan error, 1)
	go func() { done <- sink.StreamAudit(ctx, trail, &memCursor{set: true}, time.Millisecond) }()
	waitFor(t, "5 delivered past the hole", func() bool { return len(r.got()) >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ids(r.got()); !slices.Equal(got, []int64{1, 2, 5}) {
		t.Fatalf("delivered %v", got)
	}
	if n := counter(t, reg, "keybroker_webhook_audit_ids_skipped_total"); n != 2 || !strings.Contains(logs.String(), `"from":3,"to":4`) {
		t.Fatalf("skipped %v; log:\n%s", n, logs.String())
	}
}

// TestAStreamCatchingUpDoesNotWaitForOldHoles: holes between events
// written hours ago (a stream resuming after a long stop) are skipped
// without waiting GapWait for each.
func TestAStreamCatchingUpDoesNotWaitForOldHoles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newReceiver(t, 0)
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, GapWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	trail := &gappedTrail{}
	trail.addAt(time.Now().Add(-2*time.Hour), 1, 3, 5, 8)
	done := make(chan error, 1)
	go func() { done <- sink.StreamAudit(ctx, trail, &memCursor{set: true}, time.Millisecond) }()
	waitFor(t, "the old events delivered past their holes", func() bool { return len(r.got()) >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ids(r.got()); !slices.Equal(got, []int64{1, 3, 5, 8}) {
		t.Fatalf("delivered %v", got)
	}
}

// failingCursor refuses to record: the lease was lost.
type failingCursor struct{ memCursor }

func (c *failingCursor) Advance(context.Context, int64) error { return store.ErrLeaseLost }

// TestTheAuditStreamStopsWhenItCannotRecordADelivery: a replica that lost
// the lease (its cursor refuses) stops after the event in flight instead
// of streaming on beside the new holder.
func TestTheAuditStreamStopsWhenItCannotRecordADelivery(t *testing.T) {
	r := newReceiver(t, 0)
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	trail := &gappedTrail{}
	trail.add(1, 2, 3)
	err = sink.StreamAudit(context.Background(), trail, &failingCursor{memCursor{set: true}}, time.Millisecond)
	if !errors.Is(err, store.ErrLeaseLost) || len(r.got()) != 1 {
		t.Fatalf("stream: %v after %d deliveries, want ErrLeaseLost after 1", err, len(r.got()))
	}
}

// TestDroppedHealthEventsAreCountedAndLogged: a full queue drops health
// events without blocking; each drop is counted, the first logged at once
// and the rest in one line with their count — not one line each.
func TestDroppedHealthEventsAreCountedAndLogged(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testenv.SyncBuffer
	r := newReceiver(t, 0)
	reg := prometheus.NewRegistry()
	sink, err := webhook.New(webhook.Config{URL: r.srv.URL, Secret: secret, Queue: 5, DropLogEvery: 20 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		sink.Publish(broker.AuditEvent{Action: broker.ActionHealth, ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1"})
	}
	if d := counter(t, reg, "keybroker_webhook_dropped_total"); d != 95 {
		t.Fatalf("keybroker_webhook_dropped_total %v, want 95", d)
	}
	if n := strings.Count(logs.String(), "dropped an event"); n != 1 {
		t.Fatalf("%d lines for the first drop, want 1:\n%s", n, logs.String())
	}
	go sink.Run(ctx)
	waitFor(t, "the count of the other drops logged", func() bool { return strings.Contains(logs.String(), `"count":94`) })
	waitFor(t, "the queued events delivered", func() bool { return len(r.got()) == 5 })
	if lines := strings.Count(logs.String(), "\n"); lines != 2 {
		t.Fatalf("%d log lines for 95 drops, want 2:\n%s", lines, logs.String())
	}
}

// counter reads a counter of the registry.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
