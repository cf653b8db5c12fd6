package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

// TokenRecord is an API token as stored: its SHA-256 hash, never the token.
type TokenRecord struct {
	ID          string     `db:"id"`
	Hash        []byte     `db:"token_hash"`
	Role        string     `db:"role"`
	Workspaces  []string   `db:"workspaces"`
	Description string     `db:"description"`
	CreatedBy   string     `db:"created_by"`
	CreatedAt   time.Time  `db:"created_at"`
	ExpiresAt   *time.Time `db:"expires_at"`
	RevokedAt   *time.Time `db:"revoked_at"`
}

const tokenColumns = `id, token_hash, role, workspaces, description, created_by, created_at, expires_at, revoked_at`

// CreateToken stores a token record and appends evs (one per workspace
// the token reaches), in one transaction.
func (s *Store) CreateToken(ctx context.Context, rec TokenRecord, evs []broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_tokens (id, token_hash, role, workspaces, description, created_by, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			rec.ID, rec.Hash, rec.Role, rec.Workspaces, rec.Description, rec.CreatedBy, rec.ExpiresAt)
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
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE token_hash = $1`, hash)
	if err != nil {
		return TokenRecord{}, fmt.Errorf("look up token: %w", err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[TokenRecord])
	if errors.Is(err, pgx.ErrNoRows) {
		return TokenRecord{}, fmt.Errorf("look up token: %w", ErrNotFound)
	}
	if err != nil {
		return TokenRecord{}, fmt.Errorf("look up token: %w", err)
	}
	return rec, nil
}

// ListTokens returns every token record, newest first.
func (s *Store) ListTokens(ctx context.Context) ([]TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByName[TokenRecord])
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
		var workspaces []string
		err := tx.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING workspaces`, id).Scan(&workspaces)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
		if err := notify(ctx, tx, Invalidation{TokenID: id}); err != nil {
			return err
		}
		// One event in the trail of every workspace the token reached
		// (and one operator-wide event for a token of no workspace).
		if len(workspaces) == 0 {
			workspaces = []string{""}
		}
		for _, ws := range workspaces {
			ev.Workspace = ws
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}
