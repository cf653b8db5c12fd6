package session_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counting is the real store, counting the statements the service makes
// of it on the authentication path.
type counting struct {
	session.Store
	reads, touches atomic.Int64
}

func (c *counting) SessionByHash(ctx context.Context, hash []byte) (session.Record, error) {
	c.reads.Add(1)
	return c.Store.SessionByHash(ctx, hash)
}

func (c *counting) TouchSession(ctx context.Context, hash []byte, seenAt, idle, before time.Time) (session.Record, error) {
	c.touches.Add(1)
	return c.Store.TouchSession(ctx, hash, seenAt, idle, before)
}

func adminRing(t testing.TB) *keyring.Ring {
	t.Helper()
	r, err := keyring.Parse(kbtest.AdminTokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// env is one database, its runtime-role store (as admin pods connect),
// a test clock and the log of the services made on it.
type env struct {
	url   string
	store *counting
	clock *clock
	logs  *testenv.SyncBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	url := testenv.DatabaseURL(t)
	return &env{url: url, store: &counting{Store: kbtest.NewStore(t, url)},
		clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, logs: &testenv.SyncBuffer{}}
}

// service is one replica's session service.
func (e *env) service(t testing.TB, opts session.Options) *session.Service {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = adminRing(t)
	}
	opts.Now = e.clock.Now
	opts.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := session.NewService(e.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	alice = session.Person{Issuer: "https://idp.example.com", Subject: "u-alice", Name: "Alice Liddell", Email: "alice@example.com"}
	bob   = session.Person{Issuer: "https://idp.example.com", Subject: "u-bob", Email: "bob@example.com"}
	// wsAdmin is admin of ws1 and reader of org acme.
	wsAdmin = session.Grants{
		Workspaces:    map[string]session.Grant{"ws1": {Role: session.RoleAdmin, From: []string{"group:kb-ws-ws1-admin"}}},
		Organizations: map[string]session.Grant{"acme": {Role: session.RoleReader, From: []string{"group:kb-org-acme-reader"}}},
	}
	operator = session.Grants{Operator: true, OperatorFrom: []string{"group:kb-operators"}}
)

func TestSessionCreateAuthenticateEnd(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	tok, rec, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "kbs_") || len(tok) != 47 || len(rec.ID) != 20 || !strings.HasPrefix(rec.ID, "ses_") {
		t.Fatalf("token of %d characters, id %q", len(tok), rec.ID)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(tok[4:]); err != nil || len(raw) != 32 {
		t.Fatalf("the token is not 32 bytes in base64url: %d %v", len(raw), err)
	}
	if h := session.Hash(tok); !reflect.DeepEqual(rec.Hash, h[:]) {
		t.Fatal("the record's hash is not the token's SHA-256")
	}
	other, _, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil || other == tok {
		t.Fatalf("a second session: equal tokens, or %v", err)
	}

	// A fresh replica reads it from PostgreSQL, grants and all.
	replica := e.service(t, session.Options{})
	got, err := replica.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rec.ID || got.Person != alice || got.Via != session.ViaPage || !reflect.DeepEqual(got.Grants, wsAdmin) ||
		!got.ExpiresAt.Equal(rec.ExpiresAt) || !got.IdleExpiresAt.Equal(rec.IdleExpiresAt) {
		t.Fatalf("authenticated as %+v, want %+v", got, rec)
	}
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	for _, bad := range []string{"", tok[:46], tok + "x", "Bearer " + tok, strings.Replace(tok, "kbs_", "kbt_", 1), tok[:46] + last} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, session.ErrUnauthenticated) {
			t.Errorf("authenticate %q...: %v", bad[:min(len(bad), 6)], err)
		}
	}

	// An end is honoured at once where it is made, and on the replica that
	// remembers the session within Options.Fresh (or at once after Forget,
	// which the invalidation listener calls).
	if err := s.End(ctx, rec.ID, "signed out"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("an ended session authenticated here: %v", err)
	}
	replica.Forget(rec.ID)
	if _, err := replica.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("an ended session authenticated on the replica told of it: %v", err)
	}
	third := e.service(t, session.Options{})
	if _, err := third.Authenticate(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, "ses_"+strings.Repeat("0", 16), "x"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("ending an unknown session: %v", err)
	}
	if err := s.End(ctx, rec.ID, "again"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("ending a session twice: %v", err)
	}
	if err := s.End(ctx, other, "x"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("End takes an id, not a token: %v", err)
	}
	if err := s.End(ctx, rec.ID, ""); !errors.Is(err, session.ErrInvalid) {
		t.Fatalf("an end without a reason: %v", err)
	}
	if err := s.End(ctx, mustID(t, e, other), "signed out"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(10 * time.Second) // Options.Fresh: the bound on another replica
	if _, err := third.Authenticate(ctx, other); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("an ended session authenticated on another replica after Options.Fresh: %v", err)
	}

	list, err := s.List(ctx, alice.Issuer, alice.Subject)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d sessions, %v", len(list), err)
	}
	for _, r := range list {
		if r.EndedAt == nil || r.EndedReason != "signed out" || !s.Signed(r) {
			t.Errorf("listed %v (signed %v)", r, s.Signed(r))
		}
	}
}

