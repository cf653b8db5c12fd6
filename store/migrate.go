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

// GrantRuntime gives role, the role `keybroker serve` connects as, exactly
// what serving needs: read and write of key metadata and tokens, and only
// INSERT and SELECT on audit_events. The role owns nothing, so it can
// neither change nor delete audit rows, nor truncate the table, nor
// disable its append-only triggers (only an owner may ALTER a table). It is
// idempotent, and revokes what an earlier grant gave beyond that.
func (s *Store) GrantRuntime(ctx context.Context, role string) error {
	if role == "" {
		return nil
	}
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT true FROM pg_roles WHERE rolname = $1`, role).Scan(&exists)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("runtime role %q does not exist: create it first (CREATE ROLE %s LOGIN PASSWORD ...)", role, role)
	}
	if err != nil {
		return fmt.Errorf("look up runtime role %q: %w", role, err)
	}
	var owner string
	if err := s.pool.QueryRow(ctx, `SELECT current_user`).Scan(&owner); err != nil {
		return fmt.Errorf("look up the migrating role: %w", err)
	}
	if owner == role {
		return fmt.Errorf("the runtime role %q is the role running the migration (the tables' owner): serve must run as another role, or it could disable the audit trail's triggers", role)
	}
	r := pgx.Identifier{role}.Sanitize()
	stmts := []string{
		`GRANT USAGE ON SCHEMA ` + currentSchema + ` TO ` + r,
		`REVOKE ALL ON ALL TABLES IN SCHEMA ` + currentSchema + ` FROM ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON provider_keys, api_tokens, workspace_settings, key_usage TO ` + r,
		`GRANT SELECT, INSERT ON audit_events TO ` + r,
		`GRANT SELECT, INSERT ON proxy_calls TO ` + r,
		`GRANT USAGE ON ALL SEQUENCES IN SCHEMA ` + currentSchema + ` TO ` + r,
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		schema := schemaOf(ctx, tx)
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(q, currentSchema, schema)); err != nil {
				return fmt.Errorf("grant the runtime role %q: %w", role, err)
			}
		}
		slog.InfoContext(ctx, "runtime role granted", "role", role, "audit_events", "INSERT, SELECT")
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
