package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

// AuditEvent is the broker's audit record, which the token service (package
// auth) writes too.
type AuditEvent = broker.AuditEvent

// auditRow is a row of audit_events.
type auditRow struct {
	ID          int64     `db:"id"`
	OccurredAt  time.Time `db:"occurred_at"`
	Scope       string    `db:"scope"`
	ScopeID     string    `db:"scope_id"`
	Provider    string    `db:"provider"`
	KeyID       string    `db:"key_id"`
	Action      string    `db:"action"`
	Actor       string    `db:"actor"`
	RemoteAddr  string    `db:"remote_addr"`
	Outcome     string    `db:"outcome"`
	Version     *int      `db:"kv_version"`
	MaskedKey   *string   `db:"masked_key"`
	Fingerprint *string   `db:"fingerprint"`
	Detail      string    `db:"detail"`
	RequestID   string    `db:"request_id"`
	ClientReqID string    `db:"client_request_id"`
	Count       int       `db:"event_count"`
}

func (r auditRow) event() AuditEvent {
	return AuditEvent{ID: r.ID, OccurredAt: r.OccurredAt, ScopeKind: broker.ScopeKind(r.Scope), ScopeID: r.ScopeID, Provider: r.Provider, KeyID: r.KeyID, Action: r.Action,
		Actor: r.Actor, RemoteAddr: r.RemoteAddr, Outcome: r.Outcome, Version: r.Version, MaskedKey: r.MaskedKey,
		Fingerprint: r.Fingerprint, Detail: r.Detail, RequestID: r.RequestID,
		ClientRequestID: r.ClientReqID, Count: r.Count}
}

// AppendAudit records ev on its own.
func (s *Store) AppendAudit(ctx context.Context, ev AuditEvent) error {
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return appendAudit(ctx, tx, ev) }))
}

// AppendAudits records evs in one transaction.
func (s *Store) AppendAudits(ctx context.Context, evs []AuditEvent) error {
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, ev := range evs {
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	}))
}

func appendAudit(ctx context.Context, tx pgx.Tx, ev AuditEvent) error {
	count := max(ev.Count, 1)
	_, err := tx.Exec(ctx, `INSERT INTO audit_events
		(scope_id, provider, action, actor, remote_addr, outcome, kv_version, masked_key, fingerprint, detail, request_id,
		 client_request_id, event_count, scope, key_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		ev.ScopeID, ev.Provider, ev.Action, ev.Actor, ev.RemoteAddr, ev.Outcome, ev.Version, ev.MaskedKey, ev.Fingerprint, ev.Detail, ev.RequestID,
		ev.ClientRequestID, count, string(ev.ScopeKind), ev.KeyID)
	if err != nil {
		return fmt.Errorf("append audit event %s for %s %s/%s: %w", ev.Action, ev.ScopeKind, ev.ScopeID, ev.Provider, err)
	}
	return nil
}

const auditColumns = `id, occurred_at, scope, scope_id, provider, key_id, action, actor, remote_addr,
	outcome, kv_version, masked_key, fingerprint, detail, request_id, client_request_id, event_count`

// ListAudit returns up to limit events of a scope's trail, newest first,
// with ids below before (0: from the newest).
func (s *Store) ListAudit(ctx context.Context, scope broker.Scope, before int64, limit int) ([]AuditEvent, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+`
		FROM audit_events WHERE scope = $1 AND scope_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4`,
		string(scope.Kind), scope.ID, before, limit)
	return collectAudit(rows, err, "of "+scope.String())
}

// ListAllAudit is the global trail: every event of every workspace and the
// operator-wide ones (tokens of no workspace, purges), newest first.
func (s *Store) ListAllAudit(ctx context.Context, before int64, limit int) ([]AuditEvent, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+`
		FROM audit_events WHERE id < $1 ORDER BY id DESC LIMIT $2`, before, limit)
	return collectAudit(rows, err, "(global trail)")
}

func collectAudit(rows pgx.Rows, err error, what string) ([]AuditEvent, error) {
	if err != nil {
		return nil, fmt.Errorf("list audit events %s: %w", what, err)
	}
	evRows, err := pgx.CollectRows(rows, pgx.RowToStructByName[auditRow])
	if err != nil {
		return nil, fmt.Errorf("list audit events %s: %w", what, err)
	}
	evs := make([]AuditEvent, len(evRows))
	for i, r := range evRows {
		evs[i] = r.event()
	}
	return evs, nil
}

// AuditAfter returns up to limit events with ids above after, oldest
// first: the audit stream's next batch.
func (s *Store) AuditAfter(ctx context.Context, after int64, limit int) ([]AuditEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+`
		FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	return collectAudit(rows, err, "(stream)")
}

// LatestAuditID is the id of the newest audit event (0: none).
func (s *Store) LatestAuditID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM audit_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("read the newest audit event: %w", classify(err))
	}
	return id, nil
}

