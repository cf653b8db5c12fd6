package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) *store.Store {
	t.Helper()
	return kbtest.NewStore(t, testenv.DatabaseURL(t))
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	url := testenv.DatabaseURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			st, err := store.Open(context.Background(), url)
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			errs[i] = st.Migrate(context.Background())
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if _, err := st.ListKeys(context.Background(), broker.WorkspaceScope("ws")); err != nil {
		t.Fatalf("tables missing after migrate: %v", err)
	}
}

func TestAuditTrailIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendAudit(ctx, store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws", Provider: "openai", Action: "key.create", Actor: "alice", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	pool := testenv.NewPoolFor(t, url)
	for _, sql := range []string{
		`UPDATE audit_events SET actor = 'mallory'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
	} {
		if _, err := pool.Exec(ctx, sql); err == nil {
			t.Errorf("%s succeeded on the append-only audit trail", sql)
		}
	}
	evs, err := st.ListAudit(ctx, broker.WorkspaceScope("ws"), 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Actor != "alice" {
		t.Fatalf("audit after tampering attempts: %+v %v", evs, err)
	}
}

func change(op string) broker.Change {
	return broker.Change{ID: uuid.NewString(), Op: op, By: "alice", MaskedKey: "sk-abc...wxyz", Fingerprint: "fp-" + op}
}

func TestWriteLifecycle(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	create := change(broker.OpSet)
	rec, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), create)
	if err != nil {
		t.Fatal(err)
	}
	if rec.WriteStatus != broker.WritePending || rec.Version != 0 {
		t.Fatalf("pending create: %+v", rec)
	}
	// A key with no confirmed version is not listed.
	if _, err := st.GetKey(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get during a pending create: %v", err)
	}
	ev := store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws", Provider: "openai", Action: "key.create", Actor: "alice", Outcome: "success"}
	if err := st.CompleteWrite(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), create.ID, broker.Written{Version: 1, MaskedKey: "sk-one...1111", Fingerprint: "f1", By: "alice"}, ev); err != nil {
		t.Fatal(err)
	}
	rec, err = st.GetKey(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID))
	if err != nil || rec.WriteStatus != broker.WriteComplete || rec.Version != 1 || rec.MaskedKey != "sk-one...1111" || rec.Pending != nil {
		t.Fatalf("after create: %+v %v", rec, err)
	}

	rotate := change(broker.OpSet)
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), rotate); err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.GetKey(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID)); rec.Version != 1 || rec.WriteStatus != broker.WritePending {
		t.Fatalf("during rotation the last confirmed version stays: %+v", rec)
	}
	if err := st.CompleteWrite(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), rotate.ID, broker.Written{Version: 3, MaskedKey: "sk-thr...3333", Fingerprint: "f3", By: "bob"}, ev); err != nil {
		t.Fatal(err)
	}
	// A completion that arrives late (version 2 after 3) does not move the
	// metadata backwards.
	if err := st.CompleteWrite(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), uuid.NewString(), broker.Written{Version: 2, MaskedKey: "sk-two...2222", Fingerprint: "f2", By: "carol"}, ev); err != nil {
		t.Fatal(err)
	}
	rec, err = st.GetKey(ctx, broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID))
	if err != nil || rec.Version != 3 || rec.MaskedKey != "sk-thr...3333" || rec.UpdatedBy != "bob" || rec.CreatedBy != "alice" || rec.WriteStatus != broker.WriteComplete {
		t.Fatalf("after rotation: %+v %v", rec, err)
	}
	evs, err := st.ListAudit(ctx, broker.WorkspaceScope("ws"), 0, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("audit events: %d %v", len(evs), err)
	}
}

func TestAbortChange(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	create := change(broker.OpSet)
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), create); err != nil {
		t.Fatal(err)
	}
	if err := st.AbortChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), create.ID); err != nil {
		t.Fatal(err)
	}
	if pending, err := st.ListPending(ctx, 0); err != nil || len(pending) != 0 {
		t.Fatalf("an aborted create left rows: %+v %v", pending, err)
	}

	first := change(broker.OpSet)
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), first); err != nil {
		t.Fatal(err)
	}
	ev := store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws", Provider: "mistral", Action: "key.create", Actor: "a", Outcome: "success"}
	if err := st.CompleteWrite(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), first.ID, broker.Written{Version: 1, MaskedKey: "m", Fingerprint: "f", By: "a"}, ev); err != nil {
		t.Fatal(err)
	}
	// Two racing changes: the second replaces the first's pending mark, so
	// the first may no longer abort it.
	a, b := change(broker.OpSet), change(broker.OpSet)
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), b); err != nil {
		t.Fatal(err)
	}
	if err := st.AbortChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), a.ID); err != nil {
		t.Fatal(err)
	}
	rec, err := st.GetKey(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID))
	if err != nil || rec.WriteStatus != broker.WritePending || rec.Pending == nil || rec.Pending.ID != b.ID {
		t.Fatalf("abort of a replaced change touched the other: %+v %v", rec, err)
	}
	if err := st.AbortChange(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID), b.ID); err != nil {
		t.Fatal(err)
	}
	rec, err = st.GetKey(ctx, broker.WorkspaceKey("ws", "mistral", broker.DefaultKeyID))
	if err != nil || rec.WriteStatus != broker.WriteComplete || rec.Version != 1 {
		t.Fatalf("after aborting a rotation: %+v %v", rec, err)
	}
}

func TestCompleteDeleteKeepsANewerVersion(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	ev := store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws", Provider: "exa", Action: "x", Actor: "a", Outcome: "success"}
	c := change(broker.OpSet)
	if _, err := st.BeginChange(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID), c); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteWrite(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID), c.ID, broker.Written{Version: 5, MaskedKey: "m", Fingerprint: "f", By: "a"}, ev); err != nil {
		t.Fatal(err)
	}
	if err := st.CompleteDelete(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID), 4, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetKey(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID)); err != nil {
		t.Fatalf("deleting version 4 removed the row of version 5: %v", err)
	}
	if err := st.CompleteDelete(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID), 5, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetKey(ctx, broker.WorkspaceKey("ws", "exa", broker.DefaultKeyID)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after deleting the current version: %v", err)
	}
}

func TestDatabaseRefusesMalformedIDs(t *testing.T) {
	st := newStore(t)
	for _, ws := range []string{"Upper", "", "has space", "-lead"} {
		if _, err := st.BeginChange(context.Background(), broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), change(broker.OpSet)); err == nil {
			t.Errorf("workspace id %q accepted", ws)
		}
	}
	// A key id follows the rule too, and a hosted key has no scope id.
	for _, ref := range []broker.KeyRef{
		{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Provider: "openai", KeyID: "Bad Key"},
		{ScopeKind: broker.ScopeHosted, ScopeID: "ws1", Provider: "openai", KeyID: "default"},
		{ScopeKind: "galaxy", ScopeID: "ws1", Provider: "openai", KeyID: "default"},
	} {
		if _, err := st.BeginChange(context.Background(), ref, change(broker.OpSet)); err == nil {
			t.Errorf("%+v accepted", ref)
		}
	}
	if _, err := st.BeginChange(context.Background(), broker.HostedKey("openai", broker.DefaultKeyID), change(broker.OpSet)); err != nil {
		t.Errorf("a hosted key's row refused: %v", err)
	}
}

func TestPurgeWorkspaceRemovesOnlyItsRows(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	ev := store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "x", Action: "x", Actor: "a", Outcome: "success"}
	for _, ws := range []string{"gone", "kept"} {
		for _, p := range []string{"openai", "exa"} {
			c := change(broker.OpSet)
			if _, err := st.BeginChange(ctx, broker.WorkspaceKey(ws, p, broker.DefaultKeyID), c); err != nil {
				t.Fatal(err)
			}
			if err := st.CompleteWrite(ctx, broker.WorkspaceKey(ws, p, broker.DefaultKeyID), c.ID, broker.Written{Version: 1, MaskedKey: "m", Fingerprint: "f", By: "a"}, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := st.PurgeScope(ctx, broker.WorkspaceScope("gone"), store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "gone", Action: "workspace.purge", Actor: "op", Outcome: "success"})
	if err != nil || n != 2 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if recs, _ := st.ListKeys(ctx, broker.WorkspaceScope("gone")); len(recs) != 0 {
		t.Fatalf("purged workspace still has %d keys", len(recs))
	}
	if recs, _ := st.ListKeys(ctx, broker.WorkspaceScope("kept")); len(recs) != 2 || recs[0].Provider != "exa" {
		t.Fatalf("other workspace: %+v", recs)
	}
}

// TestUniqueViolationIsAConflictNotAnOutage: PostgreSQL's 23505 reaches
// callers as the broker's ErrConflict (409), never as ErrUnavailable (503).
func TestUniqueViolationIsAConflictNotAnOutage(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	rec := auth.TokenRecord{ID: "tok_0123456789abcdef", Hash: []byte("0123456789abcdef0123456789abcdef"), Role: "operator", Workspaces: []string{}, CreatedBy: "test"}
	ev := store.AuditEvent{Action: "token.create", Actor: "test", Outcome: "success"}
	if err := st.CreateToken(ctx, rec, []store.AuditEvent{ev}); err != nil {
		t.Fatal(err)
	}
	err := st.CreateToken(ctx, rec, []store.AuditEvent{ev})
	if !errors.Is(err, store.ErrDuplicate) || !errors.Is(err, broker.ErrConflict) || errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("second token with the same id: %v", err)
	}
}
