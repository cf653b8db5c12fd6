package store

import (
	"context"
	"fmt"
	"strings"
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
		scopes[i], ids[i], providers[i], keys[i] = string(u.Ref.ScopeKind), u.Ref.ScopeID, u.Ref.Provider, u.Ref.KeyID
		counts[i], lasts[i] = u.Resolves, u.LastUsedAt
	}
	// The resolves by version, day and resolver token, in the same
	// transaction (a batch is added once or not at all).
	var dScopes, dIDs, dProviders, dKeys, dCallers []string
	var dVersions []int32
	var dDays []time.Time
	var dCounts []int64
	for _, u := range batch {
		for _, c := range u.ByCaller {
			dScopes, dIDs, dProviders, dKeys = append(dScopes, string(u.Ref.ScopeKind)), append(dIDs, u.Ref.ScopeID),
				append(dProviders, u.Ref.Provider), append(dKeys, u.Ref.KeyID)
			dVersions, dDays = append(dVersions, int32(c.Version)), append(dDays, u.LastUsedAt.UTC().Truncate(24*time.Hour))
			dCallers, dCounts = append(dCallers, truncate(c.Caller, 64)), append(dCounts, c.Resolves)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
		INSERT INTO key_usage AS u (scope, scope_id, provider, key_id, resolves, last_used_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[])
		ON CONFLICT (scope, scope_id, provider, key_id) DO UPDATE SET
			resolves = u.resolves + EXCLUDED.resolves,
			last_used_at = greatest(u.last_used_at, EXCLUDED.last_used_at)`,
			scopes, ids, providers, keys, counts, lasts); err != nil {
			return err
		}
		if len(dScopes) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `
		INSERT INTO key_usage_daily AS d (scope, scope_id, provider, key_id, version, day, caller, resolves)
		SELECT s, i, p, k, v, dd::date, c, n FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::text[], $8::bigint[])
			AS t(s, i, p, k, v, dd, c, n)
		ON CONFLICT (scope, scope_id, provider, key_id, version, day, caller) DO UPDATE SET resolves = d.resolves + EXCLUDED.resolves`,
			dScopes, dIDs, dProviders, dKeys, dVersions, dDays, dCallers, dCounts)
		return err
	})
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
		u.Ref = broker.KeyRef{ScopeKind: scope, ScopeID: scopeID, Provider: provider, KeyID: keyID}
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
		string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID)
	if err != nil {
		return fmt.Errorf("forget the usage of %s: %w", ref, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM key_usage_daily WHERE scope = $1 AND scope_id = $2 AND provider = $3 AND key_id = $4`,
		string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID); err != nil {
		return fmt.Errorf("forget the usage of %s: %w", ref, err)
	}
	return nil
}

var _ broker.KeyUsageStore = (*Store)(nil)

// collectUsage reads (version, day, caller, count) rows.
func collectUsage(rows pgx.Rows) ([]broker.UsageRow, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (broker.UsageRow, error) {
		var r broker.UsageRow
		err := row.Scan(&r.Version, &r.Day, &r.Caller, &r.Count)
		return r, err
	})
	return out, classify(err)
}