// PruneAudit deletes the audit events older than olderThan and records the
// prune itself, in one transaction. Only the tables' owner (the role that
// runs `keybroker migrate`) can: it lifts the append-only trigger for the
// transaction, which the runtime role may not do.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Duration, actor string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change`); err != nil {
			return fmt.Errorf("lift the append-only trigger (only the owner role may: use the migration's DATABASE_URL): %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE occurred_at < now() - $1::interval`, olderThan)
		if err != nil {
			return fmt.Errorf("delete old audit events: %w", err)
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change`); err != nil {
			return fmt.Errorf("restore the append-only trigger: %w", err)
		}
		return appendAudit(ctx, tx, AuditEvent{Action: "audit.prune", Actor: actor, Outcome: "success",
			Detail: fmt.Sprintf("%d events older than %s deleted", n, olderThan)})
	})
	if err != nil {
		return 0, fmt.Errorf("prune the audit trail: %w", classify(err))
	}
	return n, nil
}

// QueryAudit returns the page of a trail that q selects (see
// broker.AuditQuery).
func (s *Store) QueryAudit(ctx context.Context, q broker.AuditQuery) ([]AuditEvent, error) {
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	scope, scopeID, global := "", "", q.Scope == nil
	if !global {
		scope, scopeID = string(q.Scope.Kind), q.Scope.ID
	}
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit_events
		WHERE ($1 OR (scope = $2 AND scope_id = $3)) AND id < $4
		  AND ($5 = '' OR action = $5) AND ($6 = '' OR outcome = $6) AND ($7 = '' OR actor = $7)
		ORDER BY id DESC LIMIT $8`,
		global, scope, scopeID, before, q.Action, q.Outcome, q.Actor, q.Limit)
	return collectAudit(rows, err, "(query)")
}

// VersionOrigins maps each version of a key to the change that wrote it
// (a create, a rotation or a roll back, from the audit trail): who, and
// the masked value. A version written around keybroker has none.
func (s *Store) VersionOrigins(ctx context.Context, ref broker.KeyRef) (map[int]broker.VersionOrigin, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (kv_version) kv_version, actor, coalesce(masked_key, '') FROM audit_events
		WHERE scope = $1 AND scope_id = $2 AND provider = $3 AND key_id = $4 AND outcome = 'success'
		  AND action = ANY($5) AND kv_version IS NOT NULL
		ORDER BY kv_version, id DESC`,
		string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID,
		[]string{broker.ActionCreate, broker.ActionRotate, broker.ActionRollback})
	if err != nil {
		return nil, fmt.Errorf("authors of %s's versions: %w", ref, err)
	}
	out := map[int]broker.VersionOrigin{}
	var version int
	var origin broker.VersionOrigin
	_, err = pgx.ForEachRow(rows, []any{&version, &origin.Actor, &origin.MaskedKey}, func() error {
		out[version] = origin
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("authors of %s's versions: %w", ref, err)
	}
	return out, nil
}
