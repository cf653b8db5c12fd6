package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies every migration not yet applied, under a PostgreSQL
// advisory lock so that replicas starting together migrate once. It runs
// as the owner of keybroker's tables; with runtimeRole it then grants that
// role what `keybroker serve` needs and nothing more (see GrantRuntime).
func (s *Store) Migrate(ctx context.Context, runtimeRole ...string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrations lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		slog.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration.String())
	}
	for _, role := range runtimeRole {
		if err := s.GrantRuntime(ctx, role); err != nil {
			return err
		}
	}
	return nil
}

// GrantRuntime gives role, the role the admin side of `keybroker serve`
// (modes admin and all) connects as, exactly what it needs: read and write
// of key metadata, settings and usage; tokens added and revoked but never
// deleted (and, by row-level security, never a resolver token's row); only
// INSERT and SELECT on audit_events and proxy_calls; sessions added, and
// touched or ended, never changed otherwise nor deleted; the first uses of
// platform assertions recorded and, once expired, deleted. The role owns
// nothing, so it can neither change nor delete audit rows, nor truncate the
// table, nor lift its triggers (only an owner may ALTER a table). It is
// idempotent, and revokes what an earlier grant gave beyond that.
func (s *Store) GrantRuntime(ctx context.Context, role string) error {
	return s.grant(ctx, "runtime", role, []string{
		`GRANT SELECT, INSERT, UPDATE, DELETE ON provider_keys, key_usage, key_usage_daily TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON workspace_settings TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON api_tokens TO {role}`,
		`GRANT SELECT, INSERT ON audit_events TO {role}`,
		`GRANT SELECT, INSERT ON proxy_token_revocations TO {role}`,
		`GRANT SELECT, INSERT (` + proxyCallColumns + `) ON proxy_calls TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON admin_leases, execution_leases TO {role}`,
		`GRANT SELECT, INSERT ON sessions TO {role}`,
		`GRANT UPDATE (last_seen_at, idle_expires_at, ended_at, ended_reason) ON sessions TO {role}`,
		`GRANT SELECT, INSERT, DELETE ON assertion_uses TO {role}`,
		`GRANT SELECT, INSERT ON key_expiry_warnings TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON scope_lifecycle, key_rotations, provider_revocations TO {role}`,
	})
}

// GrantResolver gives role, the role the execution side of `keybroker
// serve` (modes resolver and proxy: the pods that face sandboxes) connects
// as, what it needs and no more: it reads key metadata, settings and
// tokens; it writes only a key's health columns (reports, the prober), the
// usage counters, and appends audit rows and records of proxied calls. It
// cannot add, change or revoke a token, nor change a key's state, models
// or priority, nor a workspace's settings.
func (s *Store) GrantResolver(ctx context.Context, role string) error {
	return s.grant(ctx, "resolver", role, []string{
		`GRANT SELECT ON provider_keys, workspace_settings, api_tokens TO {role}`,
		`GRANT UPDATE (health, health_reason, health_changed_at, cooldown_until, cooldowns) ON provider_keys TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON key_usage, key_usage_daily TO {role}`,
		`GRANT SELECT, INSERT ON audit_events, proxy_token_revocations TO {role}`,
		`GRANT SELECT, INSERT (` + proxyCallColumns + `) ON proxy_calls TO {role}`,
		`GRANT SELECT, INSERT, UPDATE ON execution_leases TO {role}`,
	})
}

// proxyCallColumns are the columns of proxy_calls a serving role may
// insert: every one but the id, which only the identity gives (so that no
// role can jump the ids or place a row out of order).
const proxyCallColumns = "at, workspace, provider, scope, key_id, key_version, status, duration_ms, byok, retried, bytes_out, caller, request_id"

// grant replaces what role may do in keybroker's schema with stmts
// ({role} stands for the role, {schema} for the schema).
func (s *Store) grant(ctx context.Context, kind, role string, stmts []string) error {
	if role == "" {
		return nil
	}
	// What the role is: a role that can write every table, or pass
	// row-level security, or anything at all, would make these grants
	// meaningless (refused below, once the owner is told apart).
	var super, bypassRLS, writesAll bool
	err := s.pool.QueryRow(ctx, `SELECT rolsuper, rolbypassrls,
		CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_write_all_data') THEN pg_has_role($1, 'pg_write_all_data', 'MEMBER') ELSE false END
		FROM pg_roles WHERE rolname = $1`, role).Scan(&super, &bypassRLS, &writesAll)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s role %q does not exist: create it first (CREATE ROLE %s LOGIN PASSWORD ...)", kind, role, role)
	}
	if err != nil {
		return fmt.Errorf("look up %s role %q: %w", kind, role, err)
	}
	var owner string
	if err := s.pool.QueryRow(ctx, `SELECT current_user`).Scan(&owner); err != nil {
		return fmt.Errorf("look up the migrating role: %w", err)
	}
	if owner == role {
		return fmt.Errorf("the %s role %q is the role running the migration (the tables' owner): serve must run as another role, or it could lift the triggers that keep the audit trail append-only and revocations final", kind, role)
	}
	if super || bypassRLS || writesAll {
		return fmt.Errorf("the %s role %q is a superuser, bypasses row-level security or is a member of pg_write_all_data: serve must run as a role that holds only what keybroker grants it", kind, role)
	}
	r := pgx.Identifier{role}.Sanitize()
	// No sequence: the ids are identities, which need no privilege, and a
	// role that could call nextval could skip ids (the audit stream waits
	// at a gap).
	all := append([]string{
		`GRANT USAGE ON SCHEMA {schema} TO {role}`,
		`REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}`,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}`,
	}, stmts...)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		schema := schemaOf(ctx, tx)
		for _, q := range all {
			q = strings.ReplaceAll(strings.ReplaceAll(q, currentSchema, schema), "{role}", r)
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("grant the %s role %q: %w", kind, role, err)
			}
		}
		slog.InfoContext(ctx, "database role granted", "kind", kind, "role", role)
		return nil
	})
}

// currentSchema stands for the schema keybroker's tables are in.
const currentSchema = "{schema}"

func schemaOf(ctx context.Context, tx pgx.Tx) string {
	var schema string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil || schema == "" {
		schema = "public"
	}
	return pgx.Identifier{schema}.Sanitize()
}
