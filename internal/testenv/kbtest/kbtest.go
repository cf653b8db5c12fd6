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
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/vaulttest"
	"github.com/keybroker/keybroker/store"
)

// NewStore opens and migrates the database at dbURL; the store is closed
// when the test ends.
func NewStore(tb testing.TB, dbURL string) *store.Store {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}

// Server is a keybroker API on loopback over real Vault and PostgreSQL.
type Server struct {
	// URL is the API's base URL; Token an operator token; API a client
	// holding it.
	URL, Token string
	API        *client.Client
	// Identities are the bootstrapped Vault identities (Root holds the root
	// token, to look behind the API's back).
	Identities *vaulttest.Identities
	Store      *store.Store
	DBURL      string
	Broker     *broker.Broker
	Tokens     *auth.Service
}

// Options tune Start.
type Options struct {
	// Pepper keys the fingerprints. Default: a fixed test pepper.
	Pepper string
	// Logger of the broker and the router. Default: discard.
	Logger *slog.Logger
}

// Start serves keybroker's API (mode all) for the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Pepper == "" {
		opts.Pepper = "kbtest-pepper-0123456789"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	s := &Server{Identities: vaulttest.Bootstrap(t, vaulttest.Options{}), DBURL: testenv.DatabaseURL(t)}
	s.Store = NewStore(t, s.DBURL)
	ids := s.Identities
	var err error
	s.Broker, err = broker.New(broker.Config{Reader: ids.Reader.KV(ids.Mount), Writer: ids.Writer.KV(ids.Mount), Store: s.Store,
		Pepper: []byte(opts.Pepper), Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	s.Tokens = auth.NewService(s.Store, 0)
	if s.Token, _, err = s.Tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleOperator, CreatedBy: "kbtest"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handlers.NewRouter(handlers.Options{Keys: s.Broker, Tokens: s.Tokens, Logger: opts.Logger}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	if s.API, err = client.New(client.Config{Address: srv.URL, Token: s.Token}); err != nil {
		t.Fatal(err)
	}
	return s
}
