package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

func TestRotationIsSeenAtOnceHereAndWithinTTLElsewhere(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	first, second := newKey(t, "anthropic"), newKey(t, "anthropic")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), Credential: providers.APIKey(first)}); err != nil {
		t.Fatal(err)
	}
	// Another replica, not listening: it knows the pool from its start.
	other := e.another(t, func(c *broker.Config) { c.CacheTTL = 2 * time.Second })
	if r, err := other.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic"}); err != nil || r.APIKey() != first {
		t.Fatalf("other replica before rotation: %v %v", r, err)
	}
	res, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), Credential: providers.APIKey(second), ExpectedVersion: 1})
	if err != nil || res.Created || res.Meta.Version != 2 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic"}); err != nil || r.APIKey() != second || r.Version != 2 {
		t.Fatalf("same replica right after rotation: %v %v", r, err)
	}
	// The other replica still serves its cached copy (push invalidation
	// comes with LISTEN/NOTIFY), then the new key once its TTL is over.
	if r, _ := other.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic"}); r.APIKey() != first {
		t.Fatal("other replica dropped its cache entry before the TTL")
	}
	waitFor(t, 5*time.Second, "other replica sees the rotated key", func() bool {
		r, err := other.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic"})
		return err == nil && r.APIKey() == second
	})
}

func TestColdHerdMakesOneVaultRead(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	key := newKey(t, "google")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "google", broker.DefaultKeyID), Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}
	// A fresh replica: nothing cached.
	cold := e.another(t, nil)
	before := e.reads.Reads()
	var wg sync.WaitGroup
	start := make(chan struct{})
	var failures sync.Map
	for i := range 200 {
		wg.Go(func() {
			<-start
			r, err := cold.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "google"})
			if err != nil || r.APIKey() != key {
				failures.Store(i, fmt.Sprint(err))
			}
		})
	}
	close(start)
	wg.Wait()
	failures.Range(func(k, v any) bool { t.Errorf("resolve %v: %v", k, v); return true })
	if n := e.reads.Reads() - before; n != 1 {
		t.Fatalf("200 concurrent cold resolves made %d Vault reads, want 1", n)
	}
}

// TestNegativeAnswerIsCachedBriefly: on a broker without a pool store
// (where Vault alone says whether a key exists), "no key" is remembered
// for NegativeCacheTTL.
func TestNegativeAnswerIsCachedBriefly(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *broker.Config) { c.NegativeCacheTTL = 300 * time.Millisecond; c.Pools = nil })
	ws := e.workspc
	hosted := newKey(t, "mistral")
	e.setHosted(t, "mistral", hosted)
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"}); err != nil {
		t.Fatal(err)
	}
	before := e.reads.Reads()
	for range 20 {
		if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"}); err != nil || r.APIKey() != hosted {
			t.Fatalf("%v %v", r, err)
		}
	}
	if n := e.reads.Reads() - before; n != 0 {
		t.Fatalf("%d Vault reads for cached answers (BYOK absent, hosted present)", n)
	}
	// A BYOK key written behind keybroker's back shows once the negative
	// entry expires.
	own := newKey(t, "mistral")
	if _, err := e.rootKV.Put(ctx, broker.WorkspaceKey(ws, "mistral", broker.DefaultKeyID).VaultPath(), map[string]string{"api_key": own}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "BYOK key written out of band is resolved", func() bool {
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"})
		return err == nil && r.APIKey() == own && r.IsBYOK
	})
}

