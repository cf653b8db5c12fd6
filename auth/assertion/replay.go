package assertion

import (
	"container/heap"
	"hash/maphash"
	"sync"
	"time"
)

// replayCache remembers the jti of one platform's accepted assertions until
// they expire. It holds at most max live entries: when full of live ones it
// refuses new assertions (never forgets a live jti early, which would open
// a replay).
//
// A jti is kept as a 64-bit keyed hash (a random seed per process): a
// collision can only refuse a fresh assertion, with odds negligible at the
// bound, and never accept a replay.
type replayCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	max  int
	seen map[uint64]int64 // hash → expiry (unix seconds)
	exp  expiryHeap
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seed: maphash.MakeSeed(), max: max, seen: make(map[uint64]int64)}
}

// outcome of replayCache.add.
type outcome int

const (
	added outcome = iota
	replayed
	full
)

// add records jti until until, unless it is already recorded.
func (c *replayCache) add(jti string, until, now time.Time) outcome {
	h := maphash.String(c.seed, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := now.Unix()
	for len(c.exp) > 0 && c.exp[0].until < n {
		e := heap.Pop(&c.exp).(expiry)
		if c.seen[e.h] == e.until {
			delete(c.seen, e.h)
		}
	}
	if u, ok := c.seen[h]; ok && u >= n {
		return replayed
	}
	if len(c.seen) >= c.max {
		return full
	}
	c.seen[h] = until.Unix()
	heap.Push(&c.exp, expiry{until: until.Unix(), h: h})
	return added
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiry struct {
	until int64
	h     uint64
}

// expiryHeap is a min-heap of expiries.
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