// mustID is the id of the session of token.
func mustID(t *testing.T, e *env, token string) string {
	t.Helper()
	h := session.Hash(token)
	rec, err := e.store.Store.SessionByHash(context.Background(), h[:])
	if err != nil {
		t.Fatal(err)
	}
	return rec.ID
}

func TestSessionBadRequestsChangeNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	long := strings.Repeat("x", 256)
	cases := []struct {
		name string
		p    session.Person
		g    session.Grants
		via  session.Via
	}{
		{"no role", alice, session.Grants{}, session.ViaPage},
		{"unknown via", alice, wsAdmin, "api"},
		{"no subject", session.Person{Issuer: alice.Issuer}, wsAdmin, session.ViaPage},
		{"no issuer", session.Person{Subject: "x"}, wsAdmin, session.ViaPage},
		{"subject too long", session.Person{Issuer: alice.Issuer, Subject: long}, wsAdmin, session.ViaPage},
		{"control character", session.Person{Issuer: alice.Issuer, Subject: alice.Subject, Name: "Alice\nadmin=true"}, wsAdmin, session.ViaPage},
		{"bad workspace id", alice, session.Grants{Workspaces: map[string]session.Grant{"WS 1": {Role: session.RoleAdmin}}}, session.ViaPage},
		{"unknown role", alice, session.Grants{Workspaces: map[string]session.Grant{"ws1": {Role: "operator"}}}, session.ViaPage},
		{"operatorFrom without operator", alice, session.Grants{OperatorFrom: []string{"x"},
			Workspaces: map[string]session.Grant{"ws1": {Role: session.RoleReader}}}, session.ViaPage},
	}
	for _, c := range cases {
		if tok, _, err := s.Create(ctx, c.p, c.g, c.via); !errors.Is(err, session.ErrInvalid) || tok != "" {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if list, err := s.List(ctx, alice.Issuer, alice.Subject); err != nil || len(list) != 0 {
		t.Fatalf("bad requests stored %d sessions (%v)", len(list), err)
	}
	if _, err := session.NewService(e.store, session.Options{}); err == nil {
		t.Error("a service without signing keys")
	}
	if _, err := session.NewService(e.store, session.Options{Keys: adminRing(t), Page: session.Limits{Idle: 13 * time.Hour, Lifetime: 12 * time.Hour}}); err == nil {
		t.Error("an idle timeout longer than the lifetime")
	}
	if _, err := session.NewService(e.store, session.Options{Keys: adminRing(t), CLI: session.Limits{Idle: time.Hour, Lifetime: 30 * 24 * time.Hour}}); err == nil {
		t.Error("a lifetime of 30 days")
	}
}

// seen reads a session's last use and idle expiry as PostgreSQL holds them.
func seen(t *testing.T, e *env, token string) (lastSeen, idle, exp time.Time) {
	t.Helper()
	h := session.Hash(token)
	rec, err := e.store.Store.SessionByHash(context.Background(), h[:])
	if err != nil {
		t.Fatal(err)
	}
	return rec.LastSeenAt, rec.IdleExpiresAt, rec.ExpiresAt
}

func TestSessionIdleAndAbsoluteExpiry(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	t0 := e.clock.Now()

	// Idle: used every 59 minutes, a page session lives on; left alone
	// for an hour after its last use, it ends.
	tok, rec, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.IdleExpiresAt.Equal(t0.Add(time.Hour)) || !rec.ExpiresAt.Equal(t0.Add(12*time.Hour)) {
		t.Fatalf("a page session idles out at %s and ends at %s", rec.IdleExpiresAt.Sub(t0), rec.ExpiresAt.Sub(t0))
	}
	for range 3 {
		e.clock.Add(59 * time.Minute)
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("used within the idle timeout, at %s: %v", e.clock.Now().Sub(t0), err)
		}
	}
	lastSeen, idle, _ := seen(t, e, tok)
	if !lastSeen.Equal(e.clock.Now()) || !idle.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("last seen %s, idle expiry %s after the start", lastSeen.Sub(t0), idle.Sub(t0))
	}
	e.clock.Add(time.Hour)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("an hour idle, the page session still authenticates: %v", err)
	}
	if _, err := e.service(t, session.Options{}).Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("a fresh replica, at the idle expiry: %v", err)
	}

	// Absolute: used every 30 minutes, it still ends 12 hours after
	// sign-in; the idle expiry never passes the absolute one.
	start := e.clock.Now()
	tok, _, err = s.Create(ctx, bob, operator, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	for e.clock.Now().Before(start.Add(12*time.Hour - 30*time.Minute)) {
		e.clock.Add(30 * time.Minute)
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("at %s: %v", e.clock.Now().Sub(start), err)
		}
	}
	_, idle, exp := seen(t, e, tok)
	if !exp.Equal(start.Add(12*time.Hour)) || idle.After(exp) {
		t.Fatalf("idle expiry %s, expiry %s after sign-in", idle.Sub(start), exp.Sub(start))
	}
	e.clock.Add(30 * time.Minute)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("12 hours after sign-in, a busy session still authenticates: %v", err)
	}

	// The CLI's sessions idle for 4 hours; both limits are options.
	tok, rec, err = s.Create(ctx, bob, operator, session.ViaCLI)
	if err != nil {
		t.Fatal(err)
	}
	if rec.IdleExpiresAt.Sub(rec.CreatedAt) != 4*time.Hour || rec.ExpiresAt.Sub(rec.CreatedAt) != 12*time.Hour {
		t.Fatalf("a CLI session: idle %s, lifetime %s", rec.IdleExpiresAt.Sub(rec.CreatedAt), rec.ExpiresAt.Sub(rec.CreatedAt))
	}
	e.clock.Add(3 * time.Hour)
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("a CLI session after 3 idle hours: %v", err)
	}
	short := e.service(t, session.Options{CLI: session.Limits{Idle: 10 * time.Minute, Lifetime: time.Hour}})
	tok, rec, err = short.Create(ctx, bob, operator, session.ViaCLI)
	if err != nil || rec.ExpiresAt.Sub(rec.CreatedAt) != time.Hour {
		t.Fatalf("configured limits: %v %v", rec, err)
	}
	e.clock.Add(11 * time.Minute)
	if _, err := short.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("past a configured idle timeout: %v", err)
	}
}

