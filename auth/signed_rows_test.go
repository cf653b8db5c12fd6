package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// connectAs opens a plain connection with a database URL, as an attacker
// holding a pod's database secret would.
func connectAs(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// insertToken writes a token row by hand, the way the review did with the
// runtime role: a token of the attacker's choosing, its hash, a role.
func insertToken(ctx context.Context, conn *pgx.Conn, id, role string, keyID string, signature []byte) (string, error) {
	token, _, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	hash := auth.Hash(token)
	_, err = conn.Exec(ctx, `INSERT INTO api_tokens (id, token_hash, role, created_by, key_id, signature) VALUES ($1, $2, $3, 'attacker', $4, $5)`,
		id, hash[:], role, keyID, signature)
	return token, err
}

// TestTokenRowsWrittenWithADatabaseRoleAreRefused plays the review's
// attack: with the admin pod's database secret (the runtime role), write a
// token row, then use the token. keybroker accepts only rows it signed, with
// a key the database does not hold; the runtime role may not even store a
// resolver token's row, and the resolver role may store none at all.
func TestTokenRowsWrittenWithADatabaseRoleAreRefused(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	s, _ := newService(t, ownerURL)
	kbtest.NewResolverStore(t, ownerURL) // grants the resolver role
	runtime := connectAs(t, testenv.RuntimeURL(t, ownerURL))
	resolver := connectAs(t, testenv.ResolverURL(t, ownerURL))

	// A resolver row: refused by PostgreSQL itself for the runtime role
	// (row-level security) and the resolver role (no INSERT).
	for name, conn := range map[string]*pgx.Conn{"runtime": runtime, "resolver": resolver} {
		if _, err := insertToken(ctx, conn, "tok_00000000000000a1", "resolver", "", nil); err == nil {
			t.Errorf("the %s role stored a resolver token's row", name)
		} else if !strings.Contains(err.Error(), "row-level security") && !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the %s role's resolver row failed, but not on privileges: %v", name, err)
		}
	}
	if _, err := insertToken(ctx, resolver, "tok_00000000000000a2", "operator", "", nil); err == nil {
		t.Error("the resolver role stored an operator token's row")
	}

	// An operator row the runtime role may store: unsigned, signed with a
	// made-up key, or carrying the signature of a genuine row (replayed).
	_, genuine, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaAPI, Role: auth.RoleOperator, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	forger, _ := keyring.Parse("kbtest-admin:" + strings.Repeat("f", 40)) // the right key id, the wrong secret
	_, forgedMAC, _ := forger.Derive("token rows").Sign([]byte("whatever"))
	cases := []struct {
		id, keyID string
		sig       []byte
	}{
		{"tok_00000000000000b1", "", nil},
		{"tok_00000000000000b2", "kbtest-admin", forgedMAC},
		{"tok_00000000000000b3", genuine.KeyID, genuine.Signature},
	}
	for _, c := range cases {
		token, err := insertToken(ctx, runtime, c.id, "operator", c.keyID, c.sig)
		if err != nil {
			t.Fatalf("the runtime role may add token rows (keybroker's admin side does): %v", err)
		}
		if p, err := s.Authenticate(ctx, token); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("a hand-written row %s (key %q) authenticated as %+v (%v)", c.id, c.keyID, p, err)
		}
	}
}

