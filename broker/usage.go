package broker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Usage is what a key did: resolves counted, and the last one.
type Usage struct {
	Ref        KeyRef
	Resolves   int64
	LastUsedAt time.Time
	// ByCaller are the resolves of a flush by key version and resolver
	// token (counted on the day of LastUsedAt: a flush covers seconds).
	ByCaller []CallerResolves
}

// CallerResolves counts one resolver token's resolves of one key
// version.
type CallerResolves struct {
	Version  int
	Caller   string
	Resolves int64
}

// maxCallersPerKey bounds the (version, caller) pairs a key counts apart
// on a replica; past it, resolves count under the caller "other".
const maxCallersPerKey = 256

// callerKey is one (version, caller) pair; a map lookup by it allocates
// nothing.
type callerKey struct {
	version int
	caller  string
}

// callerTally is a copy-on-write map: a resolve reads it without a lock.
type callerTally map[callerKey]*atomic.Int64

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
	callers  atomic.Pointer[callerTally]
	grow     sync.Mutex // adds a pair to callers
}

// recordCaller counts a resolve of version by caller: a map read and an
// atomic add, a lock only the first time a pair is seen.
func (c *usageCounter) recordCaller(version int, caller string) { c.addCaller(version, caller, 1) }

// addCaller adds n resolves of version by caller.
func (c *usageCounter) addCaller(version int, caller string, n int64) {
	k := callerKey{version: version, caller: caller}
	if t := c.callers.Load(); t != nil {
		if cnt := (*t)[k]; cnt != nil {
			cnt.Add(n)
			return
		}
	}
	c.grow.Lock()
	defer c.grow.Unlock()
	var cur callerTally
	if t := c.callers.Load(); t != nil {
		cur = *t
	}
	if cnt := cur[k]; cnt != nil {
		cnt.Add(n)
		return
	}
	if len(cur) >= maxCallersPerKey {
		k.caller = "other"
		if cnt := cur[k]; cnt != nil {
			cnt.Add(n)
			return
		}
	}
	next := make(callerTally, len(cur)+1)
	for kk, v := range cur {
		next[kk] = v
	}
	cnt := &atomic.Int64{}
	cnt.Add(n)
	next[k] = cnt
	c.callers.Store(&next)
}

// takeCallers empties the caller counts.
func (c *usageCounter) takeCallers() []CallerResolves {
	t := c.callers.Load()
	if t == nil {
		return nil
	}
	var out []CallerResolves
	for k, n := range *t {
		if v := n.Swap(0); v > 0 {
			out = append(out, CallerResolves{Version: k.version, Caller: k.caller, Resolves: v})
		}
	}
	return out
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
		batch = append(batch, Usage{Ref: ref, Resolves: n, LastUsedAt: time.Unix(0, c.lastUsed.Load()).UTC(), ByCaller: c.takeCallers()})
	}
	return batch
}

// giveBack returns a batch that could not be written, so that no count is
// lost.
func (u *usageBook) giveBack(batch []Usage) {
	for _, x := range batch {
		c := u.counter(x.Ref)
		c.resolves.Add(x.Resolves)
		for _, cr := range x.ByCaller {
			c.addCaller(cr.Version, cr.Caller, cr.Resolves)
		}
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

// KeyUsageReport is where a key is used (KeyUsage): per version, the
// resolves and the proxied calls since Since, by day and by resolver token
// or proxy caller.
type KeyUsageReport struct {
	Since    time.Time
	Versions []VersionUsage
}

// VersionUsage is one version's usage: totals, and each (day, caller).
type VersionUsage struct {
	Version                int
	Resolves, ProxiedCalls int64
	Days                   []DayUsage
}

// DayUsage is one caller's use of a version on one day (UTC).
type DayUsage struct {
	Day                    time.Time
	Caller                 string
	Resolves, ProxiedCalls int64
}

// UsageRow is one (version, day, caller) count a store reads back.
type UsageRow struct {
	Version int
	Day     time.Time
	Caller  string
	Count   int64
}

// KeyUsageStore reads the counts of one key.
type KeyUsageStore interface {
	// ResolvesOf are the key's resolves by version, day and resolver
	// token since since (flushed from every replica's counters).
	ResolvesOf(ctx context.Context, ref KeyRef, since time.Time) ([]UsageRow, error)
	// ProxiedCallsOf are the calls the credential proxy made with the key
	// by version, day and caller since since.
	ProxiedCallsOf(ctx context.Context, ref KeyRef, since time.Time) ([]UsageRow, error)
}

// DefaultUsageWindow is how far back KeyUsage looks without a since.
const DefaultUsageWindow = 30 * 24 * time.Hour

// KeyUsage answers where a key is used since since (zero: the last 30
// days): what a rotation or a revocation of it will touch.
func (b *Broker) KeyUsage(ctx context.Context, ref KeyRef, since time.Time) (KeyUsageReport, error) {
	if err := b.canManage(); err != nil {
		return KeyUsageReport{}, err
	}
	if _, err := b.keyProvider(ref); err != nil {
		return KeyUsageReport{}, err
	}
	us, ok := b.store.(KeyUsageStore)
	if !ok {
		return KeyUsageReport{}, fmt.Errorf("%w: the metadata store keeps no usage by version", ErrNotConfigured)
	}
	if since.IsZero() {
		since = b.now().Add(-DefaultUsageWindow)
	}
	since = since.UTC().Truncate(24 * time.Hour)
	resolves, err := us.ResolvesOf(ctx, ref, since)
	if err != nil {
		return KeyUsageReport{}, fromStore(err)
	}
	calls, err := us.ProxiedCallsOf(ctx, ref, since)
	if err != nil {
		return KeyUsageReport{}, fromStore(err)
	}
	type dayKey struct {
		version int
		day     time.Time
		caller  string
	}
	cells := map[dayKey]*DayUsage{}
	var order []dayKey
	cell := func(r UsageRow) *DayUsage {
		k := dayKey{r.Version, r.Day.UTC(), r.Caller}
		if c := cells[k]; c != nil {
			return c
		}
		c := &DayUsage{Day: k.day, Caller: r.Caller}
		cells[k] = c
		order = append(order, k)
		return c
	}
	for _, r := range resolves {
		cell(r).Resolves += r.Count
	}
	for _, r := range calls {
		cell(r).ProxiedCalls += r.Count
	}
	byVersion := map[int]*VersionUsage{}
	var versions []int
	for _, k := range order {
		v := byVersion[k.version]
		if v == nil {
			v = &VersionUsage{Version: k.version}
			byVersion[k.version] = v
			versions = append(versions, k.version)
		}
		c := cells[k]
		v.Resolves += c.Resolves
		v.ProxiedCalls += c.ProxiedCalls
		v.Days = append(v.Days, *c)
	}
	slices.SortFunc(versions, func(a, b int) int { return b - a })
	out := KeyUsageReport{Since: since}
	for _, n := range versions {
		v := byVersion[n]
		slices.SortFunc(v.Days, func(a, b DayUsage) int {
			return cmp.Or(b.Day.Compare(a.Day), strings.Compare(a.Caller, b.Caller))
		})
		out.Versions = append(out.Versions, *v)
	}
	return out, nil
}
