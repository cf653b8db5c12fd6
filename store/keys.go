package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

// ErrNotFound: no such row. It is the broker's, so that the domain sees
// its own sentinel.
var ErrNotFound = broker.ErrNotFound

var _ broker.MetadataStore = (*Store)(nil)

// scanKey reads a row of keyColumns into the broker's record: the one place
// a provider_keys row becomes a broker.KeyRecord.
func scanKey(row pgx.CollectableRow) (broker.KeyRecord, error) {
	var (
		rec                                   broker.KeyRecord
		scope, keyState, health               string
		healthAt, cooldownUntil, pendingSince *time.Time
		pendingID, pendingOp, pendingBy       *string
		pendingMaskedKey, pendingFingerprint  *string
		pendingKind                           *string
		pendingFields                         map[string]any
		pendingMasked                         map[string]string
		expiresAt                             *time.Time
		providerKeyID                         *string
	)
	err := row.Scan(&scope, &rec.ScopeID, &rec.Provider, &rec.KeyID, &rec.WriteStatus, &rec.Name, &rec.Priority, &keyState, &rec.Models,
		&health, &rec.HealthReason, &healthAt, &cooldownUntil, &rec.Cooldowns, &rec.Version, &rec.MaskedKey, &rec.Fingerprint,
		&rec.Kind, &rec.Fields, &rec.Masked,
		&rec.CreatedAt, &rec.CreatedBy, &rec.UpdatedAt, &rec.UpdatedBy,
		&pendingID, &pendingOp, &pendingSince, &pendingBy, &pendingMaskedKey, &pendingFingerprint,
		&pendingKind, &pendingFields, &pendingMasked, &expiresAt, &providerKeyID)
	if err != nil {
		return broker.KeyRecord{}, err
	}
	if expiresAt != nil {
		rec.ExpiresAt = *expiresAt
	}
	rec.ProviderKeyID = deref(providerKeyID)
	rec.ScopeKind = broker.ScopeKind(scope)
	rec.Disabled, rec.Failing = keyState == broker.KeyDisabled, health == broker.HealthFailing
	if healthAt != nil {
		rec.HealthChangedAt = *healthAt
	}
	if cooldownUntil != nil {
		rec.CooldownUntil = *cooldownUntil
	}
	if pendingID != nil {
		p := &broker.PendingChange{ID: *pendingID, Op: deref(pendingOp), By: deref(pendingBy),
			MaskedKey: deref(pendingMaskedKey), Fingerprint: deref(pendingFingerprint),
			View: broker.CredentialView{Kind: deref(pendingKind), Fields: pendingFields, Masked: pendingMasked}}
		if pendingSince != nil {
			p.Since = *pendingSince
		}
		rec.Pending = p
	}
	return rec, nil
}

// nullTime is t for a nullable column: NULL when zero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// nullString is s for a nullable column: NULL when empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// collectKeys reads every row of rows.
func collectKeys(rows pgx.Rows) ([]broker.KeyRecord, error) {
	recs, err := pgx.CollectRows(rows, scanKey)
	if err != nil {
		return nil, classify(err)
	}
	return recs, nil
}

// collectKey reads the one row of rows; ErrNotFound when there is none.
func collectKey(rows pgx.Rows) (broker.KeyRecord, error) {
	rec, err := pgx.CollectExactlyOneRow(rows, scanKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return broker.KeyRecord{}, ErrNotFound
	}
	if err != nil {
		return broker.KeyRecord{}, classify(err)
	}
	return rec, nil
}

// keyColumns are the columns of provider_keys scanKey reads, in its order.
const keyColumns = `scope, scope_id, provider, key_id, state, name, priority, key_state, models,
	health, health_reason, health_changed_at, cooldown_until, cooldowns, kv_version, masked_key, fingerprint,
	credential_kind, public_fields, masked_fields,
	created_at, created_by, updated_at, updated_by,
	pending_id::text AS pending_id, pending_op, pending_since, pending_by, pending_masked_key, pending_fingerprint,
	pending_credential_kind, coalesce(pending_public_fields, '{}') AS pending_public_fields, coalesce(pending_masked_fields, '{}') AS pending_masked_fields,
	expires_at, provider_key_id`