// TestATokenRowsGrantCannotBeChangedAndRevocationIsFinal: with the runtime
// role an attacker may not widen a genuine row (role, scopes, expiry), undo
// a revocation or delete a row; with the resolver role, not even revoke.
func TestATokenRowsGrantCannotBeChangedAndRevocationIsFinal(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	s, _ := newService(t, ownerURL)
	kbtest.NewResolverStore(t, ownerURL)
	runtime := connectAs(t, testenv.RuntimeURL(t, ownerURL))
	resolver := connectAs(t, testenv.ResolverURL(t, ownerURL))

	tok, rec, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaAPI, Role: auth.RoleAdmin, Workspaces: []string{"ws1"}, CreatedBy: "t", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE api_tokens SET role = 'operator', workspaces = '{}' WHERE id = $1`,
		`UPDATE api_tokens SET workspaces = '{ws1,ws2}' WHERE id = $1`,
		`UPDATE api_tokens SET expires_at = NULL WHERE id = $1`,
		`UPDATE api_tokens SET role = 'resolver', workspaces = '{}' WHERE id = $1`,
	} {
		if _, err := runtime.Exec(ctx, q, rec.ID); err == nil {
			t.Errorf("the runtime role ran %q", q)
		}
	}
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("the genuine token stopped working: %v", err)
	}
	if _, err := resolver.Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, rec.ID); err == nil {
		t.Error("the resolver role revoked a token")
	}
	if err := s.Revoke(ctx, rec.ID, "t", "", ""); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE api_tokens SET revoked_at = NULL WHERE id = $1`,
		`UPDATE api_tokens SET revoked_at = now() + interval '1 year' WHERE id = $1`,
		`DELETE FROM api_tokens WHERE id = $1`,
	} {
		if _, err := runtime.Exec(ctx, q, rec.ID); err == nil {
			t.Errorf("the runtime role ran %q on a revoked token", q)
		}
	}
	s.Forget(rec.ID)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a revoked token authenticated: %v", err)
	}

	// A proxy token's revocation cannot be taken back either.
	exp := time.Now().Add(time.Hour)
	if err := s.RevokeProxyToken(ctx, auth.ProxyTokenRevocation{TokenID: "ptk_00000000000000c1", Expires: exp, By: "t"}); err != nil {
		t.Fatal(err)
	}
	for name, conn := range map[string]*pgx.Conn{"runtime": runtime, "resolver": resolver} {
		for _, q := range []string{
			`DELETE FROM proxy_token_revocations`,
			`UPDATE proxy_token_revocations SET expires_at = now()`,
			`TRUNCATE proxy_token_revocations`,
		} {
			if _, err := conn.Exec(ctx, q); err == nil {
				t.Errorf("the %s role ran %q", name, q)
			}
		}
	}
	fresh, _ := newService(t, ownerURL)
	if err := fresh.LoadProxyTokenRevocations(ctx); err != nil || !fresh.ProxyTokenRevoked("ptk_00000000000000c1") {
		t.Fatalf("the revocation is not loaded by another replica: %v", err)
	}
}

// TestTheAPIMintsNoKeyReadingToken: over the API (Via api), even an
// operator gets neither a resolver token nor one that never expires; the
// owner's CLI (Via cli) does, and a process without the resolver keys (an
// admin replica) cannot even then.
func TestTheAPIMintsNoKeyReadingToken(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	s, _ := newService(t, url)
	for _, req := range []auth.CreateRequest{
		{Via: auth.ViaAPI, Role: auth.RoleResolver, CreatedBy: "token:tok_op"},
		{Via: auth.ViaAPI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "token:tok_op"},
		{Role: auth.RoleResolver, CreatedBy: "token:tok_op"}, // Via unset: the API's rules
		{Via: auth.ViaAPI, Role: auth.RoleOperator, NoExpiry: true, CreatedBy: "token:tok_op"},
	} {
		if _, _, err := s.Create(ctx, req); !errors.Is(err, auth.ErrCannotMint) {
			t.Errorf("%+v: %v, want ErrCannotMint", req, err)
		}
	}
	if _, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "cli:owner"}); err != nil {
		t.Fatalf("the owner's CLI could not mint a resolver token: %v", err)
	}
	admin := kbtest.RowKeys()
	admin.Resolver = nil
	adminReplica := auth.NewService(kbtest.NewStore(t, url), auth.Options{Keys: admin})
	if _, _, err := adminReplica.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "x"}); !errors.Is(err, auth.ErrCannotMint) {
		t.Fatalf("a process without the resolver keys minted a resolver token: %v", err)
	}
}

// TestSigningKeysRotateWithOverlap: a token signed with the old admin key
// keeps working while both keys are configured, stops when the old key is
// dropped, and works again once the owner signs its row anew.
func TestSigningKeysRotateWithOverlap(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, url)
	ring := func(s string) *keyring.Ring {
		r, err := keyring.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k1, k2 := "k1:"+strings.Repeat("1", 40), "k2:"+strings.Repeat("2", 40)
	old := auth.NewService(st, auth.Options{Keys: auth.RowKeys{Admin: ring(k1)}})
	tok, rec, err := old.Create(ctx, auth.CreateRequest{Via: auth.ViaAPI, Role: auth.RoleReader, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	overlap := auth.NewService(st, auth.Options{Keys: auth.RowKeys{Admin: ring(k2 + "," + k1)}})
	if _, err := overlap.Authenticate(ctx, tok); err != nil {
		t.Fatalf("refused during the overlap: %v", err)
	}
	only := auth.NewService(st, auth.Options{Keys: auth.RowKeys{Admin: ring(k2)}})
	if _, err := only.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("accepted after its key was dropped: %v", err)
	}
	if err := overlap.SignRow(ctx, rec, "cli:owner"); err != nil {
		t.Fatal(err)
	}
	fresh := auth.NewService(st, auth.Options{Keys: auth.RowKeys{Admin: ring(k2)}})
	if _, err := fresh.Authenticate(ctx, tok); err != nil {
		t.Fatalf("refused after signing anew: %v", err)
	}
}
