package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newService(t *testing.T, url string) (*auth.Service, *store.Store) {
	t.Helper()
	// Connected as the owner, as the CLI that mints resolver tokens is.
	st := kbtest.NewOwnerStore(t, url)
	return auth.NewService(st, auth.Options{Keys: kbtest.RowKeys()}), st
}

func TestTokensAreLongRandomAndStoredHashed(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	s, st := newService(t, url)
	tok, rec, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleAdmin, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "kbt_") || len(tok) != 47 || !strings.HasPrefix(rec.ID, "tok_") {
		t.Fatalf("token %d chars, id %s", len(tok), rec.ID)
	}
	other, _, _ := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "t"})
	if other == tok {
		t.Fatal("two tokens are equal")
	}
	h := auth.Hash(tok)
	stored, err := st.TokenByHash(ctx, h[:])
	if err != nil || stored.ID != rec.ID {
		t.Fatalf("stored by hash: %+v %v", stored, err)
	}
	p, err := s.Authenticate(ctx, tok)
	if err != nil || p.TokenID != rec.ID || p.Role != auth.RoleAdmin {
		t.Fatalf("authenticate: %+v %v", p, err)
	}
	last := "A"
	if strings.HasSuffix(tok, "A") {
		last = "B"
	}
	for _, bad := range []string{"", tok[:46], tok + "x", "Bearer " + tok, strings.Replace(tok, "kbt_", "kbx_", 1), tok[:46] + last} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("authenticate %q...: %v", bad[:min(len(bad), 8)], err)
		}
	}
}

func TestCreateRefusesIncoherentRequests(t *testing.T) {
	s, _ := newService(t, testenv.DatabaseURL(t))
	for _, req := range []auth.CreateRequest{
		{Role: "root"},
		{Role: auth.RoleAdmin},
		{Role: auth.RoleReader, Workspaces: []string{"Bad/WS"}},
		{Role: auth.RoleResolver, Workspaces: []string{"Bad/WS"}},
		{Role: auth.RoleOperator, Workspaces: []string{"ws1"}},
		{Role: auth.RoleOperator, TTL: -time.Hour},
		// Operator tokens live 30 days at most, unless no expiry is asked
		// for by name; no expiry takes no TTL.
		{Role: auth.RoleOperator, TTL: 31 * 24 * time.Hour},
		{Role: auth.RoleAdmin, Workspaces: []string{"ws1"}, TTL: time.Hour, NoExpiry: true},
	} {
		if _, _, err := s.Create(context.Background(), req); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}

func TestRolesAllow(t *testing.T) {
	admin := auth.Principal{Role: auth.RoleAdmin, Workspaces: []string{"ws1"}}
	reader := auth.Principal{Role: auth.RoleReader, Workspaces: []string{"ws1"}}
	resolver := auth.Principal{Role: auth.RoleResolver}
	op := auth.Principal{Role: auth.RoleOperator}
	for _, tc := range []struct {
		p      auth.Principal
		action auth.Action
		ws     string
		want   bool
	}{
		{admin, auth.ActionManageKeys, "ws1", true},
		{admin, auth.ActionManageKeys, "ws2", false},
		{admin, auth.ActionPurgeWorkspace, "ws1", false},
		{admin, auth.ActionResolve, "", false},
		{reader, auth.ActionReadKeys, "ws1", true},
		{reader, auth.ActionManageKeys, "ws1", false},
		{resolver, auth.ActionResolve, "", true},
		{resolver, auth.ActionReadKeys, "ws1", false},
		{op, auth.ActionPurgeWorkspace, "any", true},
		{resolver, auth.ActionListProviders, "", true},
	} {
		if got := tc.p.Allowed(tc.action, broker.WorkspaceScope(tc.ws)); got != tc.want {
			t.Errorf("%s action %d on %q: %v", tc.p.Role, tc.action, tc.ws, got)
		}
	}
}

// A PostgreSQL outage must not stop resolves: a token validated recently
// is still accepted; a token never seen is 503, not 401.
func TestRecentlyValidatedTokensSurviveAPostgresOutage(t *testing.T) {
	ctx := context.Background()
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	// A cluster of this test's own (it is stopped below): migrated and
	// used as its superuser.
	st, err := store.Open(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys()})
	seen, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	unseen, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, seen); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	if p, err := s.Authenticate(ctx, seen); err != nil || p.Role != auth.RoleResolver {
		t.Fatalf("a recently validated token during the outage: %v", err)
	}
	if _, err := s.Authenticate(ctx, unseen); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("an unseen token during the outage: %v, want ErrUnavailable", err)
	}
}

func TestRevokedTokenIsRefusedAtOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, testenv.DatabaseURL(t))
	tok, rec, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, rec.ID, "t", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := s.Revoke(ctx, rec.ID, "t", "", ""); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
}
