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
	Workspace   string    `db:"workspace"`
	Provider    string    `db:"provider"`
	Action      string    `db:"action"`
	Actor       string    `db:"actor"`
	RemoteAddr  string    `db:"remote_addr"`
	Outcome     string    `db:"outcome"`
	Version     *int      `db:"kv_version"`
	MaskedKey   *string   `db:"masked_key"`
	Fingerprint *string   `db:"fingerprint"`
	Detail      string    `db:"detail"`
	RequestID   string    `db:"request_id"`
}

func (r auditRow) event() AuditEvent {
	return AuditEvent{ID: r.ID, OccurredAt: r.OccurredAt, Workspace: r.Workspace, Provider: r.Provider, Action: r.Action,
		Actor: r.Actor, RemoteAddr: r.RemoteAddr, Outcome: r.Outcome, Version: r.Version, MaskedKey: r.MaskedKey,
		Fingerprint: r.Fingerprint, Detail: r.Detail, RequestID: r.RequestID}
}

// AppendAudit records ev on its own.
func (s *Store) AppendAudit(ctx context.Context, ev AuditEvent) error {
	return classify(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return appendAudit(ctx, tx, ev) }))
}

func appendAudit(ctx context.Context, tx pgx.Tx, ev AuditEvent) error {
	_, err := tx.Exec(ctx, `INSERT INTO audit_events
		(workspace, provider, action, actor, remote_addr, outcome, kv_version, masked_key, fingerprint, detail, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		ev.Workspace, ev.Provider, ev.Action, ev.Actor, ev.RemoteAddr, ev.Outcome, ev.Version, ev.MaskedKey, ev.Fingerprint, ev.Detail, ev.RequestID)
	if err != nil {
		return fmt.Errorf("append audit event %s for %s/%s: %w", ev.Action, ev.Workspace, ev.Provider, err)
	}
	return nil
}

// ListAudit returns up to limit events of workspace, newest first, with ids
// below before (0: from the newest).
func (s *Store) ListAudit(ctx context.Context, workspace string, before int64, limit int) ([]AuditEvent, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `SELECT id, occurred_at, workspace, provider, action, actor, remote_addr,
			outcome, kv_version, masked_key, fingerprint, detail, request_id
		FROM audit_events WHERE workspace = $1 AND id < $2 ORDER BY id DESC LIMIT $3`,
		workspace, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit events of %s: %w", workspace, err)
	}
	evRows, err := pgx.CollectRows(rows, pgx.RowToStructByName[auditRow])
	if err != nil {
		return nil, fmt.Errorf("list audit events of %s: %w", workspace, err)
	}
	evs := make([]AuditEvent, len(evRows))
	for i, r := range evRows {
		evs[i] = r.event()
	}
	return evs, nil
}