// TestSessionTouchIsRateLimited: a page busy every second for ten minutes
// costs each replica one statement per Options.Fresh (10 s), of which one
// a minute writes its last use; a burst of requests within Fresh costs
// none.
func TestSessionTouchIsRateLimited(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	tok, _, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if r, w := e.store.reads.Load(), e.store.touches.Load(); r != 1 || w != 0 {
		t.Fatalf("1000 requests in a burst: %d reads, %d touches; want 1, 0", r, w)
	}
	e.store.reads.Store(0)
	const seconds = 600
	start := e.clock.Now()
	for range seconds {
		e.clock.Add(time.Second)
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	reads, touches := e.store.reads.Load(), e.store.touches.Load()
	// One statement per 10 s (a read, or a touch that reads), a touch at
	// most once a minute.
	if reads+touches != seconds/10 || touches < seconds/60-1 || touches > seconds/60 {
		t.Fatalf("a request a second for %ds: %d reads and %d touches; want %d statements, at most %d touches",
			seconds, reads, touches, seconds/10, seconds/60)
	}
	lastSeen, idle, _ := seen(t, e, tok)
	if now := e.clock.Now(); now.Sub(lastSeen) >= time.Minute+10*time.Second || lastSeen.Before(start) ||
		!idle.Equal(lastSeen.Add(time.Hour)) {
		t.Fatalf("last seen %s before now, idle expiry %s after it", now.Sub(lastSeen), idle.Sub(lastSeen))
	}
	// Two replicas do not both write a minute's touch.
	other := e.service(t, session.Options{})
	if _, err := other.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	before := lastSeenAt(t, e, tok)
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	afterFirst := lastSeenAt(t, e, tok)
	e.clock.Add(time.Second)
	if _, err := other.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if afterFirst.Equal(before) || !lastSeenAt(t, e, tok).Equal(afterFirst) {
		t.Fatalf("last seen: %s, %s after the first replica's touch, %s after the second's", before, afterFirst, lastSeenAt(t, e, tok))
	}
}

func lastSeenAt(t *testing.T, e *env, token string) time.Time {
	t.Helper()
	ls, _, _ := seen(t, e, token)
	return ls
}

func TestSessionEndAllFor(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	var aliceTokens []string
	for _, via := range []session.Via{session.ViaPage, session.ViaCLI, session.ViaPage} {
		tok, _, err := s.Create(ctx, alice, wsAdmin, via)
		if err != nil {
			t.Fatal(err)
		}
		aliceTokens = append(aliceTokens, tok)
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	bobTok, _, err := s.Create(ctx, bob, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	// Another issuer's alice is another person.
	elsewhere := alice
	elsewhere.Issuer = "https://other-idp.example.com"
	elsewhereTok, _, err := s.Create(ctx, elsewhere, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}

	ended, err := s.EndAllFor(ctx, alice.Issuer, alice.Subject, "roles lost at a later sign-in")
	if err != nil || len(ended) != 3 {
		t.Fatalf("ended %v, %v", ended, err)
	}
	for i, tok := range aliceTokens {
		if _, err := s.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
			t.Errorf("alice's session %d still authenticates: %v", i, err)
		}
	}
	for _, tok := range []string{bobTok, elsewhereTok} {
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Errorf("another person's session was ended: %v", err)
		}
	}
	list, err := s.List(ctx, alice.Issuer, alice.Subject)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d, %v", len(list), err)
	}
	for _, r := range list {
		if r.EndedAt == nil || r.EndedReason != "roles lost at a later sign-in" {
			t.Errorf("after EndAllFor: %v", r)
		}
	}
	if again, err := s.EndAllFor(ctx, alice.Issuer, alice.Subject, "again"); err != nil || len(again) != 0 {
		t.Fatalf("ending again: %v %v", again, err)
	}
	// A new sign-in after it works.
	tok, _, err := s.Create(ctx, alice, session.Grants{Workspaces: map[string]session.Grant{"ws1": {Role: session.RoleReader}}}, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
}

// connectAs opens a plain connection, as an attacker holding a pod's
// database secret would.
func connectAs(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// forge inserts a session row of the attacker's making with conn: a
// token of their choosing, its hash, operator grants, and keyID and sig.
func forge(ctx context.Context, conn *pgx.Conn, id, keyID string, sig []byte, now time.Time) (string, error) {
	tok := "kbs_" + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat(id[len(id)-1:], 32)))
	h := session.Hash(tok)
	_, err := conn.Exec(ctx, `INSERT INTO sessions (id, token_hash, issuer, subject, grants, via, created_at, last_seen_at,
			idle_expires_at, expires_at, key_id, signature)
		VALUES ($1, $2, 'https://idp.example.com', 'mallory', '{"operator": true}', 'page', $3, $3, $4, $4, $5, $6)`,
		id, h[:], now, now.Add(time.Hour), keyID, sig)
	return tok, err
}

