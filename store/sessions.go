package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth/session"
)

var _ session.Store = (*Store)(nil)

// sessionColumns are the columns of sessions scanSession reads, in its
// order.
const sessionColumns = `id, token_hash, issuer, subject, name, email, grants, via, created_at, last_seen_at, idle_expires_at,
	expires_at, ended_at, ended_reason, key_id, signature`

// scanSession reads a row of sessionColumns into session's record. Grants
// that do not decode are left empty: the row's signature then fails.
func scanSession(row pgx.CollectableRow) (session.Record, error) {
	var r session.Record
	var grants []byte
	var via string
	err := row.Scan(&r.ID, &r.Hash, &r.Person.Issuer, &r.Person.Subject, &r.Person.Name, &r.Person.Email, &grants, &via,
		&r.CreatedAt, &r.LastSeenAt, &r.IdleExpiresAt, &r.ExpiresAt, &r.EndedAt, &r.EndedReason, &r.KeyID, &r.Signature)
	if err != nil {
		return r, err
	}
	r.Via = session.Via(via)
	if json.Unmarshal(grants, &r.Grants) != nil {
		r.Grants = session.Grants{}
	}
	return r, nil
}

// CreateSession stores a session record.
func (s *Store) CreateSession(ctx context.Context, rec session.Record) error {
	grants, err := rec.Grants.Canonical()
	if err != nil {
		return fmt.Errorf("create session %s: %w", rec.ID, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO sessions (id, token_hash, issuer, subject, name, email, grants, via, created_at,
			last_seen_at, idle_expires_at, expires_at, key_id, signature)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		rec.ID, rec.Hash, rec.Person.Issuer, rec.Person.Subject, rec.Person.Name, rec.Person.Email, string(grants), string(rec.Via),
		rec.CreatedAt, rec.LastSeenAt, rec.IdleExpiresAt, rec.ExpiresAt, rec.KeyID, rec.Signature)
	if err != nil {
		return fmt.Errorf("create session %s: %w", rec.ID, classify(err))
	}
	return nil
}

// oneSession collects exactly one session row, ErrNotFound for none.
func oneSession(rows pgx.Rows, err error, what string) (session.Record, error) {
	if err != nil {
		return session.Record{}, fmt.Errorf("%s: %w", what, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanSession)
	if errors.Is(err, pgx.ErrNoRows) {
		return session.Record{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return session.Record{}, fmt.Errorf("%s: %w", what, err)
	}
	return rec, nil
}

// SessionByHash returns the session whose token's SHA-256 is hash (ended
// and expired ones too: the caller decides).
func (s *Store) SessionByHash(ctx context.Context, hash []byte) (session.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE token_hash = $1`, hash)
	return oneSession(rows, err, "look up session")
}

// TouchSession records a session's use at seenAt and moves its idle
// expiry to idleExpiresAt (never past its absolute expiry), when it is
// active at seenAt and was last seen at or before seenBefore; it returns
// the row as written, ErrNotFound when it changed none.
func (s *Store) TouchSession(ctx context.Context, hash []byte, seenAt, idleExpiresAt, seenBefore time.Time) (session.Record, error) {
	rows, err := s.pool.Query(ctx, `UPDATE sessions SET last_seen_at = $2, idle_expires_at = least($3, expires_at)
		WHERE token_hash = $1 AND ended_at IS NULL AND idle_expires_at > $2 AND expires_at > $2 AND last_seen_at <= $4
		RETURNING `+sessionColumns, hash, seenAt, idleExpiresAt, seenBefore)
	return oneSession(rows, err, "touch session")
}

// EndSession ends session id at at for reason; ErrNotFound when no such
// session exists or it ended already.
// The end is announced to every replica, which then reads the session
// again instead of trusting what it remembers.
func (s *Store) EndSession(ctx context.Context, id string, at time.Time, reason string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET ended_at = $2, ended_reason = $3 WHERE id = $1 AND ended_at IS NULL`, id, at, reason)
		if err != nil {
			return fmt.Errorf("end session %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("end session %s: %w", id, ErrNotFound)
		}
		return notify(ctx, tx, Invalidation{SessionID: id})
	})
}

// EndSessions ends every session of a person not ended yet and returns
// their ids.
func (s *Store) EndSessions(ctx context.Context, issuer, subject string, at time.Time, reason string) ([]string, error) {
	var ids []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE sessions SET ended_at = $3, ended_reason = $4
			WHERE issuer = $1 AND subject = $2 AND ended_at IS NULL RETURNING id`, issuer, subject, at, reason)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		for _, id := range ids {
			if err := notify(ctx, tx, Invalidation{SessionID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("end sessions: %w", err)
	}
	return ids, nil
}

// ListSessions returns a person's sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, issuer, subject string) ([]session.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE issuer = $1 AND subject = $2
		ORDER BY created_at DESC, id`, issuer, subject)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return recs, nil
}
