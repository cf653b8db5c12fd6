package broker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keybroker/keybroker/broker"
)

// gatedPools is the real store with a gate on pool reads: while closed, a
// read's answer, already read from PostgreSQL, waits before it is returned
// (a slow answer, on demand); reads counts them.
type gatedPools struct {
	broker.PoolStore
	reads atomic.Int64
	mu    sync.Mutex
	gate  chan struct{} // nil: open
	began chan struct{} // receives once per read that waits at the gate
}

func (g *gatedPools) PoolMembers(ctx context.Context, ref broker.PoolRef) ([]broker.KeyRecord, error) {
	g.reads.Add(1)
	recs, err := g.PoolStore.PoolMembers(ctx, ref)
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.began <- struct{}{}
		<-gate
	}
	return recs, err
}

func (g *gatedPools) close() {
	g.mu.Lock()
	g.gate, g.began = make(chan struct{}), make(chan struct{}, 16)
	g.mu.Unlock()
}

func (g *gatedPools) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

// TestPoolsAreReadWhenFirstNeededOnceEach: a replica reads no pool at
// start; 50 concurrent resolves of a pool it does not hold read it once;
// a pool without keys is held too (no read for the next resolve).
func TestPoolsAreReadWhenFirstNeededOnceEach(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	addKey(t, e, broker.WorkspaceScope(e.workspc).Pool("openai"), "a", 100, "")
	gated := &gatedPools{PoolStore: e.store}
	b := e.another(t, func(c *broker.Config) { c.Pools = gated })
	if held, _, _ := b.PoolCacheStats(); held != 0 || gated.reads.Load() != 0 {
		t.Fatalf("at start: %d pools held, %d read", held, gated.reads.Load())
	}
	gated.close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"})
			errs <- err
		})
	}
	<-gated.began // the one read is in flight; every resolve waits for it
	gated.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := gated.reads.Load(); n != 1 {
		t.Fatalf("50 concurrent resolves of a cold pool read it %d times, want 1", n)
	}
	// Anthropic: the workspace has no key and there is no hosted one; the
	// empty pools are held.
	for range 2 {
		if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "anthropic"}); err == nil {
			t.Fatal("a provider without a key resolved")
		}
	}
	if n := gated.reads.Load(); n != 3 {
		t.Fatalf("two resolves of a provider without keys made %d reads, want 2 (the workspace's pool and the hosted one, once)", n-1)
	}
}

// TestAChangeDuringAPoolReadIsNotLost: a pool read that began before a
// key was added is read again before it is held, so the replica serves
// the new key; an announced change reads a held pool again.
func TestAChangeDuringAPoolReadIsNotLost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	pool := broker.WorkspaceScope(e.workspc).Pool("openai")
	addKey(t, e, pool, "a", 100, broker.KeyDisabled)
	gated := &gatedPools{PoolStore: e.store}
	b := e.another(t, func(c *broker.Config) { c.Pools = gated })
	gated.close()
	done := make(chan error, 1)
	go func() {
		_, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"})
		done <- err
	}()
	<-gated.began
	// Another replica adds a usable key; its announcement reaches this
	// one while the read is held at the gate.
	addKey(t, e, pool, "b", 100, "")
	if err := b.PoolChanged(ctx, pool); err != nil {
		t.Fatal(err)
	}
	gated.open()
	if err := <-done; err != nil {
		t.Fatalf("the resolve that began before the key was added: %v (the stale read was held)", err)
	}
	// A held pool is read again on an announcement: disabling b leaves
	// nothing to serve.
	state := broker.KeyDisabled
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("b"), State: &state}); err != nil {
		t.Fatal(err)
	}
	if err := b.PoolChanged(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err == nil {
		t.Fatal("a disabled key served after the announcement")
	}
}

// TestThePoolCacheIsBounded: beyond PoolCacheSize the pools not used
// since the last sweep are forgotten with their cached answers, and read
// again when needed; a reconnect forgets every pool.
func TestThePoolCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	var workspaces []string
	for i := range 30 {
		ws := fmt.Sprintf("%s-%02d", e.workspc, i)
		workspaces = append(workspaces, ws)
		addKey(t, e, broker.WorkspaceScope(ws).Pool("openai"), "a", 100, "")
	}
	gated := &gatedPools{PoolStore: e.store}
	b := e.another(t, func(c *broker.Config) { c.Pools = gated; c.PoolCacheSize = 10 })
	for _, ws := range workspaces {
		if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil {
			t.Fatal(err)
		}
	}
	held, reads, evictions := b.PoolCacheStats()
	if held > 10 || evictions < 20 || reads != 30 {
		t.Fatalf("after 30 pools with room for 10: %d held, %d read, %d evicted", held, reads, evictions)
	}
	// The first pool was forgotten: resolving it reads it again (its
	// cached answer went with it, so Vault is read too).
	before := e.reads.Reads()
	if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: workspaces[0], Provider: "openai"}); err != nil {
		t.Fatal(err)
	}
	if _, r, _ := b.PoolCacheStats(); r != reads+1 || e.reads.Reads() == before {
		t.Fatalf("a forgotten pool: %d reads (was %d), Vault reads %d -> %d", r, reads, before, e.reads.Reads())
	}
	if err := b.LoadPools(ctx); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := b.PoolCacheStats(); held != 0 {
		t.Fatalf("after a reconnect's reload: %d pools held", held)
	}
}