// ResolvesOf returns a key's resolves by version, day and resolver token
// since since.
func (s *Store) ResolvesOf(ctx context.Context, ref broker.KeyRef, since time.Time) ([]broker.UsageRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT version, (day::timestamp AT TIME ZONE 'UTC'), caller, resolves FROM key_usage_daily
		WHERE `+keyMatch+` AND day >= $5::date ORDER BY version DESC, day DESC, caller`,
		string(ref.ScopeKind), ref.ScopeID, ref.Provider, ref.KeyID, since)
	if err != nil {
		return nil, fmt.Errorf("read the resolves of %s: %w", ref, classify(err))
	}
	return collectUsage(rows)
}

// ProxiedCallsOf returns the calls the credential proxy made with a key,
// by version, day and caller, since since: a workspace's key in that
// workspace's calls; an organization's in the calls of the workspaces
// linked to it; a hosted key in every workspace's.
func (s *Store) ProxiedCallsOf(ctx context.Context, ref broker.KeyRef, since time.Time) ([]broker.UsageRow, error) {
	where := `scope = $1 AND provider = $2 AND key_id = $3 AND at >= $4`
	args := []any{string(ref.ScopeKind), ref.Provider, ref.KeyID, since}
	switch ref.ScopeKind {
	case broker.ScopeWorkspace:
		where += ` AND workspace = $5`
		args = append(args, ref.ScopeID)
	case broker.ScopeOrganization:
		where += ` AND workspace IN (SELECT workspace FROM workspace_settings WHERE organization = $5)`
		args = append(args, ref.ScopeID)
	}
	rows, err := s.pool.Query(ctx, `SELECT key_version, date_trunc('day', at, 'UTC'), caller, count(*) FROM proxy_calls
		WHERE `+where+` GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2 DESC, 3`, args...)
	if err != nil {
		return nil, fmt.Errorf("read the proxied calls of %s: %w", ref, classify(err))
	}
	return collectUsage(rows)
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
		strings.Split(proxyCallColumns, ", "),
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("store %d proxied calls: %w", len(batch), classify(err))
	}
	return nil
}

// QueryProxyCalls returns the page of proxied calls that q selects (see
// broker.ProxyCallQuery).
func (s *Store) QueryProxyCalls(ctx context.Context, q broker.ProxyCallQuery) ([]broker.ProxyCall, error) {
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	// Only the filters set go into the statement, so that each shape gets
	// a plan on its index ((workspace, id), or the key) rather than a
	// generic one.
	where, args := []string{"id < $1"}, []any{before}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Workspace != "" {
		add("workspace = $%d", q.Workspace)
	}
	if q.Provider != "" {
		add("provider = $%d", q.Provider)
	}
	if !q.Since.IsZero() {
		add("at >= $%d", q.Since)
	}
	if !q.Until.IsZero() {
		add("at < $%d", q.Until)
	}
	args = append(args, q.Limit)
	rows, err := s.pool.Query(ctx, `SELECT id, at, workspace, provider, scope, key_id, key_version, status, duration_ms, byok, retried, bytes_out, caller, request_id
		FROM proxy_calls WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list proxied calls: %w", classify(err))
	}
	defer rows.Close()
	var out []broker.ProxyCall
	for rows.Next() {
		var c broker.ProxyCall
		var ms float64
		if err := rows.Scan(&c.ID, &c.At, &c.Workspace, &c.Provider, &c.Scope, &c.KeyID, &c.KeyVersion, &c.Status, &ms, &c.BYOK, &c.Retried, &c.BytesOut, &c.Caller, &c.RequestID); err != nil {
			return nil, fmt.Errorf("list proxied calls: %w", err)
		}
		c.Duration = time.Duration(ms * float64(time.Millisecond))
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list proxied calls: %w", classify(err))
	}
	return out, nil
}

// PruneProxyCalls deletes the records of proxied calls older than
// olderThan and records the prune in the audit trail. The runtime role
// may only append them (they are what the platform bills by): the owner
// role prunes.
func (s *Store) PruneProxyCalls(ctx context.Context, olderThan time.Duration, actor string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM proxy_calls WHERE at < now() - $1::interval`, olderThan)
		if err != nil {
			return fmt.Errorf("delete old proxied calls (only the owner role may: use the migration's DATABASE_URL): %w", err)
		}
		n = tag.RowsAffected()
		return appendAudit(ctx, tx, AuditEvent{Action: "proxy_calls.prune", Actor: actor, Outcome: "success",
			Detail: fmt.Sprintf("%d proxied calls older than %s deleted", n, olderThan)})
	})
	if err != nil {
		return 0, fmt.Errorf("prune the proxied calls: %w", classify(err))
	}
	return n, nil
}
