package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

// TestRuntimeRoleCannotEraseTheAuditTrail connects as the role keybroker
// serve runs as and tries everything an attacker holding its credentials
// would try on audit_events: each is refused by PostgreSQL itself.
func TestRuntimeRoleCannotEraseTheAuditTrail(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, ownerURL) // migrated as the owner, connected as the runtime role
	if err := st.AppendAudit(ctx, store.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "key.create", Actor: "t", Outcome: "success"}); err != nil {
		t.Fatalf("the runtime role appends: %v", err)
	}
	if evs, err := st.ListAudit(ctx, broker.WorkspaceScope("ws1"), 0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("the runtime role reads: %v %v", evs, err)
	}
	conn, err := pgx.Connect(ctx, testenv.RuntimeURL(t, ownerURL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var who string
	if err := conn.QueryRow(ctx, `SELECT current_user`).Scan(&who); err != nil || who != testenv.RuntimeRole(t) {
		t.Fatalf("connected as %q (%v), want the runtime role", who, err)
	}
	for _, q := range []string{
		`UPDATE audit_events SET actor = 'someone else'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change`,
		`ALTER TABLE audit_events DISABLE TRIGGER ALL`,
		`DROP TRIGGER audit_events_no_change ON audit_events`,
		`DROP TABLE audit_events`,
	} {
		_, err := conn.Exec(ctx, q)
		if err == nil {
			t.Errorf("the runtime role ran %q", q)
			continue
		}
		if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%q failed, but not on privileges: %v", q, err)
		}
	}
	// It cannot grant itself more either (PostgreSQL only warns that nothing
	// was granted).
	_, _ = conn.Exec(ctx, `GRANT UPDATE, DELETE, TRUNCATE ON audit_events TO `+pgx.Identifier{who}.Sanitize())
	var canChange bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege(current_user, 'audit_events', 'UPDATE')
		OR has_table_privilege(current_user, 'audit_events', 'DELETE') OR has_table_privilege(current_user, 'audit_events', 'TRUNCATE')`).Scan(&canChange); err != nil || canChange {
		t.Fatalf("the runtime role holds UPDATE, DELETE or TRUNCATE on audit_events (%v)", err)
	}
	if evs, err := st.ListAudit(ctx, broker.WorkspaceScope("ws1"), 0, 10); err != nil || len(evs) != 1 || evs[0].Actor != "t" {
		t.Fatalf("the trail after the attempts: %v %v", evs, err)
	}
	// It still does its job on the other tables.
	if _, err := conn.Exec(ctx, `UPDATE provider_keys SET updated_by = updated_by`); err != nil {
		t.Fatalf("the runtime role updates key metadata: %v", err)
	}
}

func TestGrantRefusesTheOwnerAsRuntimeRole(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx, "postgres"); err == nil || !strings.Contains(err.Error(), "is the role running the migration") {
		t.Fatalf("granting the owner itself: %v", err)
	}
}

// TestAuditRetentionIsTheOwners: the runtime role cannot prune the trail;
// the owner can, deleting only what is older than asked and recording the
// prune.
func TestAuditRetentionIsTheOwners(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	runtime := kbtest.NewStore(t, ownerURL) // connected as the runtime role
	owner, err := store.Open(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	pool := testenv.NewPoolFor(t, ownerURL)
	if _, err := pool.Exec(ctx, `INSERT INTO audit_events (scope, scope_id, action, actor, outcome, occurred_at)
		VALUES ('workspace', 'ws1', 'key.create', 'old', 'success', now() - interval '500 days'),
		       ('workspace', 'ws1', 'key.rotate', 'new', 'success', now() - interval '10 days')`); err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.PruneAudit(ctx, 400*24*time.Hour, "runtime"); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("the runtime role pruned: %v", err)
	}
	n, err := owner.PruneAudit(ctx, 400*24*time.Hour, "cli:owner")
	if err != nil || n != 1 {
		t.Fatalf("the owner's prune: %d %v", n, err)
	}
	evs, err := owner.ListAllAudit(ctx, 0, 10)
	if err != nil || len(evs) != 2 || evs[0].Action != "audit.prune" || evs[1].Actor != "new" {
		t.Fatalf("after the prune: %+v %v", evs, err)
	}
	// The append-only trigger is back.
	if _, err := pool.Exec(ctx, `UPDATE audit_events SET actor = 'x'`); err == nil {
		t.Fatal("the trail can be changed after a prune")
	}
}

// A serving role that is a superuser, passes row-level security or writes
// every table would hold more than keybroker grants: the grant refuses it.
func TestGrantRefusesRolesThatHoldMoreThanItGrants(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	owner, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	for _, attr := range []string{"SUPERUSER", "BYPASSRLS", "IN ROLE pg_write_all_data"} {
		role := "kbtest_wide_" + testenv.RandomID(t)
		if _, err := owner.Exec(ctx, "CREATE ROLE "+role+" "+attr); err != nil {
			t.Fatal(err)
		}
		for name, grant := range map[string]func(context.Context, string) error{"runtime": st.GrantRuntime, "resolver": st.GrantResolver} {
			if err := grant(ctx, role); err == nil || !strings.Contains(err.Error(), "holds only what keybroker grants it") {
				t.Errorf("%s role %s: %v", name, attr, err)
			}
		}
		if _, err := owner.Exec(ctx, "DROP ROLE "+role); err != nil {
			t.Fatal(err)
		}
	}
}

// The ids are identities, which need no privilege on their sequences: the
// serving roles hold none, so neither can skip ids with nextval (the audit
// stream waits at a gap), and both still add their rows.
func TestServingRolesHoldNoSequence(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	runtime := kbtest.NewStore(t, dbURL)
	kbtest.NewResolverStore(t, dbURL)
	for _, url := range []string{testenv.RuntimeURL(t, dbURL), testenv.ResolverURL(t, dbURL)} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"audit_events", "proxy_calls"} {
			var id int64
			if err := conn.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence($1, 'id'))`, table).Scan(&id); err == nil ||
				!strings.Contains(err.Error(), "permission denied") {
				t.Errorf("a serving role advanced %s's ids to %d (%v)", table, id, err)
			}
		}
		conn.Close(ctx)
	}
	if err := runtime.AppendAudit(ctx, broker.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "key.create", Actor: "t", Outcome: "success"}); err != nil {
		t.Fatalf("the runtime role's audit row: %v", err)
	}
	if err := runtime.AddProxyCalls(ctx, []broker.ProxyCall{{At: time.Now(), Workspace: "ws1", Provider: "openai"}}); err != nil {
		t.Fatalf("the runtime role's record: %v", err)
	}
}