// viewColumns are a credential view's values for its three columns:
// never a JSON null, always objects.
func viewColumns(v broker.CredentialView) (kind *string, fields map[string]any, masked map[string]string) {
	fields, masked = v.Fields, v.Masked
	if fields == nil {
		fields = map[string]any{}
	}
	if masked == nil {
		masked = map[string]string{}
	}
	if v.Kind != "" {
		kind = &v.Kind
	}
	return kind, fields, masked
}

// BeginChange marks the key pending with ch, creating the row when the key
// has none, and returns the row as it now is. A change already pending is
// replaced: Vault's check-and-set decides which of two racing writes wins,
// and each writer finishes or aborts only its own change. A key new to its
// pool takes ch.Member's settings; ch.Create refuses a key that exists
// (broker.ErrKeyExists), ch.MaxPool a pool that is full
// (broker.ErrPoolFull). The pool is locked for the transaction, so two
// writers cannot both take its last place.
func (s *Store) BeginChange(ctx context.Context, ref broker.KeyRef, ch broker.Change) (broker.KeyRecord, error) {
	var rec broker.KeyRecord
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "pool:"+ref.Pool().String()); err != nil {
			return fmt.Errorf("lock pool: %w", err)
		}
		var exists bool
		var inPool int
		if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE key_id = $4 AND kv_version > 0) > 0, count(*) FILTER (WHERE key_id <> $4)
			FROM provider_keys WHERE scope = $1 AND scope_id = $2 AND provider = $3`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID).Scan(&exists, &inPool); err != nil {
			return fmt.Errorf("count the pool: %w", err)
		}
		if exists && ch.Create {
			return broker.ErrKeyExists
		}
		if !exists && ch.MaxPool > 0 && inPool >= ch.MaxPool {
			return fmt.Errorf("%w: it holds %d keys, the most it may (KEYBROKER_MAX_KEYS_PER_POOL)", broker.ErrPoolFull, inPool)
		}
		keyState := broker.KeyActive
		if ch.Member.Disabled {
			keyState = broker.KeyDisabled
		}
		models := ch.Member.Models
		if models == nil {
			models = []string{}
		}
		kind, fields, masked := viewColumns(ch.View)
		var pendingFields, pendingMasked any
		if kind != nil {
			pendingFields, pendingMasked = fields, masked
		}
		rows, err := tx.Query(ctx, `
			INSERT INTO provider_keys AS k (scope, scope_id, provider, key_id, state, created_by, updated_by,
				pending_id, pending_op, pending_since, pending_by, pending_masked_key, pending_fingerprint,
				name, priority, key_state, models, pending_credential_kind, pending_public_fields, pending_masked_fields,
				expires_at, provider_key_id)
			VALUES ($8, $1, $2, $9, 'pending', $3, $3, $4, $5, now(), $3, $6, $7, $10, $11, $12, $13, $14, $15, $16, $17, $18)
			ON CONFLICT (scope, scope_id, provider, key_id) DO UPDATE SET
				state = 'pending', pending_id = EXCLUDED.pending_id, pending_op = EXCLUDED.pending_op,
				pending_since = EXCLUDED.pending_since, pending_by = EXCLUDED.pending_by,
				pending_masked_key = EXCLUDED.pending_masked_key, pending_fingerprint = EXCLUDED.pending_fingerprint,
				pending_credential_kind = EXCLUDED.pending_credential_kind, pending_public_fields = EXCLUDED.pending_public_fields,
				pending_masked_fields = EXCLUDED.pending_masked_fields,
				name = CASE WHEN k.kv_version = 0 THEN EXCLUDED.name ELSE k.name END,
				priority = CASE WHEN k.kv_version = 0 THEN EXCLUDED.priority ELSE k.priority END,
				key_state = CASE WHEN k.kv_version = 0 THEN EXCLUDED.key_state ELSE k.key_state END,
				models = CASE WHEN k.kv_version = 0 THEN EXCLUDED.models ELSE k.models END,
				expires_at = CASE WHEN k.kv_version = 0 THEN EXCLUDED.expires_at ELSE k.expires_at END,
				provider_key_id = CASE WHEN k.kv_version = 0 THEN EXCLUDED.provider_key_id ELSE k.provider_key_id END
			RETURNING `+keyColumns,
			ref.ScopeID, ref.Provider, ch.By, ch.ID, ch.Op, ch.MaskedKey, ch.Fingerprint, string(ref.ScopeKind), ref.KeyID,
			ch.Member.Name, ch.Member.Priority, keyState, models, kind, pendingFields, pendingMasked,
			nullTime(ch.Member.ExpiresAt), nullString(ch.Member.ProviderKeyID))
		if err != nil {
			return err
		}
		rec, err = collectKey(rows)
		return err
	})
	if err != nil {
		return broker.KeyRecord{}, fmt.Errorf("mark %s pending: %w", ref, classify(err))
	}
	return rec, nil
}

// UpdateMember changes a key's settings in its pool and appends ev, in one
// transaction, and announces the change; ErrNotFound when the key has no
// confirmed version.
func (s *Store) UpdateMember(ctx context.Context, ref broker.KeyRef, m broker.MemberSettings, ev broker.AuditEvent) (broker.KeyRecord, error) {
	var rec broker.KeyRecord
	keyState := broker.KeyActive
	if m.Disabled {
		keyState = broker.KeyDisabled
	}
	models := m.Models
	if models == nil {
		models = []string{}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE provider_keys SET name = $5, priority = $6, key_state = $7, models = $8,
				updated_at = now(), updated_by = $9, expires_at = $11, provider_key_id = $12,
				health = CASE WHEN $10 THEN 'healthy' ELSE health END,
				health_reason = CASE WHEN $10 AND health <> 'healthy' THEN 'set active by an admin' ELSE health_reason END,
				health_changed_at = CASE WHEN $10 AND health <> 'healthy' THEN now() ELSE health_changed_at END,
				cooldown_until = CASE WHEN $10 THEN NULL ELSE cooldown_until END,
				cooldowns = CASE WHEN $10 THEN 0 ELSE cooldowns END
			WHERE `+keyMatch+` AND kv_version > 0 RETURNING `+keyColumns,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, m.Name, m.Priority, keyState, models, ev.Actor, m.ResetHealth,
			nullTime(m.ExpiresAt), nullString(m.ProviderKeyID))
		if err != nil {
			return err
		}
		if rec, err = collectKey(rows); err != nil {
			return err
		}
		if err := notify(ctx, tx, keyChanged(ref, rec.Version)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return broker.KeyRecord{}, fmt.Errorf("update %s: %w", ref, classify(err))
	}
	return rec, nil
}

