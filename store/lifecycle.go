package store

import (
	"context"
	"errors"
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

// LearnExpiry sets the key's expires_at to expiresAt unless it has an
// earlier one, and appends ev, in one transaction: only expires_at (and
// who changed the row, when) is written, so an admin's concurrent change
// of the key's name, priority or state stays, and the condition is
// checked on the row as it is, not as it was read.
func (s *Store) LearnExpiry(ctx context.Context, ref broker.KeyRef, expiresAt time.Time, ev broker.AuditEvent) (bool, error) {
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var version int
		err := tx.QueryRow(ctx, `UPDATE provider_keys SET expires_at = $5, updated_at = now(), updated_by = $6
			WHERE `+keyMatch+` AND kv_version > 0 AND (expires_at IS NULL OR expires_at > $5) RETURNING kv_version`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, expiresAt, ev.Actor).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		changed = true
		if err := notify(ctx, tx, keyChanged(ref, version)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return false, fmt.Errorf("learn the expiry of %s: %w", ref, classify(err))
	}
	return changed, nil
}

var _ broker.RotationStore = (*Store)(nil)

// rotationColumns are the columns of key_rotations scanRotation reads, in
// its order.
const rotationColumns = `id::text, scope, scope_id, provider, key_id, new_key_id, admin_key_id, trigger, step, state, account_name,
	coalesce(new_provider_key_id, ''), coalesce(old_provider_key_id, ''), grace_seconds, delete_after, claimed_until, error,
	started_by, started_at, updated_at, sig_key_id, signature, attempts`

func scanRotation(row pgx.CollectableRow) (broker.Rotation, error) {
	var (
		r                         broker.Rotation
		scope                     string
		grace                     int64
		deleteAfter, claimedUntil *time.Time
	)
	err := row.Scan(&r.ID, &scope, &r.Ref.ScopeID, &r.Ref.Provider, &r.Ref.KeyID, &r.NewKeyID, &r.AdminKeyID, &r.Trigger, &r.Step, &r.State,
		&r.AccountName, &r.NewProviderKeyID, &r.OldProviderKeyID, &grace, &deleteAfter, &claimedUntil, &r.Error,
		&r.StartedBy, &r.StartedAt, &r.UpdatedAt, &r.SigKeyID, &r.Signature, &r.Attempts)
	if err != nil {
		return broker.Rotation{}, err
	}
	r.Ref.ScopeKind = broker.ScopeKind(scope)
	r.Grace = time.Duration(grace) * time.Second
	if deleteAfter != nil {
		r.DeleteAfter = *deleteAfter
	}
	if claimedUntil != nil {
		r.ClaimedUntil = *claimedUntil
	}
	return r, nil
}

// StartRotation records a new rotation and appends ev, in one
// transaction; broker.ErrConflict when the key has one running.
func (s *Store) StartRotation(ctx context.Context, r broker.Rotation, ev broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO key_rotations (id, scope, scope_id, provider, key_id, new_key_id, admin_key_id, trigger,
				step, state, account_name, old_provider_key_id, grace_seconds, claimed_until, started_by, started_at, updated_at,
				sig_key_id, signature)
			VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18)`,
			r.ID, string(r.Ref.ScopeKind), r.Ref.ScopeID, r.Ref.Provider, r.Ref.KeyID, r.NewKeyID, r.AdminKeyID, r.Trigger,
			r.Step, r.State, r.AccountName, nullString(r.OldProviderKeyID), int64(r.Grace/time.Second), nullTime(r.ClaimedUntil),
			r.StartedBy, r.StartedAt, r.SigKeyID, r.Signature); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("start rotation of %s: %w", r.Ref, classify(err))
	}
	return nil
}

// RecordRotation stores r's step, state and fields, and appends ev, in
// one transaction, over the row as from says it was (its step and claim):
// broker.ErrConflict when another replica advanced it meanwhile.
func (s *Store) RecordRotation(ctx context.Context, r broker.Rotation, from broker.RotationFrom, ev broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE key_rotations SET step = $2, state = $3, new_provider_key_id = $4, delete_after = $5,
				claimed_until = $6, error = $7, updated_at = $8, sig_key_id = $9, signature = $10, attempts = $11
			WHERE id = $1::uuid AND step = $12 AND claimed_until IS NOT DISTINCT FROM $13`,
			r.ID, r.Step, r.State, nullString(r.NewProviderKeyID), nullTime(r.DeleteAfter), nullTime(r.ClaimedUntil), truncate(r.Error, 500), r.UpdatedAt,
			r.SigKeyID, r.Signature, r.Attempts, from.Step, nullTime(from.ClaimedUntil))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT true FROM key_rotations WHERE id = $1::uuid`, r.ID).Scan(&exists); errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return fmt.Errorf("%w: the rotation was advanced by another replica since this one read it", broker.ErrConflict)
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("record rotation %s: %w", r.ID, classify(err))
	}
	return nil
}

// GetRotation returns one rotation; ErrNotFound when there is none.
func (s *Store) GetRotation(ctx context.Context, id string) (broker.Rotation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rotationColumns+` FROM key_rotations WHERE id = $1::uuid`, id)
	if err != nil {
		return broker.Rotation{}, classify(err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRotation)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return broker.Rotation{}, ErrNotFound
		}
		return broker.Rotation{}, classify(err)
	}
	return r, nil
}

// ListRotations returns the rotations of a key, newest first.
func (s *Store) ListRotations(ctx context.Context, ref broker.KeyRef, limit int) ([]broker.Rotation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rotationColumns+` FROM key_rotations WHERE `+keyMatch+`
		ORDER BY started_at DESC, id LIMIT $5`, string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, limit)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanRotation)
	return out, classify(err)
}

// RunningRotations returns every running rotation, oldest first.
func (s *Store) RunningRotations(ctx context.Context) ([]broker.Rotation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rotationColumns+` FROM key_rotations WHERE state = 'running' ORDER BY started_at`)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanRotation)
	return out, classify(err)
}

var (
	_ broker.RevocationStore        = (*Store)(nil)
	_ broker.LifecycleSettingsStore = (*Store)(nil)
)

const revocationColumns = `id::text, scope, scope_id, provider, key_id, provider_key_id, admin_key_id, state, attempts, last_error,
	next_attempt_at, requested_by, created_at, updated_at, located, sig_key_id, signature`

func scanRevocation(row pgx.CollectableRow) (broker.Revocation, error) {
	var rv broker.Revocation
	var scope string
	err := row.Scan(&rv.ID, &scope, &rv.Ref.ScopeID, &rv.Ref.Provider, &rv.Ref.KeyID, &rv.ProviderKeyID, &rv.AdminKeyID, &rv.State,
		&rv.Attempts, &rv.LastError, &rv.NextAttempt, &rv.RequestedBy, &rv.CreatedAt, &rv.UpdatedAt, &rv.Located, &rv.SigKeyID, &rv.Signature)
	rv.Ref.ScopeKind = broker.ScopeKind(scope)
	return rv, err
}

// StartRevocation records a pending revocation and appends ev, in one
// transaction.
func (s *Store) StartRevocation(ctx context.Context, rv broker.Revocation, ev broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO provider_revocations (id, scope, scope_id, provider, key_id, provider_key_id, admin_key_id,
				state, next_attempt_at, requested_by, created_at, updated_at, located, sig_key_id, signature)
			VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)`,
			rv.ID, string(rv.Ref.ScopeKind), rv.Ref.ScopeID, rv.Ref.Provider, rv.Ref.KeyID, rv.ProviderKeyID, rv.AdminKeyID, rv.State,
			rv.NextAttempt, rv.RequestedBy, rv.CreatedAt, rv.Located, rv.SigKeyID, rv.Signature); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("record the revocation of %s: %w", rv.Ref, classify(err))
	}
	return nil
}

