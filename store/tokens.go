package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
)

var _ auth.Store = (*Store)(nil)

// tokenColumns are the columns of api_tokens scanToken reads, in its order.
const tokenColumns = `id, token_hash, role, workspaces, organizations, description, created_by, created_at, expires_at, revoked_at, key_id, signature`

// scanToken reads a row of tokenColumns into auth's record.
func scanToken(row pgx.CollectableRow) (auth.TokenRecord, error) {
	var r auth.TokenRecord
	err := row.Scan(&r.ID, &r.Hash, &r.Role, &r.Workspaces, &r.Organizations, &r.Description, &r.CreatedBy, &r.CreatedAt,
		&r.ExpiresAt, &r.RevokedAt, &r.KeyID, &r.Signature)
	return r, err
}

// CreateToken stores a token record and appends evs (one per workspace
// the token reaches), in one transaction.
func (s *Store) CreateToken(ctx context.Context, rec auth.TokenRecord, evs []broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		orgs := rec.Organizations
		if orgs == nil {
			orgs = []string{}
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_tokens (id, token_hash, role, workspaces, organizations, description, created_by, created_at,
				expires_at, key_id, signature)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			rec.ID, rec.Hash, rec.Role, rec.Workspaces, orgs, rec.Description, rec.CreatedBy, rec.CreatedAt, rec.ExpiresAt, rec.KeyID, rec.Signature)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", rec.ID, classify(err))
	}
	return nil
}

// TokenByHash returns the token whose SHA-256 hash is hash.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (auth.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE token_hash = $1`, hash)
	if err != nil {
		return auth.TokenRecord{}, fmt.Errorf("look up token: %w", err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanToken)
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.TokenRecord{}, fmt.Errorf("look up token: %w", ErrNotFound)
	}
	if err != nil {
		return auth.TokenRecord{}, fmt.Errorf("look up token: %w", err)
	}
	return rec, nil
}

// TokenByID returns the token record of an id (revoked or expired ones
// too: the caller decides).
func (s *Store) TokenByID(ctx context.Context, id string) (auth.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id)
	if err != nil {
		return auth.TokenRecord{}, fmt.Errorf("look up token %s: %w", id, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanToken)
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.TokenRecord{}, fmt.Errorf("look up token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return auth.TokenRecord{}, fmt.Errorf("look up token %s: %w", id, err)
	}
	return rec, nil
}

// ListTokens returns every token record, newest first.
func (s *Store) ListTokens(ctx context.Context) ([]auth.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return recs, nil
}

// RevokeToken marks token id revoked (once) and appends ev, in one
// transaction. ErrNotFound when no such token exists or it was already
// revoked.
func (s *Store) RevokeToken(ctx context.Context, id string, ev AuditEvent) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var workspaces, orgs []string
		err := tx.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
			RETURNING workspaces, organizations`, id).Scan(&workspaces, &orgs)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
		if err := notify(ctx, tx, Invalidation{TokenID: id}); err != nil {
			return err
		}
		// One event in the trail of every scope the token reached (and one
		// operator-wide event for a token of none).
		for _, sc := range auth.TokenScopes(workspaces, orgs) {
			ev.ScopeKind, ev.ScopeID = sc.Kind, sc.ID
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// SignToken stores a new signature of token id's row (the owner's
// `keybroker token sign`, for rows of keybroker v2 or of a retired key).
// The row's grant cannot change: a trigger refuses it.
func (s *Store) SignToken(ctx context.Context, id, keyID string, signature []byte, ev AuditEvent) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_tokens SET key_id = $2, signature = $3 WHERE id = $1`, id, keyID, signature)
		if err != nil {
			return fmt.Errorf("sign token %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("sign token %s: %w", id, ErrNotFound)
		}
		if err := notify(ctx, tx, Invalidation{TokenID: id}); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
}

// TokenDescriptions maps each of ids that has a description to it: how
// the audit trail and the page name an actor.
func (s *Store) TokenDescriptions(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id, description FROM api_tokens WHERE id = ANY($1) AND description <> ''`, ids)
	if err != nil {
		return nil, fmt.Errorf("describe tokens: %w", err)
	}
	var id, description string
	_, err = pgx.ForEachRow(rows, []any{&id, &description}, func() error {
		out[id] = description
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("describe tokens: %w", err)
	}
	return out, nil
}