// CompleteWrite records that change id wrote w to Vault, and appends ev, in
// one transaction. The metadata moves only forward: a completion that
// arrives after a newer version was recorded leaves it alone. The row
// becomes active when id is still its pending change. A version of
// another value (another fingerprint) starts healthy, with no cooldown.
func (s *Store) CompleteWrite(ctx context.Context, ref broker.KeyRef, id string, w broker.Written, ev broker.AuditEvent) error {
	kind, fields, masked := viewColumns(w.View)
	if kind == nil {
		k := "api_key" // a change begun by a version before credential views
		kind = &k
	}
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO provider_keys AS k (scope, scope_id, provider, key_id, state, kv_version, masked_key, fingerprint, created_by, updated_by,
				credential_kind, public_fields, masked_fields)
			VALUES ($8, $1, $2, $9, 'active', $4, $5, $6, $7, $7, $10, $11, $12)
			ON CONFLICT (scope, scope_id, provider, key_id) DO UPDATE SET
				kv_version  = GREATEST(k.kv_version, $4),
				masked_key  = CASE WHEN k.kv_version < $4 THEN $5 ELSE k.masked_key END,
				credential_kind = CASE WHEN k.kv_version < $4 THEN $10 ELSE k.credential_kind END,
				public_fields   = CASE WHEN k.kv_version < $4 THEN $11 ELSE k.public_fields END,
				masked_fields   = CASE WHEN k.kv_version < $4 THEN $12 ELSE k.masked_fields END,
				fingerprint = CASE WHEN k.kv_version < $4 THEN $6 ELSE k.fingerprint END,
				updated_at  = CASE WHEN k.kv_version < $4 THEN now() ELSE k.updated_at END,
				updated_by  = CASE WHEN k.kv_version < $4 THEN $7 ELSE k.updated_by END,
				-- A new value (a rotation, or a rollback to another value)
				-- is another key: what the provider said of the old one
				-- does not hold for it.
				health            = CASE WHEN k.kv_version < $4 AND k.fingerprint IS DISTINCT FROM $6 THEN 'healthy' ELSE k.health END,
				health_reason     = CASE WHEN k.kv_version < $4 AND k.fingerprint IS DISTINCT FROM $6 THEN '' ELSE k.health_reason END,
				health_changed_at = CASE WHEN k.kv_version < $4 AND k.fingerprint IS DISTINCT FROM $6 AND (k.health <> 'healthy' OR k.cooldown_until > now())
					THEN now() ELSE k.health_changed_at END,
				cooldown_until    = CASE WHEN k.kv_version < $4 AND k.fingerprint IS DISTINCT FROM $6 THEN NULL ELSE k.cooldown_until END,
				cooldowns         = CASE WHEN k.kv_version < $4 AND k.fingerprint IS DISTINCT FROM $6 THEN 0 ELSE k.cooldowns END,
				state = CASE WHEN k.pending_id = $3::uuid OR k.pending_id IS NULL THEN 'active' ELSE k.state END,
				pending_id          = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_id END,
				pending_op          = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_op END,
				pending_since       = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_since END,
				pending_by          = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_by END,
				pending_masked_key  = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_masked_key END,
				pending_fingerprint = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_fingerprint END,
				pending_credential_kind = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_credential_kind END,
				pending_public_fields   = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_public_fields END,
				pending_masked_fields   = CASE WHEN k.pending_id = $3::uuid THEN NULL ELSE k.pending_masked_fields END`,
			ref.ScopeID, ref.Provider, id, w.Version, w.MaskedKey, w.Fingerprint, w.By, string(ref.ScopeKind), ref.KeyID, *kind, fields, masked)
		if err != nil {
			return fmt.Errorf("record version %d of %s: %w", w.Version, ref, err)
		}
		if err := notify(ctx, tx, keyChanged(ref, w.Version)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	}))
}

// AbortChange undoes change id when it is still the key's pending change:
// the row returns to active, or disappears when no version was ever
// confirmed.
func (s *Store) AbortChange(ctx context.Context, ref broker.KeyRef, id string) error {
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM provider_keys
			WHERE `+keyMatch+` AND pending_id = $5::uuid AND kv_version = 0`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, id); err != nil {
			return fmt.Errorf("abort change of %s: %w", ref, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE provider_keys SET state = 'active', pending_id = NULL, pending_op = NULL,
				pending_since = NULL, pending_by = NULL, pending_masked_key = NULL, pending_fingerprint = NULL,
				pending_credential_kind = NULL, pending_public_fields = NULL, pending_masked_fields = NULL
			WHERE `+keyMatch+` AND pending_id = $5::uuid`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, id); err != nil {
			return fmt.Errorf("abort change of %s: %w", ref, err)
		}
		return nil
	}))
}

// CompleteDelete removes the key's row after Vault deleted version
// deleted, and appends ev, in one transaction. A row that already records
// a newer version (a write that won after the delete) is kept.
func (s *Store) CompleteDelete(ctx context.Context, ref broker.KeyRef, deleted int, ev broker.AuditEvent) error {
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM provider_keys
			WHERE `+keyMatch+` AND kv_version <= $5`,
			string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, deleted); err != nil {
			return fmt.Errorf("remove %s: %w", ref, err)
		}
		if err := forgetUsage(ctx, tx, ref); err != nil {
			return err
		}
		if err := notify(ctx, tx, keyChanged(ref, deleted)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	}))
}

