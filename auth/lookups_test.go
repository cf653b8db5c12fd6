package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// gatedStore counts the token lookups by hash, and holds each until open
// is closed.
type gatedStore struct {
	auth.Store
	open    chan struct{}
	lookups atomic.Int32
}

func (g *gatedStore) TokenByHash(ctx context.Context, hash []byte) (auth.TokenRecord, error) {
	g.lookups.Add(1)
	<-g.open
	return g.Store.TokenByHash(ctx, hash)
}

// Requests presenting one token at once make one lookup between them,
// whether the token is good or made up: the others share its answer.
func TestConcurrentLookupsOfOneTokenAreOne(t *testing.T) {
	ctx := context.Background()
	owner := kbtest.NewOwnerStore(t, testenv.DatabaseURL(t))
	minter := auth.NewService(owner, auth.Options{Keys: kbtest.RowKeys()})
	good, rec, err := minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleReader, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	bogus := "kbt_" + strings.Repeat("q", len(good)-4)
	for _, tc := range []struct {
		name, token string
		want        error
	}{{"a good token", good, nil}, {"a made-up token", bogus, auth.ErrUnauthenticated}} {
		gated := &gatedStore{Store: owner, open: make(chan struct{})}
		s := auth.NewService(gated, auth.Options{Keys: kbtest.RowKeys()})
		const n = 50
		var entered atomic.Int32
		var wg sync.WaitGroup
		errs := make([]error, n)
		ids := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if entered.Add(1) == n {
					close(gated.open) // every request has come: the lookup may answer
				}
				p, err := s.Authenticate(ctx, tc.token)
				errs[i], ids[i] = err, p.TokenID
			}()
		}
		wg.Wait()
		if got := gated.lookups.Load(); got != 1 {
			t.Errorf("%s presented by %d requests at once: %d lookups, want 1", tc.name, n, got)
		}
		for i := range n {
			if !errors.Is(errs[i], tc.want) || (tc.want == nil && ids[i] != rec.ID) {
				t.Fatalf("%s, request %d: %q %v", tc.name, i, ids[i], errs[i])
			}
		}
	}
}

// Recall tells, without a lookup, what Authenticate would do with a
// token: answer from memory, look it up again (a token validated before),
// refuse it, or look it up for the first time.
func TestRecallSaysWhatALookupWouldNeed(t *testing.T) {
	ctx := context.Background()
	st := kbtest.NewOwnerStore(t, testenv.DatabaseURL(t))
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := auth.NewService(st, auth.Options{Keys: kbtest.RowKeys(), Now: clock, Fresh: 10 * time.Second, UnknownTTL: 30 * time.Second})
	tok, rec, err := s.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleReader, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	state := func(token string) auth.Remembered { _, r := s.Recall(token); return r }
	if r := state(tok); r != auth.NotRemembered {
		t.Fatalf("a token never looked up: %v", r)
	}
	if r := state("kbt_short"); r != auth.RememberedRefused {
		t.Fatalf("a malformed token: %v", r)
	}
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if p, r := s.Recall(tok); r != auth.RememberedValid || p.TokenID != rec.ID {
		t.Fatalf("a token just validated: %v %q", r, p.TokenID)
	}
	advance(11 * time.Second)
	if r := state(tok); r != auth.RememberedStale {
		t.Fatalf("a token validated longer ago than Fresh: %v", r)
	}
	bogus := "kbt_" + strings.Repeat("z", len(tok)-4)
	if _, err := s.Authenticate(ctx, bogus); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatal(err)
	}
	if r := state(bogus); r != auth.RememberedRefused {
		t.Fatalf("a token just found unknown: %v", r)
	}
	advance(31 * time.Second)
	if r := state(bogus); r != auth.NotRemembered {
		t.Fatalf("an unknown token after UnknownTTL: %v", r)
	}
	// Revoked: forgotten, then refused from memory once looked up.
	if err := s.Revoke(ctx, rec.ID, "t", "", ""); err != nil {
		t.Fatal(err)
	}
	if r := state(tok); r != auth.NotRemembered {
		t.Fatalf("a revoked token before its lookup: %v", r)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatal(err)
	}
	if r := state(tok); r != auth.RememberedRefused {
		t.Fatalf("a revoked token after its lookup: %v", r)
	}
}
