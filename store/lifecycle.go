package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

var _ broker.ExpiryStore = (*Store)(nil)

// RecordExpiryWarning records that the key.expiring warning of stepDays
// was sent for the key expiring at expiresAt, and appends ev, in one
// transaction, unless some replica recorded it already: the table's
// primary key lets one INSERT win. It says whether this call won.
func (s *Store) RecordExpiryWarning(ctx context.Context, ref broker.KeyRef, expiresAt time.Time, stepDays int, ev broker.AuditEvent) (bool, error) {
	won := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO key_expiry_warnings (scope, scope_id, provider, key_id, expires_at, step_days)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, expiresAt, stepDays)
		if err != nil {
			return err
		}
		if won = tag.RowsAffected() == 1; !won {
			return nil
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return false, fmt.Errorf("record the expiry warning of %s: %w", ref, classify(err))
	}
	return won, nil
}
