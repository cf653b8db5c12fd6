package webhook_test

// The review's reproduction (issue 28, M1) against keybroker's own
// replicas: the audit stream, the prober and the reconciler used
// PostgreSQL advisory locks, which any database login may take and hold.
// These tests live beside the audit stream because they need real
// PostgreSQL and Vault (internal/app's own tests need no server).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/app"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
)

// The advisory lock ids keybroker used before its leases ("kbaud",
// "kbpro", "kbrec").
var oldLocks = []int64{0x6b62617564, 0x6b6270726f, 0x6b62726563}

// holdOldLocks takes the old advisory locks on a session of the resolver
// role (a sandbox-facing pod's credentials) and keeps them until the test
// ends, as the review's psql session did.
func holdOldLocks(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.ResolverURL(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, key := range oldLocks {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// runReplica serves a keybroker replica of mode (admin: the runtime role;
// resolver: the resolver role) over the database at dbURL, streaming the
// audit trail to r, until the returned stop is called (a rolling update's
// stop). Vault is never reached: nothing here needs it.
func runReplica(t *testing.T, mode, dbURL string, r *receiver, logs io.Writer) (stop func()) {
	t.Helper()
	cfg := app.Config{Mode: mode, DatabaseURL: testenv.RuntimeURL(t, dbURL), VaultAddr: "http://127.0.0.1:1",
		VaultAuth: app.VaultAuthToken, VaultToken: "hvs.unused", Pepper: "webhook-test-pepper-0123456789",
		AdminTokenKeys: kbtest.AdminTokenKeys, EventsWebhookURL: r.srv.URL, EventsWebhookSecret: string(secret), EventsWebhookAudit: true}
	if mode != "admin" {
		cfg.DatabaseURL, cfg.ResolverKeys = testenv.ResolverURL(t, dbURL), kbtest.ResolverKeys
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// details are the delivered events' details, in order, a redelivery of
// the same id (at least once) counted once.
func (r *receiver) details() []string {
	var out []string
	var last int64
	for _, ev := range r.got() {
		if ev.ID != last {
			out, last = append(out, ev.Detail), ev.ID
		}
	}
	return out
}

// TestAForeignAdvisoryLockNoLongerKeepsTheAuditTrailFromTheWebhook is the
// review's reproduction: a session of the resolver role holds the advisory
// lock the audit stream used; an admin replica streams anyway. It is
// stopped; events are written while no replica streams; the replica that
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
			if err := st.AppendAudit(ctx, store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event",
				Actor: "test", Outcome: "success", Detail: d}); err != nil {
				t.Fatal(err)
			}
		}
	}
	attacker := holdOldLocks(t, dbURL)
	r := newReceiver(t, 0)
	var logs testenv.SyncBuffer

	stopFirst := runReplica(t, "admin", dbURL, r, &logs)
	waitFor(t, "the first replica streaming", func() bool {
		l, err := st.LeaseState(ctx, store.LeaseAuditStream)
		return err == nil && l.Positioned && !l.Expired(time.Now())
	})
	write("before")
	waitFor(t, `"before" delivered`, func() bool { return len(r.details()) == 1 })
	stopFirst()
	if l, err := st.LeaseState(ctx, store.LeaseAuditStream); err != nil || !l.Expired(time.Now()) {
		t.Fatalf("the stopped replica did not release the stream's lease: %+v %v", l, err)
	}

	write("during 1", "during 2")
	stopSecond := runReplica(t, "admin", dbURL, r, &logs)
	waitFor(t, "the events written while no replica streamed delivered", func() bool { return len(r.details()) >= 3 })
	write("after")
	waitFor(t, `"after" delivered`, func() bool { return len(r.details()) >= 4 })
	stopSecond()
	if got, want := strings.Join(r.details(), ","), "before,during 1,during 2,after"; got != want {
		t.Fatalf("the webhook got %s, want %s", got, want)
	}

	// The resolver role may not hold the audit stream's lease, by hand or
	// through keybroker; a resolver replica does not stream.
	if _, err := attacker.Exec(ctx, `INSERT INTO admin_leases (name, holder, expires_at) VALUES ('audit-stream', 'sandbox', now() + interval '5 minutes')
		ON CONFLICT (name) DO UPDATE SET holder = 'sandbox', expires_at = now() + interval '5 minutes'`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role wrote the audit stream's lease: %v", err)
	}
	ran := false
	lease := &store.Lease{Store: kbtest.NewResolverStore(t, dbURL), Name: store.LeaseAuditStream, Holder: "sandbox", Logger: slog.New(slog.DiscardHandler)}
	if err := lease.Run(ctx, func(context.Context) error { ran = true; return nil }); ran || !errors.Is(err, store.ErrLease) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role ran the audit stream's work (%v): %v", ran, err)
	}
	runReplica(t, "resolver", dbURL, r, &logs)
	waitFor(t, "the resolver replica saying it does not stream", func() bool { return strings.Contains(logs.String(), "this replica does not stream") })
}

// openAIStandIn accepts the key it is told to on GET /v1/models.
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
// advisory locks; the prober (as a resolver replica's role) still returns
// a key that passes to its pool, and the reconciler still runs. The
// resolver role cannot take the reconciler's lease.
func TestAForeignAdvisoryLockNoLongerKeepsFailingKeysOrTheReconcilerDown(t *testing.T) {
	ctx := context.Background()
	provider := newOpenAIStandIn(t)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": provider.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	g := kbtest.NewGround(t, kbtest.Options{Checker: checker})
	holdOldLocks(t, g.DBURL)
	key := "sk-proj-leases-" + testenv.RandomID(t) + testenv.RandomID(t)
	ref := broker.WorkspaceKey("ws1", "openai", "k")
	alice := broker.Actor{Subject: "alice"}
	if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.WorkspaceScope("ws1").Pool("openai"), KeyID: "k", Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}
	if tr, err := g.Broker.CheckKey(ctx, alice, ref); err != nil || tr.Health != broker.HealthFailing {
		t.Fatalf("the key while the provider refuses it: %+v %v", tr, err)
	}
	provider.accepted.Store(key)

	logger := slog.New(slog.DiscardHandler)
	resolverStore := kbtest.NewResolverStore(t, g.DBURL)
	p := &app.Prober{Broker: g.Broker, Lease: &store.Lease{Store: resolverStore, Name: store.LeaseProber, Holder: "resolver-replica", Logger: logger},
		Every: time.Hour, Concurrency: 2, Logger: logger}
	if err := p.RunOnce(ctx); err != nil {
		t.Fatalf("probe while a foreign session holds the old lock: %v", err)
	}
	if meta, err := g.Broker.GetKey(ctx, ref); err != nil || meta.Health == broker.HealthFailing {
		t.Fatalf("the key the provider accepts again stays failing: %+v %v", meta, err)
	}

	rec := &app.Reconciler{Broker: g.Broker, Lease: &store.Lease{Store: g.Store, Name: store.LeaseReconciler, Holder: "admin-replica", Logger: logger},
		Every: time.Hour, Logger: logger}
	if err := rec.RunOnce(ctx); err != nil {
		t.Fatalf("reconcile while a foreign session holds the old lock: %v", err)
	}
	ran := false
	err = (&store.Lease{Store: resolverStore, Name: store.LeaseReconciler, Holder: "sandbox", Logger: logger}).Run(ctx, func(context.Context) error { ran = true; return nil })
	if ran || err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role ran the reconciler's work (%v): %v", ran, err)
	}
}