// PurgeScope removes every key row of a workspace or organization, their
// usage and (a workspace's) settings, and appends ev, in one transaction.
// It returns how many key rows it removed.
func (s *Store) PurgeScope(ctx context.Context, scope broker.Scope, ev broker.AuditEvent) (int, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM provider_keys WHERE scope = $1 AND scope_id = $2`, string(scope.Kind), scope.ID)
		if err != nil {
			return fmt.Errorf("purge %s: %w", scope, err)
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM key_usage WHERE scope = $1 AND scope_id = $2`, string(scope.Kind), scope.ID); err != nil {
			return fmt.Errorf("purge the usage of %s: %w", scope, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM key_usage_daily WHERE scope = $1 AND scope_id = $2`, string(scope.Kind), scope.ID); err != nil {
			return fmt.Errorf("purge the usage of %s: %w", scope, err)
		}
		if err := notify(ctx, tx, Invalidation{Scope: string(scope.Kind), Workspace: scope.ID}); err != nil {
			return err
		}
		if scope.Kind == broker.ScopeWorkspace {
			// Reset, never deleted: a row's link generation only grows, so
			// that an old link's signature can never be replayed.
			if _, err := tx.Exec(ctx, `UPDATE workspace_settings SET organization = NULL, inherit = true, hosted_fallback = true,
				link_key_id = '', link_signature = NULL, link_generation = link_generation + 1, updated_at = now()
				WHERE workspace = $1`, scope.ID); err != nil {
				return fmt.Errorf("purge the settings of %s: %w", scope, err)
			}
			if err := notify(ctx, tx, Invalidation{Settings: scope.ID}); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, ev)
	})
	return int(n), classify(err)
}

// GetKey returns the metadata of one key; ErrNotFound when it has no
// confirmed version.
func (s *Store) GetKey(ctx context.Context, ref broker.KeyRef) (broker.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys
		WHERE `+keyMatch+` AND kv_version > 0`, string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID)
	if err != nil {
		return broker.KeyRecord{}, fmt.Errorf("read %s: %w", ref, classify(err))
	}
	rec, err := collectKey(rows)
	if err != nil {
		return broker.KeyRecord{}, fmt.Errorf("read %s: %w", ref, err)
	}
	return rec, nil
}

