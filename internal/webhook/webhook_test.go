package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/webhook"
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
