package broker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPoolCacheSize is how many pools a replica keeps in memory unless
// Config.PoolCacheSize says otherwise: a platform's active pools, not all
// of them (docs/benchmarks.md, "platform scale").
const DefaultPoolCacheSize = 200_000

// poolReadTimeout bounds one read of a pool from PostgreSQL, whoever
// waits for it.
const poolReadTimeout = 10 * time.Second

// poolCache is this replica's copy of the pools it has used: a pool is read
// from PostgreSQL the first time a resolve needs it (one read per pool at
// a time, however many resolves wait), kept exact by the announcements of
// changes (a cached pool is read again; one not cached is read when next
// needed), and forgotten, with its members' cached answers, when more than
// max are held and it was not used since the last sweep (the clock
// algorithm). A pool without a key is cached too (nil), so that the chain
// walk of a workspace with no key of its own reads nothing.
type poolCache struct {
	store PoolStore
	max   int
	// forget drops the cached answers of an evicted pool's members.
	forget func(CacheKey)

	mu    sync.RWMutex
	ready bool // PostgreSQL answered since start: pools can be read
	pools map[PoolRef]*cachedPool
	loads map[PoolRef]*poolLoad
	// reads and evictions count for the metrics.
	reads, evictions atomic.Int64
}

// cachedPool is a cached pool (nil: it holds no key) and whether it was
// used since the last sweep.
type cachedPool struct {
	p    *pool
	used atomic.Bool
}

// poolLoad is a read of one pool in flight; dirty: a change was announced
// during it, so it reads again before it is cached.
type poolLoad struct {
	done  chan struct{}
	p     *pool
	err   error
	dirty bool
}

func newPoolCache(store PoolStore, max int, forget func(CacheKey)) *poolCache {
	if max <= 0 {
		max = DefaultPoolCacheSize
	}
	return &poolCache{store: store, max: max, forget: forget, pools: map[PoolRef]*cachedPool{}, loads: map[PoolRef]*poolLoad{}}
}

// peek returns the pool if it is cached, without reading it.
func (c *poolCache) peek(ref PoolRef) (*pool, bool) {
	c.mu.RLock()
	e, ok := c.pools[ref]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return e.p, true
}

// get returns ref's pool (nil: it holds no key), reading it when it is
// not cached; ErrPoolsNotLoaded before PostgreSQL answered once.
func (c *poolCache) get(ctx context.Context, ref PoolRef) (*pool, error) {
	c.mu.RLock()
	e, ok := c.pools[ref]
	ready := c.ready
	c.mu.RUnlock()
	if ok {
		if !e.used.Load() {
			e.used.Store(true)
		}
		return e.p, nil
	}
	if !ready {
		return nil, ErrPoolsNotLoaded
	}
	return c.read(ctx, ref, false, false)
}

// refresh reads ref's pool again if it is cached or being read (a change
// was announced); a pool not cached is read when next needed.
func (c *poolCache) refresh(ctx context.Context, ref PoolRef) error {
	_, err := c.read(ctx, ref, true, true)
	return err
}

// fresh reads ref's pool now, cached or not (a read in flight reads
// again): for a pool this replica just changed.
func (c *poolCache) fresh(ctx context.Context, ref PoolRef) (*pool, error) {
	return c.read(ctx, ref, false, true)
}

// read reads ref's pool and caches it: once at a time per pool, again when
// a change is announced during the read. onlyCached: a refresh, which
// reads only a pool already cached; changed: what a read in flight got
// may be older than a change, so it reads again.
func (c *poolCache) read(ctx context.Context, ref PoolRef, onlyCached, changed bool) (*pool, error) {
	c.mu.Lock()
	// A read that finished since the caller looked is as good as a new
	// one, unless a change came after it.
	if e, ok := c.pools[ref]; ok && !changed {
		c.mu.Unlock()
		return e.p, nil
	}
	if l, ok := c.loads[ref]; ok {
		if changed {
			l.dirty = true
		}
		if onlyCached {
			c.mu.Unlock()
			return nil, nil
		}
		c.mu.Unlock()
		select {
		case <-l.done:
			return l.p, l.err
		case <-ctx.Done():
			return nil, fmt.Errorf("read pool %s: %w", ref, ctx.Err())
		}
	}
	if _, cached := c.pools[ref]; onlyCached && !cached {
		c.mu.Unlock()
		return nil, nil
	}
	l := &poolLoad{done: make(chan struct{})}
	c.loads[ref] = l
	c.mu.Unlock()

	// The read is the pool's, not the caller's: a caller that gives up
	// does not fail the others waiting for it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), poolReadTimeout)
	defer cancel()
	for {
		recs, err := c.store.PoolMembers(rctx, ref)
		c.reads.Add(1)
		c.mu.Lock()
		if err == nil && l.dirty {
			l.dirty = false
			c.mu.Unlock()
			continue
		}
		delete(c.loads, ref)
		if err != nil {
			// A cached copy is kept (resolves go on from it while
			// PostgreSQL is away); the next announcement or reconnect
			// reads it again.
			l.err = fmt.Errorf("read pool %s: %w", ref, fromStore(err))
		} else {
			if len(recs) > 0 {
				l.p = newPool(recs)
			}
			e := &cachedPool{p: l.p}
			e.used.Store(true)
			c.pools[ref] = e
			c.evictLocked()
		}
		c.mu.Unlock()
		close(l.done)
		return l.p, l.err
	}
}

// evictLocked sweeps when more than max pools are cached: a pool used
// since the last sweep is spared once (its mark cleared), the others are
// forgotten, until a tenth of the room is free.
func (c *poolCache) evictLocked() {
	if len(c.pools) <= c.max {
		return
	}
	target := c.max - c.max/10
	for pass := 0; len(c.pools) > target && pass < 2; pass++ {
		for ref, e := range c.pools {
			if len(c.pools) <= target {
				break
			}
			if pass == 0 && e.used.Load() {
				e.used.Store(false)
				continue
			}
			c.dropLocked(ref, e)
		}
	}
}

// dropLocked forgets a cached pool and its members' cached answers.
func (c *poolCache) dropLocked(ref PoolRef, e *cachedPool) {
	delete(c.pools, ref)
	c.evictions.Add(1)
	if e.p != nil && c.forget != nil {
		for i := range e.p.members {
			c.forget(e.p.members[i].cacheKey)
		}
	}
}

// reset forgets every cached pool (their answers too) and marks the reads
// in flight dirty: after the invalidation listener reconnected, a change
// may have been missed. ready says PostgreSQL answered.
func (c *poolCache) reset(ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref, e := range c.pools {
		c.dropLocked(ref, e)
	}
	for _, l := range c.loads {
		l.dirty = true
	}
	c.ready = c.ready || ready
}

// dropScope forgets every cached pool of a scope (a purge), returning
// their members' cache keys.
func (c *poolCache) dropScope(s Scope) []CacheKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []CacheKey
	for ref, e := range c.pools {
		if ref.ScopeKind == s.Kind && ref.ScopeID == s.ID {
			if e.p != nil {
				for _, mem := range e.p.members {
					keys = append(keys, mem.cacheKey)
				}
			}
			delete(c.pools, ref)
		}
	}
	for ref, l := range c.loads {
		if ref.ScopeKind == s.Kind && ref.ScopeID == s.ID {
			l.dirty = true
		}
	}
	return keys
}

// size is how many pools are cached.
func (c *poolCache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pools)
}

// isReady says whether PostgreSQL answered since start.
func (c *poolCache) isReady() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}