// TestSessionRowsWrittenWithADatabaseRoleAreRefused plays the attack on
// token rows against sessions: with the admin pods' database secret (the
// runtime role), insert a session row and use its token. keybroker accepts
// only rows it signed, with a key the database never holds, and reports
// each forged row once.
func TestSessionRowsWrittenWithADatabaseRoleAreRefused(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	runtime := connectAs(t, testenv.RuntimeURL(t, e.url))
	_, genuine, err := s.Create(ctx, alice, operator, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := keyring.Parse(strings.SplitN(kbtest.AdminTokenKeys, ":", 2)[0] + ":" + strings.Repeat("f", 40)) // the right key id, the wrong secret
	_, forgedMAC, _ := forger.Derive("session rows").Sign([]byte("whatever"))
	// A token row's signature, made with the real key for token rows,
	// verifies for no session.
	_, tokenRowMAC, _ := adminRing(t).Derive("token rows").Sign([]byte("keybroker token row v1"))
	cases := []struct {
		id, keyID string
		sig       []byte
	}{
		{"ses_00000000000000a1", "none", make([]byte, 32)},
		{"ses_00000000000000a2", genuine.KeyID, forgedMAC},
		{"ses_00000000000000a3", genuine.KeyID, genuine.Signature},
		{"ses_00000000000000a4", genuine.KeyID, tokenRowMAC},
	}
	for _, c := range cases {
		tok, err := forge(ctx, runtime, c.id, c.keyID, c.sig, e.clock.Now())
		if err != nil {
			t.Fatalf("the runtime role may add session rows (keybroker's admin side does): %v", err)
		}
		for range 2 {
			if rec, err := s.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
				t.Errorf("a hand-written row %s authenticated as %v (%v)", c.id, rec, err)
			}
			e.clock.Add(31 * time.Second) // past UnknownTTL: read again, not reported again
		}
		if n := strings.Count(e.logs.String(), `"session_id":"`+c.id+`"`); n != 1 {
			t.Errorf("the forged row %s was reported %d times, want once:\n%s", c.id, n, e.logs.String())
		}
	}
	if !strings.Contains(e.logs.String(), "did not sign") {
		t.Fatalf("no report of the forged rows:\n%s", e.logs.String())
	}
	// The resolver role (sandbox-facing pods) can neither read nor write
	// sessions.
	resolver := connectAs(t, testenv.ResolverURL(t, e.url))
	if _, err := forge(ctx, resolver, "ses_00000000000000b1", "x", make([]byte, 32), e.clock.Now()); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the resolver role inserting a session: %v", err)
	}
	var n int
	if err := resolver.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&n); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the resolver role read sessions: %v", err)
	}
}