// TestRefusalIsNeverServedStale: when Vault starts refusing the reader
// (its policy no longer allows the path), a cached key is not served past
// its TTL, stale-if-error or not.
func TestRefusalIsNeverServedStale(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *broker.Config) {
		c.CacheTTL = 100 * time.Millisecond
		c.StaleIfError = time.Hour
	})
	ws := e.workspc
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil {
		t.Fatal(err)
	}
	// The operator takes the reader's access away.
	policy := "keybroker-reader-" + strings.TrimPrefix(e.mount, "byok-")
	if err := e.root.Sys().PutPolicyWithContext(ctx, policy, `path "auth/token/lookup-self" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("resolve after the reader lost access: %v, want ErrForbidden (never stale)", err)
	}
}

// TestHotKeysAreRefreshedInTheBackground: a key resolved all the time never
// misses the cache after its first read.
func TestHotKeysAreRefreshedInTheBackground(t *testing.T) {
	// The broker runs on the test's clock. Each round moves it past the
	// entry's refresh point (60-85 % of the TTL) but not its expiry, hits
	// the key (which starts the background refresh), and waits until the
	// refreshed entry is served — the reader tags each round's reads with
	// a version of their own, so the test can tell — before the next round
	// moves the clock past the old entry's expiry. Every resolve but the
	// first must be a hit.
	const ttl, rounds = 10 * time.Minute, 4
	clock := newTestClock()
	reader := &versionTaggingReader{}
	ctx := context.Background()
	e := newEnv(t, onTestClock(clock, ttl, func(r broker.KeyReader) broker.KeyReader { reader.KeyReader = r; return reader }))
	ws := e.workspc
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	resolve := func() broker.Resolution {
		t.Helper()
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	readsBefore := e.reads.Reads()
	resolve() // the first read: the one miss
	for round := 1; round <= rounds; round++ {
		// The current entry was read at (round-1)*0.9 TTL: 0.9 TTL later
		// it is due for a refresh and still fresh, and so is the refreshed
		// entry, read now, until (round+1)*0.9 TTL.
		clock.Set(time.Duration(round) * ttl * 9 / 10)
		reader.tag.Store(int64(round) * versionTag)
		waitFor(t, 30*time.Second, fmt.Sprintf("round %d's refreshed entry is served", round), func() bool {
			return resolve().Version >= round*versionTag
		})
	}
	misses := testutil.ToFloat64(e.cfg.Metrics.CacheLookups("miss"))
	hits := testutil.ToFloat64(e.cfg.Metrics.CacheLookups("hit"))
	reads := e.reads.Reads() - readsBefore
	t.Logf("hot key over %d TTLs: %.0f hits, %.0f misses, %d Vault reads", rounds, hits, misses, reads)
	if misses != 1 {
		t.Fatalf("%.0f cache misses, want 1 (the first read): hot entries must be refreshed before they expire", misses)
	}
	if reads != 1+rounds {
		t.Fatalf("%d Vault reads over %d TTLs; want %d: the first, and one refresh per TTL", reads, rounds, 1+rounds)
	}
}

// versionTag separates the versions versionTaggingReader reports per round.
const versionTag = 1000

// versionTaggingReader adds tag to the version of every key it reads, so
// that a test can tell which read an answer came from.
type versionTaggingReader struct {
	broker.KeyReader
	tag atomic.Int64
}

func (r *versionTaggingReader) Get(ctx context.Context, path string) (vault.Secret, error) {
	s, err := r.KeyReader.Get(ctx, path)
	s.Version += int(r.tag.Load())
	return s, err
}

// backgroundMarker tags the test's own resolves, so that the reader below
// can tell them from the broker's background refreshes (which do not carry
// a request's context).
type backgroundMarker struct{}

// slowCountingReader delays every Vault read a little and records the most
// background reads that were in flight at once.
type slowCountingReader struct {
	broker.KeyReader
	inFlight, maxInFlight, background atomic.Int64
}

func (r *slowCountingReader) Get(ctx context.Context, path string) (vault.Secret, error) {
	if ctx.Value(backgroundMarker{}) == nil {
		n := r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		r.background.Add(1)
		for {
			m := r.maxInFlight.Load()
			if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.KeyReader.Get(ctx, path)
}

// TestBackgroundRefreshesAreBounded: many hot keys coming due at once (as
// after a restart or a cache flush) are refreshed a few at a time, not all
// at once, and still without a cache miss.
func TestBackgroundRefreshesAreBounded(t *testing.T) {
	// The broker's clock is the test's: it stands still between the refresh
	// window and expiry however slow the machine, so the miss count is
	// exact. The TTL is long so that the cache's wall-clock eviction never
	// comes into it.
	const keys, ttl = 40, 10 * time.Minute
	clock := newTestClock()
	reader := &slowCountingReader{}
	e := newEnv(t, onTestClock(clock, ttl, func(r broker.KeyReader) broker.KeyReader { reader.KeyReader = r; return reader }))
	ctx := context.WithValue(context.Background(), backgroundMarker{}, true)
	for i := range keys {
		if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(fmt.Sprintf("%s-%d", e.workspc, i), "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range keys {
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: fmt.Sprintf("%s-%d", e.workspc, i), Provider: "openai"}); err != nil {
			t.Fatal(err)
		}
	}
	// Every entry is due for a refresh after 85 % of the TTL and expires at
	// 100 %: hit them all, from many goroutines, in between, until the
	// refreshes are done.
	clock.Set(ttl * 86 / 100)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			for range 20 {
				if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: fmt.Sprintf("%s-%d", e.workspc, i), Provider: "openai"}); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	misses := testutil.ToFloat64(e.cfg.Metrics.CacheLookups("miss"))
	t.Logf("%d hot keys due together: %d background reads, at most %d at once, %.0f misses (the %d first reads)",
		keys, reader.background.Load(), reader.maxInFlight.Load(), misses, keys)
	if got := reader.maxInFlight.Load(); got < 1 || got > 4 {
		t.Fatalf("%d background refreshes at once; want between 1 and 4", got)
	}
	if reader.background.Load() < keys/2 {
		t.Fatalf("only %d of %d due keys were refreshed in the background", reader.background.Load(), keys)
	}
	if misses != keys {
		t.Fatalf("%.0f cache misses; want %d (the first reads only)", misses, keys)
	}
}

// testClock is a broker clock (broker.Config.Now) that moves only when the
// test sets it.
type testClock struct {
	start  time.Time
	offset atomic.Int64 // nanoseconds past start
}

func newTestClock() *testClock { return &testClock{start: time.Now()} }

func (c *testClock) Now() time.Time { return c.start.Add(time.Duration(c.offset.Load())) }

// Set puts the clock d past its start.
func (c *testClock) Set(d time.Duration) { c.offset.Store(int64(d)) }

// onTestClock configures a broker for the refresh tests: the test's clock,
// a TTL long enough that the cache's wall-clock eviction never comes into
// it, metrics of its own, and the Vault reader wrapped by wrap.
func onTestClock(clock *testClock, ttl time.Duration, wrap func(broker.KeyReader) broker.KeyReader) func(*broker.Config) {
	return func(c *broker.Config) {
		c.Reader = wrap(c.Reader)
		c.CacheTTL = ttl
		c.Metrics = broker.NewMetrics(prometheus.NewRegistry())
		c.Now = clock.Now
	}
}

// TestKeyWrittenAroundKeybrokerIsNotServedUntilAdopted: a key put straight
// into Vault is no member of any pool, so resolve does not serve it (and
// the API does not list it) until the reconciler adopts it; then both do.
func TestKeyWrittenAroundKeybrokerIsNotServedUntilAdopted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	e.setHosted(t, "mistral", newKey(t, "mistral"))
	own := newKey(t, "mistral")
	ref := broker.WorkspaceKey(ws, "mistral", "out-of-band")
	if _, err := e.rootKV.Put(ctx, ref.VaultPath(), map[string]string{"api_key": own}, 0); err != nil {
		t.Fatal(err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"}); err != nil || r.IsBYOK {
		t.Fatalf("before adoption: %v %v, want the hosted key", r, err)
	}
	if _, err := e.b.GetKey(ctx, ref); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("the API knows the key before adoption: %v", err)
	}
	if rep, err := e.b.Reconcile(ctx, 0); err != nil || rep.Repaired != 1 {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"}); err != nil || r.APIKey() != own || r.KeyID != "out-of-band" {
		t.Fatalf("after adoption: %v %v", r, err)
	}
}
