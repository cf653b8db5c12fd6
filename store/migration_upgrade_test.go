package store

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// Migration 00022 drops the trigger that kept the serving roles from
// naming a proxied call's id, and gives them INSERT on every column but
// the id instead. A database upgraded by it alone, before `keybroker
// migrate` grants the roles again, must not open a window: a role that
// held INSERT on the whole table holds it on those columns only, and
// naming an id is refused; PUBLIC, which none should have given INSERT,
// loses it. Down gives the table's INSERT and the trigger back.
func TestTheRecordsMigrationLeavesNoRoleAnIDToName(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	resolverURL := testenv.ResolverURL(t, dbURL)
	role := testenv.ResolverRole(t)
	s, err := Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 21); err != nil {
		t.Fatal(err)
	}
	r := pgx.Identifier{role}.Sanitize()
	for _, q := range []string{`GRANT USAGE ON SCHEMA public TO ` + r, `GRANT SELECT, INSERT ON proxy_calls TO ` + r, `GRANT INSERT ON proxy_calls TO PUBLIC`} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	insertWithID := func() error {
		conn, err := pgx.Connect(ctx, resolverURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var id int64
		return conn.QueryRow(ctx, `INSERT INTO proxy_calls (id, at, workspace, provider, scope, key_id, key_version, status, duration_ms,
			byok, retried, bytes_out, caller, request_id) OVERRIDING SYSTEM VALUE
			VALUES (1000000000000, now(), 'ws1', 'openai', 'workspace', 'k', 1, 200, 1, true, false, 0, 'x', 'r') RETURNING id`).Scan(&id)
	}
	if err := insertWithID(); err != nil {
		t.Fatalf("before 00022 the trigger replaced the id: %v", err)
	}

	if _, err := p.UpTo(ctx, 22); err != nil {
		t.Fatal(err)
	}
	if err := insertWithID(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("after 00022 alone a role that held INSERT names an id: %v", err)
	}
	var public int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c, aclexplode(c.relacl) g
		WHERE c.oid = 'proxy_calls'::regclass AND g.grantee = 0 AND g.privilege_type = 'INSERT'`).Scan(&public); err != nil || public != 0 {
		t.Fatalf("after 00022 PUBLIC still inserts into proxy_calls: %d %v", public, err)
	}
	var columns bool
	if err := s.pool.QueryRow(ctx, `SELECT has_column_privilege($1, 'proxy_calls', 'request_id', 'INSERT')
		AND NOT has_column_privilege($1, 'proxy_calls', 'id', 'INSERT')`, role).Scan(&columns); err != nil || !columns {
		t.Fatalf("after 00022 the role's INSERT is not the columns but the id: %v %v", columns, err)
	}

	if _, err := p.Down(ctx); err != nil {
		t.Fatal(err)
	}
	var table bool
	if err := s.pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'proxy_calls', 'INSERT')`, role).Scan(&table); err != nil || !table {
		t.Fatalf("down: the role's INSERT on the table is not back: %v %v", table, err)
	}
	if err := insertWithID(); err != nil {
		t.Fatalf("down: the trigger does not replace the id: %v", err)
	}
}
