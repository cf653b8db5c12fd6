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
	LinkKeyID      string    `db:"link_key_id"`
	LinkSignature  []byte    `db:"link_signature"`
	LinkGeneration int64     `db:"link_generation"`
}

func (r settingsRow) settings() broker.Settings {
	s := broker.Settings{Inherit: r.Inherit, HostedFallback: r.HostedFallback, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy,
		LinkKeyID: r.LinkKeyID, LinkSignature: r.LinkSignature, LinkGeneration: r.LinkGeneration}
	if r.Organization != nil {
		s.Organization = *r.Organization
	}
	return s
}

const settingsColumns = `workspace, organization, inherit, hosted_fallback, updated_at, updated_by, link_key_id, link_signature, link_generation`

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

// UpdateWorkspaceSettings changes a workspace's settings in one
// transaction: the row is locked, change decides the next settings (and
// the audit event) from the current ones, and the result is stored, audited
// and announced to every replica. Two writers never both act on the same
// old settings: the second sees the first's result.
func (s *Store) UpdateWorkspaceSettings(ctx context.Context, workspace string,
	change func(cur broker.Settings) (broker.Settings, broker.AuditEvent, error)) (broker.Settings, error) {
	var next broker.Settings
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// A workspace without a row has the defaults: a default row is
		// added first, so that there is a row to lock (undone if change
		// refuses).
		if _, err := tx.Exec(ctx, `INSERT INTO workspace_settings (workspace, updated_by) VALUES ($1, '') ON CONFLICT (workspace) DO NOTHING`,
			workspace); err != nil {
			return fmt.Errorf("lock the settings of %s: %w", workspace, err)
		}
		rows, err := tx.Query(ctx, `SELECT `+settingsColumns+` FROM workspace_settings WHERE workspace = $1 FOR UPDATE`, workspace)
		if err != nil {
			return fmt.Errorf("read the settings of %s: %w", workspace, err)
		}
		cur, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[settingsRow])
		if err != nil {
			return fmt.Errorf("read the settings of %s: %w", workspace, err)
		}
		var ev broker.AuditEvent
		if next, ev, err = change(cur.settings()); err != nil {
			return err
		}
		var org *string
		if next.Organization != "" {
			org = &next.Organization
		}
		if _, err := tx.Exec(ctx, `
			UPDATE workspace_settings SET organization = $2, inherit = $3, hosted_fallback = $4, updated_at = now(), updated_by = $5,
				link_key_id = $6, link_signature = $7, link_generation = $8
			WHERE workspace = $1`,
			workspace, org, next.Inherit, next.HostedFallback, next.UpdatedBy, next.LinkKeyID, next.LinkSignature, next.LinkGeneration); err != nil {
			return fmt.Errorf("store the settings of %s: %w", workspace, err)
		}
		if err := appendAudit(ctx, tx, ev); err != nil {
			return err
		}
		return notify(ctx, tx, Invalidation{Settings: workspace})
	})
	if err != nil {
		return broker.Settings{}, classify(err)
	}
	return next, nil
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
	// Each source is read in order from its index up to the page's
	// length (a platform's million keys are not sorted for a page of 50),
	// then the three are merged.
	rows, err := s.pool.Query(ctx, `
		WITH scopes AS (
			(SELECT DISTINCT scope AS kind, scope_id AS id FROM provider_keys
				WHERE scope <> 'hosted' AND ($1 = '' OR scope = $1) AND strpos(scope_id, $2) > 0 AND (scope, scope_id) > ($3, $4)
				ORDER BY scope, scope_id LIMIT $5)
			UNION
			(SELECT 'workspace', workspace FROM workspace_settings
				WHERE $1 IN ('', 'workspace') AND strpos(workspace, $2) > 0 AND ('workspace', workspace) > ($3, $4)
				ORDER BY workspace LIMIT $5)
			UNION
			(SELECT DISTINCT 'organization', organization FROM workspace_settings
				WHERE organization IS NOT NULL AND $1 IN ('', 'organization') AND strpos(organization, $2) > 0
					AND ('organization', organization) > ($3, $4)
				ORDER BY 2 LIMIT $5))
		SELECT kind, id FROM scopes
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
