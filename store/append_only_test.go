package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// The second review's attack with the sandbox-facing pods' database role:
// rows of the audit trail and of proxied calls named with an id of its
// choosing (OVERRIDING SYSTEM VALUE needs no privilege) made the audit
// stream skip every event up to it, and keybroker's own inserts collide
// (every audited write failed). Ids now come from the sequence and audit
// rows are dated by the database; a key's cooldown stays within the
// broker's bound; a proxy token's revocation within a token's lifetime.
func TestServingRolesCannotChooseIdsDatesOrUnboundedCooldowns(t *testing.T) {
	ctx := context.Background()
	g := kbtest.NewGround(t, kbtest.Options{})
	kbtest.NewResolverStore(t, g.DBURL)
	resolver, err := pgx.Connect(ctx, testenv.ResolverURL(t, g.DBURL))
	if err != nil {
		t.Fatal(err)
	}
	defer resolver.Close(ctx)

	const far = int64(1_000_000_000_000_000)
	var id int64
	var at time.Time
	if err := resolver.QueryRow(ctx, `INSERT INTO audit_events (id, occurred_at, scope_id, action, actor, outcome) OVERRIDING SYSTEM VALUE
		VALUES ($1, now() - interval '1 hour', '', 'noop', 'x', 'success') RETURNING id, occurred_at`, far).Scan(&id, &at); err != nil {
		t.Fatal(err)
	}
	if id >= far || time.Since(at) > time.Minute {
		t.Fatalf("the resolver role wrote audit row %d dated %v", id, at)
	}
	// keybroker's own next events follow it, with no collision and no gap
	// (the audit stream waits at a gap).
	var before, after int64
	if err := resolver.QueryRow(ctx, `SELECT max(id) FROM audit_events`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := g.Store.AppendAudit(ctx, broker.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: "ws1", Action: "key.create", Actor: "t", Outcome: "success"}); err != nil {
			t.Fatalf("keybroker's own audit row after the attack: %v", err)
		}
	}
	if err := resolver.QueryRow(ctx, `SELECT max(id) FROM audit_events`).Scan(&after); err != nil || after != before+2 {
		t.Fatalf("two audit rows took ids %d..%d (%v), want the next two", before, after, err)
	}
	// A proxied call's id is not even a column the role may name.
	if err := resolver.QueryRow(ctx, `INSERT INTO proxy_calls (id, at, workspace, provider, scope, key_id, key_version, status, duration_ms,
		byok, retried, bytes_out, caller, request_id) OVERRIDING SYSTEM VALUE
		VALUES ($1, now(), 'ws1', 'openai', 'workspace', 'k', 1, 200, 1, true, false, 0, 'x', 'r') RETURNING id`, far).Scan(&id); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role wrote proxied call %d (%v)", id, err)
	}

	if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: broker.Actor{Subject: "t"}, Pool: broker.HostedScope().Pool("openai"),
		KeyID: "main", Credential: providers.APIKey("sk-proj-appendonly-" + testenv.RandomID(t) + testenv.RandomID(t))}); err != nil {
		t.Fatal(err)
	}
	var until time.Time
	if err := resolver.QueryRow(ctx, `UPDATE provider_keys SET cooldown_until = '2200-01-01' WHERE scope = 'hosted' AND provider = 'openai'
		RETURNING cooldown_until`).Scan(&until); err != nil {
		t.Fatal(err)
	}
	if time.Until(until) > broker.MaxRetryAfter+5*time.Minute {
		t.Fatalf("a hosted key cools down until %v", until)
	}

	var expires, revoked time.Time
	if err := resolver.QueryRow(ctx, `INSERT INTO proxy_token_revocations (token_id, workspace, expires_at, revoked_at, revoked_by)
		VALUES ('ptk_00000000000000d1', '', '2200-01-01', '2200-01-01', 'x') RETURNING expires_at, revoked_at`).Scan(&expires, &revoked); err != nil {
		t.Fatal(err)
	}
	if time.Until(expires) > 66*time.Minute || time.Since(revoked) > time.Minute {
		t.Fatalf("a revocation lasts until %v (revoked %v)", expires, revoked)
	}
}
