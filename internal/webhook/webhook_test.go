package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/webhook"
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
	s.Publish(broker.AuditEvent{Action: broker.ActionHealth, Scope: broker.ScopeWorkspace, ScopeID: "ws1", Provider: "openai", KeyID: "k",
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
	if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: broker.Actor{Subject: "alice"}, Pool: broker.WorkspaceScope("ws1").Pool("openai"), KeyID: "k", APIKey: key}); err != nil {
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
	go func() { done <- sink.StreamAudit(streamCtx, g.Store, 50*time.Millisecond) }()
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
	go func() { done <- sink.StreamAudit(ctx, src, 10*time.Millisecond) }()
	<-started
	const n = 40
	for i := range n {
		if err := st.AppendAudits(ctx, []store.AuditEvent{{Scope: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event",
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
		sink.Publish(broker.AuditEvent{Action: broker.ActionHealth, Scope: broker.ScopeWorkspace, ScopeID: "ws1"})
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
