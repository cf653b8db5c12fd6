// Package kbtest is the one test harness of "keybroker over real Vault and
// PostgreSQL": a migrated store, and a keybroker API served on loopback by
// a broker whose writer and reader are keybroker's own AppRole identities
// (bootstrapped as in production), with an operator token. It builds on
// internal/testenv (the servers) and internal/vaulttest (the identities).
package kbtest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/keyring"
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/vaulttest"
	"github.com/keybroker/keybroker/store"
)

// NewStore migrates the database at dbURL as its owner, granting the test
// process's runtime and resolver roles, and returns a store connected as
// the runtime role (as `keybroker serve --mode=admin` runs in production);
// the store is closed when the test ends.
func NewStore(tb testing.TB, dbURL string) *store.Store {
	tb.Helper()
	return openAs(tb, dbURL, testenv.RuntimeURL(tb, dbURL))
}

// NewOwnerStore is NewStore connected as the owner: what the owner's
// `keybroker token create` uses (the only way to store a resolver token's
// row: row-level security refuses it to the serving roles).
func NewOwnerStore(tb testing.TB, dbURL string) *store.Store {
	tb.Helper()
	return openAs(tb, dbURL, dbURL)
}

// NewResolverStore is NewStore connected as the resolver role (as `keybroker
// serve --mode=resolver` and `--mode=proxy` run in production).
func NewResolverStore(tb testing.TB, dbURL string) *store.Store {
	tb.Helper()
	return openAs(tb, dbURL, testenv.ResolverURL(tb, dbURL))
}

func openAs(tb testing.TB, dbURL, roleURL string) *store.Store {
	tb.Helper()
	ctx := context.Background()
	testenv.RuntimeURL(tb, dbURL) // creates the roles first
	testenv.ResolverURL(tb, dbURL)
	owner, err := store.Open(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer owner.Close()
	if err := owner.Migrate(ctx, testenv.RuntimeRole(tb)); err != nil {
		tb.Fatal(err)
	}
	if err := owner.GrantResolver(ctx, testenv.ResolverRole(tb)); err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(ctx, roleURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	return st
}

// Ground is keybroker's domain over real Vault and PostgreSQL, without a
// server: bootstrapped Vault identities (as production's), a migrated
// database, a broker whose writer and reader are those identities, the
// token service and an operator token.
type Ground struct {
	// Identities are the bootstrapped Vault identities (Root holds the root
	// token, to look behind keybroker's back).
	Identities *vaulttest.Identities
	DBURL      string
	Store      *store.Store
	Broker     *broker.Broker
	Tokens     *auth.Service
	// Minter mints tokens as the owner's CLI does (connected as the
	// owner, Via cli): resolver tokens are made only so.
	Minter        *auth.Service
	OperatorToken string
	// ResolverToken resolves (an operator cannot).
	ResolverToken string
}

// The test deployment's signing keyrings: fixed, so that the test binary and
// the keybroker processes it starts sign and verify alike.
const (
	AdminTokenKeys = "kbtest-admin:kbtest-admin-token-key-0123456789abcdef"
	ResolverKeys   = "kbtest-res:kbtest-resolver-key-0123456789abcdef012345"
)

// RowKeys are AdminTokenKeys and ResolverKeys as auth takes them.
func RowKeys() auth.RowKeys {
	admin, err := keyring.Parse(AdminTokenKeys)
	if err != nil {
		panic(err)
	}
	resolver, err := keyring.Parse(ResolverKeys)
	if err != nil {
		panic(err)
	}
	return auth.RowKeys{Admin: admin, Resolver: resolver}
}

// KeysEnv is the environment that gives a keybroker process of mode the
// test keyrings it may hold: every mode the admin keys (they verify
// organization links), an admin replica never the resolver keys.
func KeysEnv(mode string) []string {
	env := []string{"KEYBROKER_ADMIN_TOKEN_KEYS=" + AdminTokenKeys} // every mode verifies links
	if mode != "admin" {
		env = append(env, "KEYBROKER_RESOLVER_KEYS="+ResolverKeys)
	}
	return env
}

// Options tune NewGround and Start.
type Options struct {
	// Pepper keys the fingerprints. Default: a fixed test pepper.
	Pepper string
	// Logger of the broker, the Vault identities and the router. Default:
	// discard.
	Logger *slog.Logger
	// Vault tunes the bootstrap and the identities (its Logger defaults to
	// Logger).
	Vault vaulttest.Options
	// Checker asks providers about keys (a stand-in's checker); nil:
	// tests and verified writes answer "not available".
	Checker broker.KeyChecker
	// Events receives the broker's health changes (a webhook sink).
	Events broker.EventSink
}

// NewGround builds a Ground for the test.
func NewGround(t testing.TB, opts Options) *Ground {
	t.Helper()
	if opts.Pepper == "" {
		opts.Pepper = "kbtest-pepper-0123456789"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Vault.Logger == nil {
		opts.Vault.Logger = opts.Logger
	}
	g := &Ground{Identities: vaulttest.Bootstrap(t, opts.Vault), DBURL: testenv.DatabaseURL(t)}
	g.Store = NewStore(t, g.DBURL)
	ids := g.Identities
	var err error
	g.Broker, err = broker.New(broker.Config{Reader: ids.Reader.KV(ids.Mount), Writer: ids.Writer.KV(ids.Mount), Store: g.Store, Pools: g.Store,
		Pepper: []byte(opts.Pepper), Logger: opts.Logger, Settings: g.Store, Usage: g.Store, Health: g.Store, Checker: opts.Checker, Events: opts.Events,
		Links: auth.NewLinkSigner(RowKeys().Admin)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Broker.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Tokens = auth.NewService(g.Store, auth.Options{Keys: RowKeys()})
	g.Minter = auth.NewService(NewOwnerStore(t, g.DBURL), auth.Options{Keys: RowKeys()})
	if g.OperatorToken, _, err = g.Minter.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, CreatedBy: "kbtest"}); err != nil {
		t.Fatal(err)
	}
	if g.ResolverToken, _, err = g.Minter.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "kbtest"}); err != nil {
		t.Fatal(err)
	}
	return g
}

// Server is a Ground served by keybroker's router (mode all) on loopback.
type Server struct {
	*Ground
	// URL is the API's base URL; API a client holding the operator token,
	// Resolver one holding the resolver token.
	URL      string
	API      *client.Client
	Resolver *client.Client
}

// Start serves a new Ground's API for the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	g := NewGround(t, opts)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := httptest.NewServer(handlers.NewRouter(handlers.Options{Keys: g.Broker, Tokens: g.Tokens, Logger: logger}))
	t.Cleanup(srv.Close)
	s := &Server{Ground: g, URL: srv.URL}
	var err error
	if s.API, err = client.New(client.Config{Address: srv.URL, Token: g.OperatorToken}); err != nil {
		t.Fatal(err)
	}
	if s.Resolver, err = client.New(client.Config{Address: srv.URL, Token: g.ResolverToken}); err != nil {
		t.Fatal(err)
	}
	return s
}