// keyMatch selects one key's row: $1 scope, $2 scope id, $3 provider,
// $4 key id.
const keyMatch = `scope = $1 AND scope_id = $2 AND provider = $3 AND key_id = $4`

// ListKeys returns the metadata of every key of a scope with a confirmed
// version, by provider, then as its pool orders them (priority, age, id).
func (s *Store) ListKeys(ctx context.Context, scope broker.Scope) ([]broker.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys
		WHERE scope = $1 AND scope_id = $2 AND kv_version > 0 ORDER BY provider, priority, created_at, key_id`,
		string(scope.Kind), scope.ID)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", scope, classify(err))
	}
	recs, err := collectKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", scope, err)
	}
	return recs, nil
}

var _ broker.PoolStore = (*Store)(nil)

// FailingKeys names every active key with a confirmed version that a
// provider refused (the prober re-tests them).
func (s *Store) FailingKeys(ctx context.Context) ([]broker.KeyRef, error) {
	rows, err := s.pool.Query(ctx, `SELECT scope, scope_id, provider, key_id FROM provider_keys
		WHERE health = 'failing' AND key_state = 'active' AND kv_version > 0 ORDER BY scope, scope_id, provider, key_id`)
	if err != nil {
		return nil, fmt.Errorf("list failing keys: %w", classify(err))
	}
	var out []broker.KeyRef
	var kind, id, provider, keyID string
	if _, err := pgx.ForEachRow(rows, []any{&kind, &id, &provider, &keyID}, func() error {
		out = append(out, broker.KeyRef{ScopeKind: broker.ScopeKind(kind), ScopeID: id, Provider: provider, KeyID: keyID})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list failing keys: %w", classify(err))
	}
	return out, nil
}

// PoolMembers returns the keys of one pool with a confirmed version.
func (s *Store) PoolMembers(ctx context.Context, pool broker.PoolRef) ([]broker.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys
		WHERE scope = $1 AND scope_id = $2 AND provider = $3 AND kv_version > 0`,
		string(pool.ScopeKind), pool.ScopeID, pool.Provider)
	if err != nil {
		return nil, fmt.Errorf("read pool %s: %w", pool, classify(err))
	}
	recs, err := collectKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("read pool %s: %w", pool, err)
	}
	return recs, nil
}

