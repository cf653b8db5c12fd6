package store_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

// TestOnlyTheRolesThatRunTheWorkMayHoldItsLease: the runtime role (admin
// replicas) may hold every lease; the resolver role (the pods that face
// sandboxes) only the prober's — PostgreSQL refuses it the audit stream's
// and the reconciler's, through keybroker's path and by hand. No serving
// role may delete a lease or choose the role a row names.
func TestOnlyTheRolesThatRunTheWorkMayHoldItsLease(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	runtime := kbtest.NewStore(t, dbURL)
	resolver := kbtest.NewResolverStore(t, dbURL)

	for _, name := range []string{store.LeaseAuditStream, store.LeaseReconciler} {
		if _, _, err := resolver.TakeLease(ctx, name, "sandbox-pod", time.Minute); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the resolver role took lease %s: %v, want permission denied", name, err)
		}
		if l, ok, err := runtime.TakeLease(ctx, name, "admin-pod", time.Minute); err != nil || !ok || l.Holder != "admin-pod" || l.HolderRole != testenv.RuntimeRole(t) {
			t.Errorf("the runtime role takes lease %s: %+v %v %v", name, l, ok, err)
		}
	}
	if l, ok, err := resolver.TakeLease(ctx, store.LeaseProber, "resolver-pod", time.Minute); err != nil || !ok || l.HolderRole != testenv.ResolverRole(t) {
		t.Fatalf("the resolver role takes the prober's lease: %+v %v %v", l, ok, err)
	}

	conn, err := pgx.Connect(ctx, testenv.ResolverURL(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`INSERT INTO admin_leases (name, holder, expires_at) VALUES ('audit-stream', 'x', now() + interval '5 minutes')`,
		`UPDATE admin_leases SET holder = 'x', expires_at = now() + interval '5 minutes'`,
		`SELECT count(*) FROM admin_leases`,
		`DELETE FROM execution_leases`,
	} {
		if _, err := conn.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the resolver role ran %q: %v", q, err)
		}
	}
	rconn, err := pgx.Connect(ctx, testenv.RuntimeURL(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(ctx)
	if _, err := rconn.Exec(ctx, `DELETE FROM admin_leases`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the runtime role deleted leases: %v", err)
	}
	// The role a row names is the writer's, whatever the writer says.
	if _, err := rconn.Exec(ctx, `UPDATE admin_leases SET holder_role = 'keybroker_owner' WHERE name = 'reconciler'`); err != nil {
		t.Fatal(err)
	}
	if l, err := runtime.LeaseState(ctx, store.LeaseReconciler); err != nil || l.HolderRole != testenv.RuntimeRole(t) || !l.ServingRole {
		t.Fatalf("after naming another role: %+v %v", l, err)
	}
	// A lease is renewed, never taken for long.
	if _, _, err := runtime.TakeLease(ctx, store.LeaseReconciler, "admin-pod", time.Hour); err == nil || !strings.Contains(err.Error(), "10 minutes") {
		t.Fatalf("a lease of an hour: %v", err)
	}
}

// TestALeaseIsTakenRenewedReleasedAndTakenOverWhenExpired: a live lease
// is its holder's alone; it is taken over once it expires or is
// released; a holder that lost it cannot move the position the next one
// keeps.
func TestALeaseIsTakenRenewedReleasedAndTakenOverWhenExpired(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	const name = store.LeaseAuditStream
	if _, ok, err := st.TakeLease(ctx, name, "a", time.Minute); err != nil || !ok {
		t.Fatalf("take a free lease: %v %v", ok, err)
	}
	l, ok, err := st.TakeLease(ctx, name, "b", time.Minute)
	if err != nil || ok || l.Holder != "a" || !l.ServingRole || l.HolderRole != testenv.RuntimeRole(t) {
		t.Fatalf("b took a's live lease: %+v %v %v", l, ok, err)
	}
	if _, ok, err := st.TakeLease(ctx, name, "a", time.Minute); err != nil || !ok {
		t.Fatalf("a renews: %v %v", ok, err)
	}
	if err := st.AdvanceLease(ctx, name, "a", 7); err != nil {
		t.Fatal(err)
	}
	if err := st.AdvanceLease(ctx, name, "b", 9); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("b moved a's position: %v", err)
	}
	if err := st.ReleaseLease(ctx, name, "a"); err != nil {
		t.Fatal(err)
	}
	l, ok, err = st.TakeLease(ctx, name, "b", time.Minute)
	if err != nil || !ok || l.Position != 7 || !l.Positioned {
		t.Fatalf("b takes the released lease, keeping its position: %+v %v %v", l, ok, err)
	}
	if err := st.AdvanceLease(ctx, name, "a", 3); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a moved the position after losing the lease: %v", err)
	}
	// b stops without releasing (a crash): its lease expires by itself.
	if _, ok, err := st.TakeLease(ctx, name, "b", time.Millisecond); err != nil || !ok {
		t.Fatal(ok, err)
	}
	time.Sleep(5 * time.Millisecond) // past the millisecond lease (PostgreSQL's clock decides)
	if l, ok, err := st.TakeLease(ctx, name, "a", time.Minute); err != nil || !ok || l.Position != 7 {
		t.Fatalf("a takes the expired lease: %+v %v %v", l, ok, err)
	}
	if pos, ok, err := (store.LeaseCursor{Store: st, Lease: name, Holder: "a"}).Position(ctx); err != nil || !ok || pos != 7 {
		t.Fatalf("the cursor: %d %v %v", pos, ok, err)
	}
	if _, ok, err := (store.LeaseCursor{Store: st, Lease: store.LeaseReconciler, Holder: "a"}).Position(ctx); err != nil || ok {
		t.Fatalf("a lease never taken has a position: %v %v", ok, err)
	}
}

