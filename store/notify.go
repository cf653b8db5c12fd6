package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/keybroker/keybroker/broker"
)

// InvalidationChannel is the PostgreSQL channel on which key changes are
// announced to every replica.
const InvalidationChannel = "keybroker_keys"

// Invalidation says that a key or its pool changed, or a token was
// revoked: every replica evicts it from its cache and re-reads the pool.
// Scope ("" is a workspace, as keybroker v1 announced) and Workspace (the
// scope's id) name the scope; an empty Provider means every key of the
// scope (a purge); a TokenID names a revoked API token.
type Invalidation struct {
	Scope     string `json:"sc,omitempty"`
	Workspace string `json:"w,omitempty"`
	Provider  string `json:"p,omitempty"`
	KeyID     string `json:"k,omitempty"`
	Version   int    `json:"v,omitempty"`
	TokenID   string `json:"t,omitempty"`
	// Settings names a workspace whose settings changed.
	Settings string `json:"s,omitempty"`
	// ProxyTokenID names a revoked proxy token (a hint: replicas read the
	// revocations from PostgreSQL).
	ProxyTokenID string `json:"pt,omitempty"`
	// SessionID names an ended session of a person (a hint: replicas
	// read the session again before they trust it).
	SessionID string `json:"ses,omitempty"`
}

// ForBroker is the key change inv announces, in the broker's words.
func (inv Invalidation) ForBroker() broker.Invalidation {
	scope := broker.ScopeKind(inv.Scope)
	if scope == "" {
		scope = broker.ScopeWorkspace
	}
	return broker.Invalidation{ScopeKind: scope, ScopeID: inv.Workspace, Provider: inv.Provider, KeyID: inv.KeyID}
}

// keyChanged is the announcement of a change of key ref.
func keyChanged(ref broker.KeyRef, version int) Invalidation {
	return Invalidation{Scope: string(ref.ScopeKind), Workspace: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Version: version}
}

// notify announces inv when tx commits (PostgreSQL delivers notifications
// of a transaction at its commit, and drops them on rollback).
func notify(ctx context.Context, tx pgx.Tx, inv Invalidation) error {
	payload, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encode invalidation: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, InvalidationChannel, string(payload)); err != nil {
		return fmt.Errorf("notify %s: %w", InvalidationChannel, err)
	}
	return nil
}

// InvalidationHandler receives what ListenInvalidations hears.
type InvalidationHandler struct {
	// Invalidate is called for each announced change.
	Invalidate func(Invalidation)
	// Listening is called each time the listener (re)starts listening:
	// announcements made while it was not may have been missed.
	Listening func()
}

// ListenInvalidations keeps one dedicated connection listening on
// InvalidationChannel until ctx is done, reconnecting with exponential
// backoff and jitter (100 ms to 30 s) when the connection is lost.
func (s *Store) ListenInvalidations(ctx context.Context, h InvalidationHandler, log *slog.Logger) error {
	var mu sync.Mutex
	failures := 0
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			mu.Lock()
			n := failures
			mu.Unlock()
			if n > 0 {
				select {
				case <-time.After(listenBackoff(n)):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
			mu.Lock()
			if err != nil {
				failures++
			} else {
				failures = 0
			}
			mu.Unlock()
			return conn, err
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				log.Warn("invalidation listener: connection lost or refused; reconnecting", "error", err)
			}
		},
		ReconnectDelay: 100 * time.Millisecond,
	}
	l.Handle(InvalidationChannel, listenHandler{h: h, log: log})
	err := l.Listen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func listenBackoff(failures int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

type listenHandler struct {
	h   InvalidationHandler
	log *slog.Logger
}

func (l listenHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var inv Invalidation
	if err := json.Unmarshal([]byte(n.Payload), &inv); err != nil {
		l.log.Warn("invalidation listener: ignoring a malformed notification", "error", err)
		return nil
	}
	l.h.Invalidate(inv)
	return nil
}

// HandleBacklog runs when listening (re)starts.
func (l listenHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	if l.h.Listening != nil {
		l.h.Listening()
	}
	return nil
}
