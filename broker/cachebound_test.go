package broker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/vault"
)

// TestMadeUpWorkspaceIDsNeverReachVault resolves 3,000 made-up workspace
// ids: their pools are empty in memory, so Vault sees one read (the hosted
// key) and the cache holds nothing for them.
func TestMadeUpWorkspaceIDsNeverReachVault(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.setHosted(t, "openai", newKey(t, "openai"))
	start := e.reads.Reads()
	for i := range 3000 {
		if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: fmt.Sprintf("rand-%06d", i), Provider: "openai"}); err != nil || r.Source != broker.SourceHosted {
			t.Fatalf("resolve: %v %v", r, err)
		}
	}
	if got := e.reads.Reads() - start; got != 1 {
		t.Fatalf("3000 made-up ids made %d Vault reads, want 1 (the hosted key)", got)
	}
	if keys, negative := e.b.CacheSize(); keys != 1 || negative != 0 {
		t.Fatalf("cache holds %d keys and %d no-key answers; want 1 and 0", keys, negative)
	}
}

// TestCacheIsBoundedUnderRandomWorkspaceIDs resolves 3,000 made-up
// workspace ids on a broker without a pool store, where each is a Vault
// read (no key, then the hosted key): memory holds at most
// MaxNegativeEntries "no key" answers, the least recently used go first,
// and the hosted key stays cached throughout.
func TestCacheIsBoundedUnderRandomWorkspaceIDs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *broker.Config) { c.MaxNegativeEntries = 500; c.NegativeCacheTTL = time.Hour; c.Pools = nil })
	e.setHosted(t, "openai", newKey(t, "openai"))
	const n = 3000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("rand-%06d", i)
	}
	start := e.reads.Reads()
	for _, ws := range ids {
		if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || r.Source != broker.SourceHosted {
			t.Fatalf("resolve %s: %v %v", ws, r, err)
		}
	}
	if got := e.reads.Reads() - start; got != n+1 {
		t.Fatalf("%d made-up ids made %d Vault reads, want %d (one each, and the hosted key once)", n, got, n+1)
	}
	keys, negative := e.b.CacheSize()
	if negative != 500 || keys != 1 {
		t.Fatalf("cache holds %d keys and %d no-key answers; want 1 and the bound, 500", keys, negative)
	}
	// The last 500 ids are still remembered; the first 500 were pushed out.
	mark := e.reads.Reads()
	for _, ws := range ids[n-500:] {
		_, _ = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	}
	if got := e.reads.Reads() - mark; got != 0 {
		t.Fatalf("the 500 most recent ids made %d Vault reads, want 0", got)
	}
	mark = e.reads.Reads()
	for _, ws := range ids[:500] {
		_, _ = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	}
	if got := e.reads.Reads() - mark; got != 500 {
		t.Fatalf("the 500 oldest ids made %d Vault reads, want 500 (evicted)", got)
	}
}

// concurrencyReader is the real reader, recording how many reads are in
// flight at once.
type concurrencyReader struct {
	broker.KeyReader
	now, peak atomic.Int32
}

func (c *concurrencyReader) Get(ctx context.Context, path string) (vault.Secret, error) {
	n := c.now.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer c.now.Add(-1)
	time.Sleep(5 * time.Millisecond) // a Vault a little slow: reads overlap
	return c.KeyReader.Get(ctx, path)
}

func TestColdReadsHaveAConcurrencyBound(t *testing.T) {
	ctx := context.Background()
	var reader *concurrencyReader
	e := newEnv(t, func(c *broker.Config) {
		reader = &concurrencyReader{KeyReader: c.Reader}
		c.Reader, c.MaxColdReads = reader, 4
		c.Pools = nil // every made-up workspace is a Vault read
	})
	e.setHosted(t, "openai", newKey(t, "openai"))
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: fmt.Sprintf("cold-%d", i), Provider: "openai"}); err != nil {
				t.Errorf("resolve: %v", err)
			}
		})
	}
	wg.Wait()
	if p := reader.peak.Load(); p > 4 || p < 2 {
		t.Fatalf("%d Vault reads in flight at once, bound 4 (and reads did overlap: at least 2)", p)
	}
}