// TestALeaseThatCannotBeTakenIsCountedLoggedOnceAndAlerted: every failed
// attempt is counted; the log gets a line at the first and one when the
// lease counts as blocked (AlertAfter attempts in a row), not one per
// attempt; a holder whose role is not a serving role (the owner's psql)
// is reported at once.
func TestALeaseThatCannotBeTakenIsCountedLoggedOnceAndAlerted(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, dbURL)
	owner := kbtest.NewOwnerStore(t, dbURL)
	if _, ok, err := st.TakeLease(ctx, store.LeaseReconciler, "someone-else", 5*time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	l := &store.Lease{Store: st, Name: store.LeaseReconciler, Holder: "me", AlertAfter: 3, LogEvery: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: store.NewLeaseMetrics(reg)}
	ran := false
	for range 6 {
		if err := l.Run(ctx, func(context.Context) error { ran = true; return nil }); !errors.Is(err, store.ErrLeaseHeld) || !errors.Is(err, store.ErrLease) {
			t.Fatalf("run while another holds the lease: %v", err)
		}
	}
	if ran {
		t.Fatal("the work ran without the lease")
	}
	if n := metric(t, reg, "keybroker_lease_attempts_total", "held_elsewhere"); n != 6 {
		t.Fatalf("%v failed attempts counted, want 6", n)
	}
	if b := metric(t, reg, "keybroker_lease_blocked", ""); b != 1 {
		t.Fatalf("keybroker_lease_blocked %v after 6 failed attempts", b)
	}
	out := logs.String()
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "stands by") || !strings.Contains(out, "could not be taken for several attempts") ||
		!strings.Contains(out, `"holder":"someone-else"`) {
		t.Fatalf("want two lines (the first failure, the alert) naming the holder:\n%s", out)
	}

	// The owner (a role no serving replica has) holds the prober's lease.
	if _, ok, err := owner.TakeLease(ctx, store.LeaseProber, "psql", 5*time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	var plogs testenv.SyncBuffer
	p := &store.Lease{Store: st, Name: store.LeaseProber, Holder: "me", Logger: slog.New(slog.NewJSONHandler(&plogs, nil)), Metrics: l.Metrics}
	if err := p.Run(ctx, func(context.Context) error { return nil }); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatal(err)
	}
	if f := metric(t, reg, "keybroker_lease_foreign_holder", store.LeaseProber); f != 1 || !strings.Contains(plogs.String(), "not a keybroker serving role") {
		t.Fatalf("foreign holder %v; log:\n%s", f, plogs.String())
	}

	// Once the holder lets go, the work runs under the lease, and the
	// alert ends.
	if err := st.ReleaseLease(ctx, store.LeaseReconciler, "someone-else"); err != nil {
		t.Fatal(err)
	}
	held := 0.0
	if err := l.Run(ctx, func(context.Context) error {
		held = metric(t, reg, "keybroker_lease_held", store.LeaseReconciler)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if held != 1 || metric(t, reg, "keybroker_lease_held", store.LeaseReconciler) != 0 || metric(t, reg, "keybroker_lease_blocked", store.LeaseReconciler) != 0 {
		t.Fatalf("held %v while running; after: held %v, blocked %v", held, metric(t, reg, "keybroker_lease_held", store.LeaseReconciler),
			metric(t, reg, "keybroker_lease_blocked", store.LeaseReconciler))
	}
	if s, err := st.LeaseState(ctx, store.LeaseReconciler); err != nil || !s.Expired(time.Now().Add(time.Second)) {
		t.Fatalf("the lease after the run is not released: %+v %v", s, err)
	}
}

// TestAStalledAuditStreamIsAlerted: a replica standing by for the audit
// stream raises no alert while the holder keeps up; it does when the
// holder's cursor stays put while events wait, and drops it when the
// cursor moves.
func TestAStalledAuditStreamIsAlerted(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	if _, ok, err := st.TakeLease(ctx, store.LeaseAuditStream, "holder", 5*time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	l := &store.Lease{Store: st, Name: store.LeaseAuditStream, Holder: "standby", Continuous: true, AlertAfter: 3, LogEvery: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: store.NewLeaseMetrics(reg)}
	attempt := func() {
		t.Helper()
		if err := l.Run(ctx, func(context.Context) error { return nil }); !errors.Is(err, store.ErrLeaseHeld) {
			t.Fatal(err)
		}
	}
	for range 5 {
		attempt()
	}
	if b := metric(t, reg, "keybroker_lease_blocked", ""); b != 0 {
		t.Fatalf("blocked %v while nothing waits", b)
	}
	for range 4 {
		if err := st.AppendAudit(ctx, store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "test.event", Actor: "t", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		attempt()
	}
	if b, backlog := metric(t, reg, "keybroker_lease_blocked", ""), metric(t, reg, "keybroker_lease_backlog", ""); b != 1 || backlog != 4 {
		t.Fatalf("blocked %v, backlog %v: want the stalled stream reported with 4 events waiting", b, backlog)
	}
	if !strings.Contains(logs.String(), "has not moved its cursor") {
		t.Fatalf("no alert in the log:\n%s", logs.String())
	}
	latest, err := st.LatestAuditID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AdvanceLease(ctx, store.LeaseAuditStream, "holder", latest-1); err != nil {
		t.Fatal(err)
	}
	attempt()
	if b := metric(t, reg, "keybroker_lease_blocked", ""); b != 0 {
		t.Fatalf("blocked %v after the holder moved its cursor", b)
	}
}

// TestALostLeaseStopsItsWork: when the row names another holder (the lease
// was taken over), the next renewal stops the work and Run says so.
func TestALostLeaseStopsItsWork(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, dbURL)
	l := &store.Lease{Store: st, Name: store.LeaseReconciler, Holder: "me", TTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	err := l.Run(ctx, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, testenv.RuntimeURL(t, dbURL))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `UPDATE admin_leases SET holder = 'intruder', expires_at = now() + interval '5 minutes' WHERE name = 'reconciler'`); err != nil {
			return err
		}
		<-ctx.Done() // the renewal finds the lease gone
		return ctx.Err()
	})
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("run: %v, want ErrLeaseLost", err)
	}
	if s, err := st.LeaseState(ctx, store.LeaseReconciler); err != nil || s.Holder != "intruder" {
		t.Fatalf("the lost lease was released from under its new holder: %+v %v", s, err)
	}
}

// metric reads a metric of reg: a counter by its outcome label, or a gauge
// (the first series when lease is "", else the lease's).
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == label
			}
			if match {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
