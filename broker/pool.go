package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"sync/atomic"
	"time"
)

// DefaultMaxKeysPerPool is how many keys a pool holds at most unless
// Config.MaxKeysPerPool says otherwise.
const DefaultMaxKeysPerPool = 10

// PoolStore is what the broker needs to know a pool's members: one pool
// the first time a resolve needs it and when a change is announced
// (poolcache.go); a resolve of a cached pool never queries it.
type PoolStore interface {
	// Ping says whether the store answers (a replica is ready once it did).
	Ping(ctx context.Context) error
	// PoolMembers returns the keys of one pool with a confirmed version.
	PoolMembers(ctx context.Context, pool PoolRef) ([]KeyRecord, error)
	// FailingKeys names every active key a provider refused (the prober
	// re-tests them).
	FailingKeys(ctx context.Context) ([]KeyRef, error)
}

// member is a key as resolve sees it: enough to choose, and its cache key
// computed once.
type member struct {
	ref       KeyRef
	cacheKey  CacheKey
	priority  int
	disabled  bool
	models    []string
	createdAt time.Time
	// version and fingerprint are the metadata's: the fingerprint is
	// given out with the version it belongs to only.
	version     int
	fingerprint string
	// failing: a provider refused the key; cooldownUntil (unix
	// nanoseconds, 0: none) keeps it out of the pool until then;
	// cooldowns counts the consecutive ones (the backoff).
	failing       bool
	cooldownUntil int64
	cooldowns     int
	// expiresAt (unix nanoseconds, 0: none): from then on the key is
	// not served.
	expiresAt int64
}

// expiredAt says whether the member's key has expired at nowNs (unix
// nanoseconds).
func (m *member) expiredAt(nowNs int64) bool {
	return m.expiresAt != 0 && nowNs >= m.expiresAt
}

// cooledUntil is when m's cooldown ends (unix nanoseconds; 0: it has
// none) in the chain being walked: for everyone, or in cooled, this
// replica's cooldowns for the workspace or the caller (nil: none). Resolve
// and Effective both ask it.
func (m *member) cooledUntil(cooled map[KeyRef]int64) int64 {
	if cooled == nil {
		return m.cooldownUntil
	}
	return max(m.cooldownUntil, cooled[m.ref])
}

// coolingAt says whether the member is cooling down at now.
func (m *member) coolingAt(now time.Time) bool {
	return m.cooldownUntil != 0 && now.UnixNano() < m.cooldownUntil
}

// health is the member's health at now.
func (m *member) health(now time.Time) string {
	switch {
	case m.failing:
		return HealthFailing
	case m.coolingAt(now):
		return HealthCoolingDown
	}
	return HealthHealthy
}

// fingerprintOf is the member's fingerprint if version is the one its
// metadata describes ("" for another: a write around keybroker).
func (m *member) fingerprintOf(version int) string {
	if version == m.version {
		return m.fingerprint
	}
	return ""
}

// allows says whether the member may serve a call for model. A key with
// an allow-list serves only the models on it, so a call that names no
// model is not served by it.
func (m *member) allows(model string) bool {
	return len(m.models) == 0 || slices.Contains(m.models, model)
}

// pool is one pool's members, by priority, then age, then key id, never
// changed once built (a change builds a new pool); turn takes turns among
// the usable keys of the lowest priority.
type pool struct {
	members []member
	turn    atomic.Uint64
}

func newPool(recs []KeyRecord) *pool {
	p := &pool{members: make([]member, 0, len(recs))}
	for _, r := range recs {
		ref := r.Ref()
		m := member{ref: ref, cacheKey: ref.CacheKey(), priority: r.Priority, disabled: r.Disabled,
			models: slices.Clone(r.Models), createdAt: r.CreatedAt, version: r.Version, fingerprint: r.Fingerprint,
			failing: r.Failing, cooldowns: r.Cooldowns}
		if !r.CooldownUntil.IsZero() {
			m.cooldownUntil = r.CooldownUntil.UnixNano()
		}
		if !r.ExpiresAt.IsZero() {
			m.expiresAt = r.ExpiresAt.UnixNano()
		}
		p.members = append(p.members, m)
	}
	slices.SortFunc(p.members, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), a.createdAt.Compare(b.createdAt), cmp.Compare(a.ref.KeyID, b.ref.KeyID))
	})
	return p
}

// ErrPoolsNotLoaded: this replica has not read the pools yet (PostgreSQL
// unreachable since start), so it cannot know which keys may serve (503).
var ErrPoolsNotLoaded = errors.Join(ErrUnavailable, errors.New("key pools not loaded yet"))

// Load reads every workspace's settings into this replica's memory and
// forgets the pools it holds (each is read again when next needed): at
// start, and after the invalidation listener reconnected (a change may
// have been missed).
func (b *Broker) Load(ctx context.Context) error {
	return errors.Join(b.LoadSettings(ctx), b.LoadPools(ctx))
}

// LoadPools forgets the pools this replica holds, with their members'
// cached answers, once PostgreSQL answers: from then on a pool is read
// when a resolve first needs it.
func (b *Broker) LoadPools(ctx context.Context) error {
	if b.pools == nil {
		return nil
	}
	if err := b.poolStore.Ping(ctx); err != nil {
		return fmt.Errorf("load key pools: %w", fromStore(err))
	}
	b.pools.reset(true)
	return nil
}

// PoolsLoaded reports whether this replica can read pools (PostgreSQL
// answered since start).
func (b *Broker) PoolsLoaded() bool {
	return b.pools == nil || b.pools.isReady()
}