// RecordRevocation stores an attempt's outcome and appends ev, in one
// transaction.
func (s *Store) RecordRevocation(ctx context.Context, rv broker.Revocation, ev broker.AuditEvent) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE provider_revocations SET state = $2, attempts = $3, last_error = $4, next_attempt_at = $5,
				updated_at = $6, located = $7, sig_key_id = $8, signature = $9 WHERE id = $1::uuid`,
			rv.ID, rv.State, rv.Attempts, truncate(rv.LastError, 500), rv.NextAttempt, rv.UpdatedAt, rv.Located, rv.SigKeyID, rv.Signature); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("record revocation %s: %w", rv.ID, classify(err))
	}
	return nil
}

// DueRevocations returns the revocations not done whose next attempt is
// due at now, oldest first.
func (s *Store) DueRevocations(ctx context.Context, now time.Time) ([]broker.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+revocationColumns+` FROM provider_revocations
		WHERE state <> 'done' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 100`, now)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, scanRevocation)
	return out, classify(err)
}

// GetLifecycleSettings returns a scope's lifecycle settings (zero when it
// has none).
func (s *Store) GetLifecycleSettings(ctx context.Context, scope broker.Scope) (broker.LifecycleSettings, error) {
	var out broker.LifecycleSettings
	var secs *int64
	err := s.pool.QueryRow(ctx, `SELECT rotate_after_seconds, updated_at, updated_by FROM scope_lifecycle WHERE scope = $1 AND scope_id = $2`,
		string(scope.Kind), scope.ID).Scan(&secs, &out.UpdatedAt, &out.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return broker.LifecycleSettings{}, nil
	}
	if err != nil {
		return broker.LifecycleSettings{}, fmt.Errorf("read the lifecycle settings of %s: %w", scope, classify(err))
	}
	if secs != nil {
		out.RotateAfter = time.Duration(*secs) * time.Second
	}
	return out, nil
}

// PutLifecycleSettings stores a scope's lifecycle settings and appends ev,
// in one transaction.
func (s *Store) PutLifecycleSettings(ctx context.Context, scope broker.Scope, ls broker.LifecycleSettings, ev broker.AuditEvent) error {
	var secs *int64
	if ls.RotateAfter > 0 {
		v := int64(ls.RotateAfter / time.Second)
		secs = &v
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO scope_lifecycle (scope, scope_id, rotate_after_seconds, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, scope_id) DO UPDATE SET
				rotate_after_seconds = EXCLUDED.rotate_after_seconds, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by`,
			string(scope.Kind), scope.ID, secs, ls.UpdatedAt, ls.UpdatedBy); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("store the lifecycle settings of %s: %w", scope, classify(err))
	}
	return nil
}

// ScheduledScopes returns every scope with a rotateAfter.
func (s *Store) ScheduledScopes(ctx context.Context) (map[broker.Scope]broker.LifecycleSettings, error) {
	rows, err := s.pool.Query(ctx, `SELECT scope, scope_id, rotate_after_seconds, updated_at, updated_by FROM scope_lifecycle
		WHERE rotate_after_seconds IS NOT NULL`)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	out := map[broker.Scope]broker.LifecycleSettings{}
	for rows.Next() {
		var kind, id string
		var secs int64
		var ls broker.LifecycleSettings
		if err := rows.Scan(&kind, &id, &secs, &ls.UpdatedAt, &ls.UpdatedBy); err != nil {
			return nil, classify(err)
		}
		ls.RotateAfter = time.Duration(secs) * time.Second
		out[broker.Scope{Kind: broker.ScopeKind(kind), ID: id}] = ls
	}
	return out, classify(rows.Err())
}
