package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

// countingStore is the real store, counting token lookups and able to
// stall them (a PostgreSQL that hangs).
type countingStore struct {
	*store.Store
	lookups atomic.Int32
	stall   atomic.Bool
}

func (c *countingStore) TokenByHash(ctx context.Context, hash []byte) (auth.TokenRecord, error) {
	c.lookups.Add(1)
	if c.stall.Load() {
		<-ctx.Done()
		return auth.TokenRecord{}, ctx.Err()
	}
	return c.Store.TokenByHash(ctx, hash)
}

func TestTokensExpireByDefault(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, testenv.DatabaseURL(t))
	for _, tc := range []struct {
		req  auth.CreateRequest
		want time.Duration // 0: never
	}{
		{auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleAdmin, Workspaces: []string{"ws1"}}, auth.DefaultTTL},
		{auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver}, auth.DefaultTTL},
		{auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator}, auth.MaxOperatorTTL},
		{auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, TTL: time.Hour}, time.Hour},
		{auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, NoExpiry: true}, 0},
	} {
		before := time.Now()
		_, rec, err := s.Create(ctx, tc.req)
		if err != nil {
			t.Fatalf("%+v: %v", tc.req, err)
		}
		switch {
		case tc.want == 0 && rec.ExpiresAt != nil:
			t.Errorf("%+v expires at %v, want never", tc.req, rec.ExpiresAt)
		case tc.want > 0 && (rec.ExpiresAt == nil || rec.ExpiresAt.Sub(before) < tc.want-time.Minute || rec.ExpiresAt.Sub(before) > tc.want+time.Minute):
			t.Errorf("%+v expires at %v, want about %s from now", tc.req, rec.ExpiresAt, tc.want)
		}
	}
}

func TestUnknownTokensAreRememberedAndLookupsHaveADeadline(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: newStoreOnly(t)}
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys(), LookupTimeout: 2 * time.Second, UnknownTTL: time.Hour})
	made := "kbt_" + strings.Repeat("A", 43)
	for range 50 {
		if _, err := s.Authenticate(ctx, made); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("a made-up token: %v", err)
		}
	}
	if n := st.lookups.Load(); n != 1 {
		t.Fatalf("50 tries of one unknown token made %d PostgreSQL lookups, want 1", n)
	}
	// A real token is not affected by the memory of unknown ones.
	tok, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// A PostgreSQL that hangs: the lookup gives up at its deadline.
	st.stall.Store(true)
	start := time.Now()
	_, err = s.Authenticate(ctx, tok)
	// The stalled store returns only when the lookup's context ends: an
	// answer at all shows the deadline; the bound is far above it.
	if !errors.Is(err, auth.ErrUnavailable) || time.Since(start) > 30*time.Second {
		t.Fatalf("a lookup against a hung store: %v after %s", err, time.Since(start))
	}
	st.stall.Store(false)
	if p, err := s.Authenticate(ctx, tok); err != nil || p.Role != auth.RoleResolver {
		t.Fatalf("the real token after the store came back: %v", err)
	}
}

func TestOutageGraceIsASetting(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: newStoreOnly(t)}
	now := time.Now()
	clock := func() time.Time { return now }
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys(), TrustWithoutStore: time.Minute, Fresh: time.Second, LookupTimeout: time.Second, Now: clock})
	none := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys(), TrustWithoutStore: -1, Fresh: time.Second, LookupTimeout: time.Second, Now: clock})
	tok, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []*auth.Service{s, none} {
		if _, err := svc.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	st.stall.Store(true) // PostgreSQL stops answering
	now = now.Add(30 * time.Second)
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("within the grace window: %v", err)
	}
	if _, err := none.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("with no grace: %v, want ErrUnavailable", err)
	}
	now = now.Add(31 * time.Second)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("past the grace window: %v, want ErrUnavailable", err)
	}
}

func TestDenialsAreAggregated(t *testing.T) {
	ctx := context.Background()
	st := newStoreOnly(t)
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys(), DenialInterval: time.Hour})
	p := auth.Principal{TokenID: "tok_0123456789abcdef", Role: auth.RoleReader, Workspaces: []string{"ws1"}}
	for range 500 {
		if err := s.RecordDenial(ctx, p, broker.WorkspaceScope("ws1"), "openai", "PUT /v1/workspaces/:ws/keys/:provider", "192.0.2.1", "r1"); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := st.ListAudit(ctx, broker.WorkspaceScope("ws1"), 0, 100)
	if err != nil || len(evs) != 1 || max(evs[0].Count, 1) != 1 {
		t.Fatalf("before the interval ends: %d rows (%v), want the first denial alone", len(evs), err)
	}
	if err := s.FlushDenials(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err = st.ListAudit(ctx, broker.WorkspaceScope("ws1"), 0, 100)
	if err != nil || len(evs) != 2 || evs[0].Count != 499 || evs[0].Action != "access.denied" || !strings.Contains(evs[0].Detail, "499 more") {
		t.Fatalf("after the interval: %+v %v; want one row counting the other 499", evs, err)
	}
}

func TestTokenEventsReachEachWorkspaceTrail(t *testing.T) {
	ctx := context.Background()
	st := newStoreOnly(t)
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys()})
	_, rec, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleAdmin, Workspaces: []string{"ws1", "ws2"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, rec.ID, "t", "", ""); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{"ws1", "ws2"} {
		evs, err := st.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 10)
		if err != nil || len(evs) != 2 || evs[0].Action != "token.revoke" || evs[1].Action != "token.create" || !strings.Contains(evs[1].Detail, rec.ID) {
			t.Fatalf("trail of %s: %+v %v", ws, evs, err)
		}
	}
	if _, _, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, CreatedBy: "t"}); err != nil {
		t.Fatal(err)
	}
	all, err := st.ListAllAudit(ctx, 0, 10)
	if err != nil || len(all) != 5 || all[0].ScopeID != "" || all[0].Action != "token.create" {
		t.Fatalf("global trail: %+v %v", all, err)
	}
}

func newStoreOnly(t *testing.T) *store.Store {
	t.Helper()
	_, st := newService(t, testenv.DatabaseURL(t))
	return st
}