// PoolChanged reads one pool again if this replica holds it (a change
// announced by a replica, this one included); a pool it does not hold is
// read when next needed.
func (b *Broker) PoolChanged(ctx context.Context, ref PoolRef) error {
	if b.pools == nil {
		return nil
	}
	return b.pools.refresh(ctx, ref)
}

// PoolCacheStats are the pool cache's figures: pools held, reads from
// PostgreSQL and evictions since start.
func (b *Broker) PoolCacheStats() (held int, reads, evictions int64) {
	if b.pools == nil {
		return 0, 0, 0
	}
	return b.pools.size(), b.pools.reads.Load(), b.pools.evictions.Load()
}

// poolChangedHere reads a pool this replica just changed, so that its
// next resolve sees the change before the announcement comes back (and a
// pool written here is held, as a replica in mode all resolves what it
// writes). A failure is logged: the announcement, or the next reconnect,
// repairs it.
func (b *Broker) poolChangedHere(ctx context.Context, ref PoolRef) {
	if b.pools == nil {
		return
	}
	if _, err := b.pools.fresh(context.WithoutCancel(ctx), ref); err != nil {
		b.log.Warn("could not re-read a pool after changing it; the announcement will", "pool", ref.String(), "error", err)
	}
}

// poolOutcome says what a pool could do for a call.
type poolOutcome int

const (
	poolServed poolOutcome = iota
	// poolEmpty: the pool holds no key (or none that Vault still has).
	poolEmpty
	// poolUnavailable: it holds keys, none usable (disabled, failing).
	poolUnavailable
	// poolModelExcluded: it holds usable keys, none allowing the model.
	poolModelExcluded
	// poolCoolingDown: it holds keys that would serve the call, all
	// cooling down (for everyone, or for this workspace or caller alone).
	poolCoolingDown
	// poolExpired: the keys that would serve the call have all expired.
	poolExpired
)

// fromPool picks the key to serve from a pool: the usable keys of the
// lowest priority take turns; a key the pool lists but Vault no longer
// has gives way to the pool's other usable keys. cooled are this
// replica's cooldowns for the workspace and the caller (nil: none). When every key
// that would serve is cooling down, the outcome is poolCoolingDown and
// coolEnd (unix nanoseconds) the earliest end of their cooldowns.
func (b *Broker) fromPool(ctx context.Context, pr PoolRef, model string, cooled map[KeyRef]int64) (e *cacheEntry, chosen *member, out poolOutcome, coolEnd int64, err error) {
	var p *pool
	if b.poolStore == nil {
		// Without a pool store (a broker on Vault alone: tests,
		// benchmarks) each pool is its key "default", as in v1, and Vault
		// says whether it exists.
		ref := pr.Key(DefaultKeyID)
		p = &pool{members: []member{{ref: ref, cacheKey: ref.CacheKey(), priority: 100}}}
	} else {
		if p, err = b.pools.get(ctx, pr); err != nil {
			return nil, nil, 0, 0, err
		}
		if p == nil {
			return nil, nil, poolEmpty, 0, nil
		}
	}
	// The clock is read only when a member is cooling down or has an
	// expiry: a healthy pool without one costs no clock read here.
	var nowNs int64
	clock := func() int64 {
		if nowNs == 0 {
			nowNs = b.now().UnixNano()
		}
		return nowNs
	}
	expired := func(m *member) bool { return m.expiresAt != 0 && m.expiredAt(clock()) }
	// coolingUntil is when m's cooldown ends, for everyone or for this
	// workspace or caller (0: it is not cooling down).
	coolingUntil := func(m *member) int64 {
		until := m.cooledUntil(cooled)
		if until == 0 {
			return 0
		}
		if clock() < until {
			return until
		}
		return 0
	}
	usable := func(m *member) bool {
		return !m.disabled && !m.failing && m.allows(model) && !expired(m) && coolingUntil(m) == 0
	}
	n, top, excluded, anyExpired := 0, 0, false, false
	for i := range p.members {
		m := &p.members[i]
		if m.disabled || m.failing {
			continue
		}
		if !m.allows(model) {
			excluded = true
			continue
		}
		if expired(m) {
			anyExpired = true
			continue
		}
		if until := coolingUntil(m); until != 0 {
			if coolEnd == 0 || until < coolEnd {
				coolEnd = until
			}
			continue
		}
		if n == 0 {
			top = m.priority
		} else if m.priority != top {
			break
		}
		n++
	}
	if n == 0 {
		switch {
		case coolEnd != 0:
			return nil, nil, poolCoolingDown, coolEnd, nil
		case excluded:
			return nil, nil, poolModelExcluded, 0, nil
		case anyExpired:
			return nil, nil, poolExpired, 0, nil
		}
		return nil, nil, poolUnavailable, 0, nil
	}
	pick := 0
	if n > 1 {
		pick = int(p.turn.Add(1) % uint64(n))
	}
	for i := range p.members {
		m := &p.members[i]
		if !usable(m) {
			continue
		}
		if pick == 0 {
			chosen = m
			break
		}
		pick--
	}
	e, err = b.lookup(ctx, chosen)
	if err != nil || e.found {
		return e, chosen, poolServed, 0, err
	}
	// Listed, but gone from Vault (deleted around keybroker): the others.
	for i := range p.members {
		m := &p.members[i]
		if m == chosen || !usable(m) {
			continue
		}
		if e, err = b.lookup(ctx, m); err != nil || e.found {
			return e, m, poolServed, 0, err
		}
	}
	return nil, nil, poolEmpty, 0, nil
}
