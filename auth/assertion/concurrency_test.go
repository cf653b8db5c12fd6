package assertion_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/auth/assertion"
)

// TestAssertionConcurrentUse: many callers at once make one JWKS fetch, and
// of many copies of one assertion exactly one is accepted.
func TestAssertionConcurrentUse(t *testing.T) {
	f := newFixture(t, jose.EdDSA, nil)
	const n = 32
	raws := make([]string, n)
	for i := range raws {
		raws[i] = sign(t, f.key, goodClaims(f.iss, f.clock.Now()))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range raws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.verify(t, raws[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("assertion %d: %v", i, err)
		}
	}
	if got := f.srv.fetches.Load(); got != 1 {
		t.Fatalf("%d JWKS fetches for %d concurrent first assertions, want 1", got, n)
	}

	one := sign(t, f.key, goodClaims(f.iss, f.clock.Now()))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.verify(t, one)
		}()
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, assertion.ErrReplayed):
			t.Fatalf("a copy refused with %v, want ErrReplayed", err)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d copies of one assertion accepted, want 1", accepted)
	}
}
