package broker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Usage is what a key did: resolves counted, and the last one.
type Usage struct {
	Ref        KeyRef
	Resolves   int64
	LastUsedAt time.Time
}

// IdleAfter is how long a key may go unused before it is flagged idle.
const IdleAfter = 90 * 24 * time.Hour

// UsageStore keeps the totals: batches from every replica are added up.
type UsageStore interface {
	AddUsage(ctx context.Context, batch []Usage) error
	UsageOf(ctx context.Context, scope ScopeKind, scopeID string) (map[string]Usage, error)
}

// usageCounter counts one key's resolves in memory; a cache entry holds a
// pointer to its key's counter, so a hit counts with two atomic stores
// and no allocation or lock.
type usageCounter struct {
	resolves atomic.Int64
	lastUsed atomic.Int64 // unix nanoseconds
}

func (c *usageCounter) record(now time.Time) {
	c.resolves.Add(1)
	c.lastUsed.Store(now.UnixNano())
}

// usageBook holds the counters of the keys this replica served.
type usageBook struct {
	mu    sync.Mutex
	byRef map[KeyRef]*usageCounter
}

// counter returns ref's counter (on a cache miss, not per resolve).
func (u *usageBook) counter(ref KeyRef) *usageCounter {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byRef == nil {
		u.byRef = make(map[KeyRef]*usageCounter)
	}
	c := u.byRef[ref]
	if c == nil {
		c = &usageCounter{}
		u.byRef[ref] = c
	}
	return c
}

// take empties every counter into a batch. Counters stay in the book
// (cache entries point to them): one per key this replica served, which
// real keys bound, not made-up ids (only found keys are counted).
func (u *usageBook) take() []Usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	var batch []Usage
	for ref, c := range u.byRef {
		n := c.resolves.Swap(0)
		if n == 0 {
			continue
		}
		batch = append(batch, Usage{Ref: ref, Resolves: n, LastUsedAt: time.Unix(0, c.lastUsed.Load()).UTC()})
	}
	return batch
}

// giveBack returns a batch that could not be written, so that no count is
// lost.
func (u *usageBook) giveBack(batch []Usage) {
	for _, x := range batch {
		c := u.counter(x.Ref)
		c.resolves.Add(x.Resolves)
		if last := x.LastUsedAt.UnixNano(); last > c.lastUsed.Load() {
			c.lastUsed.Store(last)
		}
	}
}

// FlushUsage writes the resolves counted since the last flush, in one
// batch. When the store cannot take it, the counts are kept for the next
// flush.
func (b *Broker) FlushUsage(ctx context.Context) error {
	if b.usageStore == nil {
		return nil
	}
	batch := b.usage.take()
	if len(batch) == 0 {
		return nil
	}
	if err := b.usageStore.AddUsage(ctx, batch); err != nil {
		b.usage.giveBack(batch)
		return fmt.Errorf("flush usage: %w", fromStore(err))
	}
	return nil
}

// RunUsageFlusher flushes the usage every interval until ctx is done, and
// once more then.
func (b *Broker) RunUsageFlusher(ctx context.Context, every time.Duration) {
	if b.usageStore == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := b.FlushUsage(ctx); err != nil {
				b.log.Warn("could not write key usage; kept for the next flush", "error", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := b.FlushUsage(fctx); err != nil {
				b.log.Warn("could not write key usage at shutdown", "error", err)
			}
			cancel()
			return
		}
	}
}
