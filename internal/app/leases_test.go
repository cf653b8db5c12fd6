package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/providercheck"
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/webhook"
	"github.com/keybroker/keybroker/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The advisory lock ids keybroker used before its leases ("kbaud",
// "kbpro", "kbrec"): any database login may take them.
const (
	oldAuditStreamLock = 0x6b62617564
	oldProbeLock       = 0x6b6270726f
	oldReconcileLock   = 0x6b62726563
)

// holdOldLocks takes the old advisory locks on a session of the resolver
// role (a sandbox-facing pod's credentials) and keeps them until the test
// ends.
func holdOldLocks(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.ResolverURL(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, key := range []int64{oldAuditStreamLock, oldProbeLock, oldReconcileLock} {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

const webhookSecret = "app-test-webhook-secret-0123"

// auditReceiver is the SIEM's webhook endpoint.
type auditReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []webhook.Event
}

func newAuditReceiver(t *testing.T) *auditReceiver {
	r := &auditReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.Header.Get(webhook.SignatureHeader) != webhook.Sign([]byte(webhookSecret), req.Header.Get(webhook.TimestampHeader), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("undecodable event: %s", body)
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// details are the delivered events' details, in order, a redelivery of
// the same id (at least once) counted once.
func (r *auditReceiver) details() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	var last int64
	for _, ev := range r.events {
		if ev.ID != last {
			out, last = append(out, ev.Detail), ev.ID
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replica is an App of mode over the database at dbURL (as the role of
// that mode) that streams the audit trail to r; Vault is never contacted.
func replica(t *testing.T, mode, dbURL string, r *auditReceiver, logs io.Writer) *App {
	t.Helper()
	cfg := validConfig()
	cfg.Mode = mode
	cfg.DatabaseURL = testenv.RuntimeURL(t, dbURL)
	if mode == "admin" {
		cfg.ResolverKeys = ""
	} else {
		cfg.DatabaseURL = testenv.ResolverURL(t, dbURL)
	}
	cfg.EventsWebhookURL, cfg.EventsWebhookSecret, cfg.EventsWebhookAudit = r.srv.URL, webhookSecret, true
	a, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.store.Close)
	return a
}

// TestAForeignAdvisoryLockNoLongerKeepsTheAuditTrailFromTheWebhook is the
// review's reproduction: a session of the resolver role holds the advisory
// lock the audit stream used; an admin replica streams anyway. It is
// killed; events are written while no replica streams; the replica that
// starts next resumes after the last event delivered, so the webhook gets
// every event, in order. The resolver role cannot take the stream's lease,
// and a resolver replica does not try.
func TestAForeignAdvisoryLockNoLongerKeepsTheAuditTrailFromTheWebhook(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, dbURL) // migrated and granted; the runtime role, to write events
	write := func(details ...string) {
		t.Helper()
		for _, d := range details {
			if err := st.AppendAudit(ctx, store.AuditEvent{Scope: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event",
				Actor: "test", Outcome: "success", Detail: d}); err != nil {
				t.Fatal(err)
			}
		}
	}
	attacker := holdOldLocks(t, dbURL)
	r := newAuditReceiver(t)
	var logs testenv.SyncBuffer

	first := replica(t, "admin", dbURL, r, &logs)
	ctx1, kill := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); first.streamAudit(ctx1) }()
	waitUntil(t, "the first replica streaming", func() bool {
		l, err := st.LeaseState(ctx, store.LeaseAuditStream)
		return err == nil && l.Positioned && !l.Expired(time.Now())
	})
	write("before")
	waitUntil(t, `"before" delivered`, func() bool { return len(r.details()) == 1 })
	kill()
	<-stopped

	write("during 1", "during 2")
	second := replica(t, "admin", dbURL, r, &logs)
	ctx2, stop := context.WithCancel(ctx)
	stopped2 := make(chan struct{})
	go func() { defer close(stopped2); second.streamAudit(ctx2) }()
	waitUntil(t, "the events written while no replica streamed delivered", func() bool { return len(r.details()) >= 3 })
	write("after")
	waitUntil(t, `"after" delivered`, func() bool { return len(r.details()) >= 4 })
	stop()
	<-stopped2
	if got, want := strings.Join(r.details(), ","), "before,during 1,during 2,after"; got != want {
		t.Fatalf("the webhook got %s, want %s", got, want)
	}

	// The resolver role may not hold the audit stream's lease, by hand or
	// through keybroker; a resolver replica does not stream.
	if _, err := attacker.Exec(ctx, `INSERT INTO admin_leases (name, holder, expires_at) VALUES ('audit-stream', 'sandbox', now() + interval '5 minutes')
		ON CONFLICT (name) DO UPDATE SET holder = 'sandbox', expires_at = now() + interval '5 minutes'`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role wrote the audit stream's lease: %v", err)
	}
	resolverStore := kbtest.NewResolverStore(t, dbURL)
	ran := false
	lease := &store.Lease{Store: resolverStore, Name: store.LeaseAuditStream, Holder: "sandbox", Logger: slog.New(slog.DiscardHandler)}
	if err := lease.Run(ctx, func(context.Context) error { ran = true; return nil }); ran || !errors.Is(err, store.ErrLease) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role ran the audit stream's work (%v): %v", ran, err)
	}
	res := replica(t, "resolver", dbURL, r, &logs)
	res.streamAudit(ctx) // returns at once
	if !strings.Contains(logs.String(), "this replica does not stream") {
		t.Fatalf("the resolver replica said nothing:\n%s", logs.String())
	}
}

// openAIStandIn accepts the keys it is told to on GET /v1/models.
type openAIStandIn struct {
	srv      *httptest.Server
	accepted atomic.Value // string
}

func newOpenAIStandIn(t *testing.T) *openAIStandIn {
	s := &openAIStandIn{}
	s.accepted.Store("")
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if r.URL.Path != "/v1/models" || !ok || key != s.accepted.Load().(string) {
			http.Error(w, `{"error":{"code":"invalid_api_key"}}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestAForeignAdvisoryLockNoLongerKeepsFailingKeysOrTheReconcilerDown: a
// session of the resolver role holds the prober's and the reconciler's old
// advisory locks; the prober (on a resolver replica's role) still returns a
// key that passes to its pool, and the reconciler still runs. The resolver
// role cannot take the reconciler's lease.
func TestAForeignAdvisoryLockNoLongerKeepsFailingKeysOrTheReconcilerDown(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	checker, err := providercheck.New(providercheck.Config{BaseURLs: map[string]string{"openai": provider.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	g := kbtest.NewGround(t, kbtest.Options{Checker: checker})
	holdOldLocks(t, g.DBURL)
	key := "sk-proj-leases-" + testenv.RandomID(t) + testenv.RandomID(t)
	ref := broker.WorkspaceKey("ws1", "openai", "k")
	alice := broker.Actor{Subject: "alice"}
	if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.WorkspaceScope("ws1").Pool("openai"), KeyID: "k", APIKey: key}); err != nil {
		t.Fatal(err)
	}
	if tr, err := g.Broker.TestKey(ctx, alice, ref); err != nil || tr.Health != broker.HealthFailing {
		t.Fatalf("the key while the provider refuses it: %+v %v", tr, err)
	}
	provider.accepted.Store(key)

	logger := slog.New(slog.DiscardHandler)
	leases := newLeases(kbtest.NewResolverStore(t, g.DBURL), nil, logger)
	p := &Prober{Broker: g.Broker, Lease: leases.lease(store.LeaseProber, false), Every: time.Hour, Concurrency: 2, Logger: logger}
	if err := p.RunOnce(ctx); err != nil {
		t.Fatalf("probe while a foreign session holds the old lock: %v", err)
	}
	if meta, err := g.Broker.GetKey(ctx, ref); err != nil || meta.Health == broker.HealthFailing {
		t.Fatalf("the key the provider accepts again stays failing: %+v %v", meta, err)
	}

	admin := newLeases(g.Store, nil, logger)
	rec := &Reconciler{Broker: g.Broker, Lease: admin.lease(store.LeaseReconciler, false), Every: time.Hour, Logger: logger}
	if err := rec.RunOnce(ctx); err != nil {
		t.Fatalf("reconcile while a foreign session holds the old lock: %v", err)
	}
	ran := false
	if err := leases.lease(store.LeaseReconciler, false).Run(ctx, func(context.Context) error { ran = true; return nil }); ran || !strings.Contains(fmtErr(err), "permission denied") {
		t.Fatalf("the resolver role ran the reconciler's work (%v): %v", ran, err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
