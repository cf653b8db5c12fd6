package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

var _ broker.SettingsStore = (*Store)(nil)

type settingsRow struct {
	Workspace      string    `db:"workspace"`
	Organization   *string   `db:"organization"`
	Inherit        bool      `db:"inherit"`
	HostedFallback bool      `db:"hosted_fallback"`
	UpdatedAt      time.Time `db:"updated_at"`
	UpdatedBy      string    `db:"updated_by"`
}

func (r settingsRow) settings() broker.Settings {
	s := broker.Settings{Inherit: r.Inherit, HostedFallback: r.HostedFallback, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy}
	if r.Organization != nil {
		s.Organization = *r.Organization
	}
	return s
}

const settingsColumns = `workspace, organization, inherit, hosted_fallback, updated_at, updated_by`

// AllWorkspaceSettings returns the settings of every workspace that has a
// row (the others have broker.DefaultSettings).
func (s *Store) AllWorkspaceSettings(ctx context.Context) (map[string]broker.Settings, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+settingsColumns+` FROM workspace_settings`)
	if err != nil {
		return nil, fmt.Errorf("read workspace settings: %w", classify(err))
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByName[settingsRow])
	if err != nil {
		return nil, fmt.Errorf("read workspace settings: %w", classify(err))
	}
	out := make(map[string]broker.Settings, len(list))
	for _, r := range list {
		out[r.Workspace] = r.settings()
	}
	return out, nil
}

// WorkspaceSettings returns a workspace's settings (the defaults when it
// has no row).
func (s *Store) WorkspaceSettings(ctx context.Context, workspace string) (broker.Settings, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+settingsColumns+` FROM workspace_settings WHERE workspace = $1`, workspace)
	if err != nil {
		return broker.Settings{}, fmt.Errorf("read the settings of %s: %w", workspace, classify(err))
	}
	r, err := pgx.CollectOneRow(rows, pgx.RowToStructByName[settingsRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return broker.DefaultSettings(), nil
	}
	if err != nil {
		return broker.Settings{}, fmt.Errorf("read the settings of %s: %w", workspace, classify(err))
	}
	return r.settings(), nil
}

// PutWorkspaceSettings stores a workspace's settings and appends ev, in one
// transaction, and announces the change to every replica.
func (s *Store) PutWorkspaceSettings(ctx context.Context, workspace string, set broker.Settings, ev broker.AuditEvent) error {
	var org *string
	if set.Organization != "" {
		org = &set.Organization
	}
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO workspace_settings (workspace, organization, inherit, hosted_fallback, updated_by)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (workspace) DO UPDATE SET organization = EXCLUDED.organization, inherit = EXCLUDED.inherit,
				hosted_fallback = EXCLUDED.hosted_fallback, updated_at = now(), updated_by = EXCLUDED.updated_by`,
			workspace, org, set.Inherit, set.HostedFallback, set.UpdatedBy)
		if err != nil {
			return fmt.Errorf("store the settings of %s: %w", workspace, err)
		}
		if err := appendAudit(ctx, tx, ev); err != nil {
			return err
		}
		return notify(ctx, tx, Invalidation{Settings: workspace})
	}))
}

// LinkedWorkspaces returns the settings of every workspace linked to
// organization org, by workspace id.
func (s *Store) LinkedWorkspaces(ctx context.Context, org string) ([]broker.LinkedWorkspace, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+settingsColumns+` FROM workspace_settings WHERE organization = $1 ORDER BY workspace`, org)
	if err != nil {
		return nil, fmt.Errorf("read the workspaces of %s: %w", org, classify(err))
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByName[settingsRow])
	if err != nil {
		return nil, fmt.Errorf("read the workspaces of %s: %w", org, classify(err))
	}
	out := make([]broker.LinkedWorkspace, len(list))
	for i, r := range list {
		out[i] = broker.LinkedWorkspace{Workspace: r.Workspace, Settings: r.settings()}
	}
	return out, nil
}

// ListScopes returns the workspaces and organizations that have keys or
// settings (kind "" for both), whose id contains query, sorted by kind and
// id, after the (kind, id) cursor, at most limit.
func (s *Store) ListScopes(ctx context.Context, kind, query string, after broker.Scope, limit int) ([]broker.Scope, error) {
	rows, err := s.pool.Query(ctx, `
		WITH scopes AS (
			SELECT scope AS kind, scope_id AS id FROM provider_keys WHERE scope <> 'hosted'
			UNION SELECT 'workspace', workspace FROM workspace_settings
			UNION SELECT 'organization', organization FROM workspace_settings WHERE organization IS NOT NULL)
		SELECT kind, id FROM scopes
		WHERE ($1 = '' OR kind = $1) AND strpos(id, $2) > 0 AND (kind, id) > ($3, $4)
		ORDER BY kind, id LIMIT $5`, kind, query, string(after.Kind), after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list scopes: %w", classify(err))
	}
	var out []broker.Scope
	var k, id string
	if _, err := pgx.ForEachRow(rows, []any{&k, &id}, func() error {
		out = append(out, broker.Scope{Kind: broker.ScopeKind(k), ID: id})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list scopes: %w", classify(err))
	}
	return out, nil
}