// ListPending returns rows whose change has been pending for at least
// olderThan, oldest first.
func (s *Store) ListPending(ctx context.Context, olderThan time.Duration) ([]broker.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys
		WHERE state = 'pending' AND pending_since <= now() - $1::interval ORDER BY pending_since`,
		olderThan)
	if err != nil {
		return nil, fmt.Errorf("list pending keys: %w", classify(err))
	}
	recs, err := collectKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list pending keys: %w", err)
	}
	return recs, nil
}

// ListAllKeys returns every key row with a confirmed version, for the
// reconciler.
func (s *Store) ListAllKeys(ctx context.Context) ([]broker.KeyRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys WHERE kv_version > 0 ORDER BY scope, scope_id, provider, key_id`)
	if err != nil {
		return nil, fmt.Errorf("list all keys: %w", classify(err))
	}
	recs, err := collectKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("list all keys: %w", err)
	}
	return recs, nil
}

var _ broker.HealthStore = (*Store)(nil)

// ApplyHealth applies a health change to a key when it changes something —
// a cooldown only of a key neither cooling down nor failing, a failure only
// of a key not failing yet, an early end only of a cooldown — and then
// appends ev and announces the change, in one transaction. It returns the
// row and whether it changed; ErrNotFound when the key has no row.
func (s *Store) ApplyHealth(ctx context.Context, ref broker.KeyRef, ch broker.HealthChange, ev broker.AuditEvent) (broker.KeyRecord, bool, error) {
	// $5 is the reason; $6, for a cooldown, its length in seconds.
	args := []any{string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, truncate(ch.Reason, 200)}
	var set, when string
	switch ch.Kind {
	case broker.HealthCooldown:
		set = `cooldown_until = now() + make_interval(secs => $6), cooldowns = cooldowns + 1`
		when = `health = 'healthy' AND (cooldown_until IS NULL OR cooldown_until <= now())`
		args = append(args, ch.Cooldown.Seconds())
	case broker.HealthFail:
		set = `health = 'failing', health_changed_at = now(), cooldown_until = NULL`
		when = `health <> 'failing'`
	case broker.HealthClearCooldown:
		set = `cooldown_until = NULL, cooldowns = 0`
		when = `(cooldown_until IS NOT NULL OR cooldowns > 0)`
	case broker.HealthRestore:
		set = `health = 'healthy', health_changed_at = now(), cooldown_until = NULL, cooldowns = 0`
		when = `(health <> 'healthy' OR cooldown_until > now())`
	default:
		return broker.KeyRecord{}, false, fmt.Errorf("health of %s: unknown change %d", ref, ch.Kind)
	}
	var rec broker.KeyRecord
	changed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE provider_keys SET `+set+`, health_reason = $5
			WHERE `+keyMatch+` AND kv_version > 0 AND `+when+` RETURNING `+keyColumns, args...)
		if err != nil {
			return err
		}
		rec, err = collectKey(rows)
		if errors.Is(err, ErrNotFound) {
			// Nothing to change, or no such key: tell them apart, on this
			// transaction's connection (another one could wait for a pool
			// that the transactions hold).
			rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM provider_keys WHERE `+keyMatch+` AND kv_version > 0`,
				string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID)
			if err != nil {
				return err
			}
			rec, err = collectKey(rows)
			return err
		}
		if err != nil {
			return err
		}
		changed = true
		if err := notify(ctx, tx, keyChanged(ref, rec.Version)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return broker.KeyRecord{}, false, fmt.Errorf("health of %s: %w", ref, classify(err))
	}
	return rec, changed, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
