package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
)

var _ broker.UsageStore = (*Store)(nil)

// AddUsage adds counted resolves to the keys' totals and moves their last
// use forward, in one statement for the whole batch.
func (s *Store) AddUsage(ctx context.Context, batch []broker.Usage) error {
	if len(batch) == 0 {
		return nil
	}
	scopes, ids, providers, keys := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	counts, lasts := make([]int64, len(batch)), make([]time.Time, len(batch))
	for i, u := range batch {
		scopes[i], ids[i], providers[i], keys[i] = string(u.Ref.Scope), u.Ref.ScopeID, u.Ref.Provider, u.Ref.KeyID
		counts[i], lasts[i] = u.Resolves, u.LastUsedAt
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO key_usage AS u (scope, scope_id, provider, key_id, resolves, last_used_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[])
		ON CONFLICT (scope, scope_id, provider, key_id) DO UPDATE SET
			resolves = u.resolves + EXCLUDED.resolves,
			last_used_at = greatest(u.last_used_at, EXCLUDED.last_used_at)`,
		scopes, ids, providers, keys, counts, lasts)
	if err != nil {
		return fmt.Errorf("add the usage of %d keys: %w", len(batch), classify(err))
	}
	return nil
}

// UsageOf returns the usage of every key of a scope, by provider and key
// id ("openai/default").
func (s *Store) UsageOf(ctx context.Context, scope broker.ScopeKind, scopeID string) (map[string]broker.Usage, error) {
	rows, err := s.pool.Query(ctx, `SELECT provider, key_id, resolves, last_used_at FROM key_usage
		WHERE scope = $1 AND scope_id = $2`, string(scope), scopeID)
	if err != nil {
		return nil, fmt.Errorf("read the usage of %s %s: %w", scope, scopeID, classify(err))
	}
	out := map[string]broker.Usage{}
	var provider, keyID string
	var u broker.Usage
	_, err = pgx.ForEachRow(rows, []any{&provider, &keyID, &u.Resolves, &u.LastUsedAt}, func() error {
		u.Ref = broker.KeyRef{Scope: scope, ScopeID: scopeID, Provider: provider, KeyID: keyID}
		out[provider+"/"+keyID] = u
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the usage of %s %s: %w", scope, scopeID, classify(err))
	}
	return out, nil
}

// forgetUsage removes the usage of a key, inside its delete.
func forgetUsage(ctx context.Context, tx pgx.Tx, ref broker.KeyRef) error {
	_, err := tx.Exec(ctx, `DELETE FROM key_usage WHERE scope = $1 AND scope_id = $2 AND provider = $3 AND key_id = $4`,
		string(ref.Scope), ref.ScopeID, ref.Provider, ref.KeyID)
	if err != nil {
		return fmt.Errorf("forget the usage of %s: %w", ref, err)
	}
	return nil
}

// AddProxyCalls stores a batch of proxied calls in one statement.
func (s *Store) AddProxyCalls(ctx context.Context, batch []broker.ProxyCall) error {
	if len(batch) == 0 {
		return nil
	}
	rows := make([][]any, len(batch))
	for i, c := range batch {
		rows[i] = []any{c.At, c.Workspace, c.Provider, c.Scope, c.KeyID, c.KeyVersion, c.Status,
			float64(c.Duration.Microseconds()) / 1000, c.BYOK, c.Retried, c.BytesOut, c.Caller, c.RequestID}
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"proxy_calls"},
		[]string{"at", "workspace", "provider", "scope", "key_id", "key_version", "status", "duration_ms", "byok", "retried", "bytes_out", "caller", "request_id"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("store %d proxied calls: %w", len(batch), classify(err))
	}
	return nil
}

// ProxyCalls returns a workspace's proxied calls, newest first, at most
// limit.
func (s *Store) ProxyCalls(ctx context.Context, workspace string, limit int) ([]broker.ProxyCall, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, workspace, provider, scope, key_id, key_version, status, duration_ms, byok, retried, bytes_out, caller, request_id
		FROM proxy_calls WHERE workspace = $1 ORDER BY at DESC, id DESC LIMIT $2`, workspace, limit)
	if err != nil {
		return nil, fmt.Errorf("list proxied calls of %s: %w", workspace, classify(err))
	}
	defer rows.Close()
	var out []broker.ProxyCall
	for rows.Next() {
		var c broker.ProxyCall
		var ms float64
		if err := rows.Scan(&c.At, &c.Workspace, &c.Provider, &c.Scope, &c.KeyID, &c.KeyVersion, &c.Status, &ms, &c.BYOK, &c.Retried, &c.BytesOut, &c.Caller, &c.RequestID); err != nil {
			return nil, fmt.Errorf("list proxied calls of %s: %w", workspace, err)
		}
		c.Duration = time.Duration(ms * float64(time.Millisecond))
		out = append(out, c)
	}
	return out, rows.Err()
}