// TestSessionSecretsStayOut: no token or hash in the logs (at debug
// level, forged rows and failed touches included), in a record however
// printed, in errors, or in PostgreSQL (the token; its hash is what the
// table keeps).
func TestSessionSecretsStayOut(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s := e.service(t, session.Options{})
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var secrets []string
	add := func(tok string) {
		h := session.Hash(tok)
		secrets = append(secrets, tok, tok[4:], hex.EncodeToString(h[:]), base64.StdEncoding.EncodeToString(h[:]),
			base64.RawURLEncoding.EncodeToString(h[:]), string(h[:]))
	}
	tok, rec, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	add(tok)
	var printed []string
	got, err := s.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(got)
	printed = append(printed, fmt.Sprint(got), fmt.Sprintf("%+v", got), fmt.Sprintf("%#v", got), fmt.Sprintf("%v", &got), string(j))
	log.Info("authenticated", "session", got)
	e.clock.Add(2 * time.Minute)
	if _, err := s.Authenticate(ctx, tok); err != nil { // a touch
		t.Fatal(err)
	}
	runtime := connectAs(t, testenv.RuntimeURL(t, e.url))
	forged, err := forge(ctx, runtime, "ses_00000000000000c1", "none", make([]byte, 32), e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	add(forged)
	_, err = s.Authenticate(ctx, forged)
	printed = append(printed, fmt.Sprint(err))
	if err := s.End(ctx, rec.ID, "signed out"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(ctx, tok)
	printed = append(printed, fmt.Sprint(err))
	list, err := s.List(ctx, alice.Issuer, alice.Subject)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("listed", "sessions", list)
	printed = append(printed, fmt.Sprint(list), e.logs.String())
	if !strings.Contains(e.logs.String(), rec.ID) || !strings.Contains(e.logs.String(), "ses_00000000000000c1") {
		t.Fatalf("the log names no session: this test would prove nothing:\n%s", e.logs.String())
	}
	for _, p := range printed {
		for _, sec := range secrets {
			if strings.Contains(p, sec) {
				t.Fatalf("a token or hash (%q...) in %q", sec[:6], p)
			}
		}
	}
	testenv.AssertDumpLacks(t, e.url, []string{tok, tok[4:], forged, forged[4:]})
}

// TestSessionKeysRotateWithOverlap: a session signed with the old admin
// key keeps working while both keys are in the ring, and is refused once
// the old key is dropped (sessions are not re-signed: keep the old key for
// the longest lifetime).
func TestSessionKeysRotateWithOverlap(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	ring := func(s string) *keyring.Ring {
		r, err := keyring.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k1, k2 := "k1:"+strings.Repeat("1", 40), "k2:"+strings.Repeat("2", 40)
	tok, _, err := e.service(t, session.Options{Keys: ring(k1)}).Create(ctx, alice, wsAdmin, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.service(t, session.Options{Keys: ring(k2 + "," + k1)}).Authenticate(ctx, tok); err != nil {
		t.Fatalf("refused during the overlap: %v", err)
	}
	if _, err := e.service(t, session.Options{Keys: ring(k2)}).Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("accepted after its key was dropped: %v", err)
	}
}
