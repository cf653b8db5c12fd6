package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keybroker/keybroker/auth"
)

// RevokeProxyToken records rev, appends ev and announces the revocation to
// every replica, in one transaction. A token revoked already is
// ErrNotFound (nothing changes).
func (s *Store) RevokeProxyToken(ctx context.Context, rev auth.RevokedProxyToken, ev AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO proxy_token_revocations (token_id, workspace, expires_at, revoked_by) VALUES ($1, $2, $3, $4)`,
			rev.TokenID, rev.Workspace, rev.ExpiresAt, rev.RevokedBy); err != nil {
			return err
		}
		if err := notify(ctx, tx, Invalidation{ProxyTokenID: rev.TokenID}); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation {
		return fmt.Errorf("revoke proxy token %s: %w", rev.TokenID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke proxy token %s: %w", rev.TokenID, err)
	}
	return nil
}

// ProxyTokenRevocations returns the revocations of proxy tokens that have
// not expired yet (what every replica keeps in memory).
func (s *Store) ProxyTokenRevocations(ctx context.Context) ([]auth.RevokedProxyToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT token_id, workspace, expires_at, revoked_by FROM proxy_token_revocations WHERE expires_at > now()`)
	if err != nil {
		return nil, fmt.Errorf("list proxy token revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auth.RevokedProxyToken, error) {
		var r auth.RevokedProxyToken
		err := row.Scan(&r.TokenID, &r.Workspace, &r.ExpiresAt, &r.RevokedBy)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list proxy token revocations: %w", err)
	}
	return out, nil
}
