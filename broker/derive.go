package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/keybroker/keybroker/providers"
)

// Derived credentials (docs/credentials.md): for a provider with a
// Deriver, resolve hands out a short-lived credential minted from the key,
// never the key itself (unless the operator exposes the provider's
// long-lived credentials). A minted credential is cached per key and
// version until its refresh window; one mint per key runs at a time
// (every caller of a cold key waits for it), at most MaxMintsInFlight per
// replica; every change of the key and every report of a problem with it
// drop it.

// ErrMintFailed: the provider's token service did not mint a short-lived
// credential from the key (502; the cause is in the log, never a field's
// value).
var ErrMintFailed = errors.New("could not mint a short-lived credential from the key")

// ErrMintBusy: MaxMintsInFlight mints are in flight on this replica (503
// with Retry-After).
var ErrMintBusy = errors.New("too many short-lived credentials are being minted")

// DefaultMaxMintsInFlight bounds the mints in flight on one replica.
const DefaultMaxMintsInFlight = 16

// mintTimeout bounds one mint: it is shared by every caller waiting for
// the key, so it runs without the first caller's context.
const mintTimeout = 30 * time.Second

// Refresh window: a minted credential is handed out until its remaining
// life falls below the larger of refreshShare of its lifetime and
// refreshFloor, capped at half its lifetime (a credential of 2 minutes is
// re-minted after 1).
const (
	refreshShare = 5 // 1/5: 20 %
	refreshFloor = 5 * time.Minute
)

// refreshAt is when a credential minted at minted, expiring at expires,
// is re-minted.
// never is the refresh time of a credential that does not expire.
var never = time.Unix(1<<62, 0)

func refreshAt(minted, expires time.Time) time.Time {
	life := expires.Sub(minted)
	if life <= 0 {
		return minted
	}
	window := min(max(life/refreshShare, refreshFloor), life/2)
	return expires.Add(-window)
}

// mints is the cache of derived credentials and the mints in flight.
type mints struct {
	mu sync.RWMutex // a hit takes the read lock
	m  map[CacheKey]*mintSlot
	// flight makes one mint per key at a time; slots bounds the mints in
	// flight.
	flight singleflight.Group
	slots  chan struct{}
	env    func(provider string) providers.MintEnv
	// exposed are the providers whose long-lived credential resolve hands
	// out instead of minting.
	exposed map[string]bool
	// gen changes on every forget: a cache entry's fast copy of its
	// minted credential (cacheEntry.minted) is good only while gen is
	// the one it was taken at.
	gen atomic.Uint64
}

// mintedHit is a cache entry's copy of its key's minted credential, read
// without a lock on a hit.
type mintedHit struct {
	derived   providers.Derived
	refreshAt time.Time
	gen       uint64
}

// mintSlot is one key's minted credential. A change of the key replaces
// the slot (forget): a mint begun before it is then not cached.
type mintSlot struct {
	version   int
	derived   providers.Derived
	refreshAt time.Time
	mintedAt  time.Time
	held      bool
}

// reportedRemintAfter is how old a minted credential must be for a report
// of a problem with its key to drop it: a report says the credential may
// be bad (a revoked session), but whoever sends reports — a tenant of a
// shared key, a sandbox whose calls the proxy reports — must not make
// keybroker call the token service more than about twice a minute per key.
const reportedRemintAfter = 30 * time.Second

func newMints(maxInFlight int, httpClient *http.Client, endpoints map[string]map[string]string, exposed []string) *mints {
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxMintsInFlight
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: mintTimeout}
	}
	m := &mints{m: map[CacheKey]*mintSlot{}, slots: make(chan struct{}, maxInFlight), exposed: map[string]bool{}}
	m.env = func(provider string) providers.MintEnv {
		return providers.MintEnv{HTTP: httpClient, Endpoints: endpoints[provider]}
	}
	for _, p := range exposed {
		m.exposed[p] = true
	}
	return m
}

// forget drops key's minted credential and makes a mint of it in flight
// stale (not cached; the callers that come next mint again).
func (m *mints) forget(key CacheKey) {
	m.mu.Lock()
	_, had := m.m[key]
	delete(m.m, key)
	m.gen.Add(1)
	m.mu.Unlock()
	if had {
		m.flight.Forget(string(key))
	}
}

// forgetReported drops key's minted credential after a report of a
// problem with the key, unless it was minted less than
// reportedRemintAfter before now; it reports whether it dropped one.
func (m *mints) forgetReported(key CacheKey, now time.Time) bool {
	m.mu.RLock()
	s := m.m[key]
	young := s != nil && s.held && now.Sub(s.mintedAt) < reportedRemintAfter
	m.mu.RUnlock()
	if s == nil || young {
		return false
	}
	m.forget(key)
	return true
}

// forgetAll drops every minted credential (a flush).
func (m *mints) forgetAll() {
	m.mu.Lock()
	keys := make([]CacheKey, 0, len(m.m))
	for k := range m.m {
		keys = append(keys, k)
	}
	clear(m.m)
	m.gen.Add(1)
	m.mu.Unlock()
	for _, k := range keys {
		m.flight.Forget(string(k))
	}
}

// slot returns key's slot, creating it.
func (m *mints) slot(key CacheKey) *mintSlot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.m[key]
	if s == nil {
		s = &mintSlot{}
		m.m[key] = s
	}
	return s
}

// derive returns the short-lived credential of e, the cache entry of the
// key m, minted from it by p's Deriver on a miss or past the refresh
// window (at now, the resolve's clock reading).
func (b *Broker) derive(ctx context.Context, p *providers.Provider, m *member, e *cacheEntry, now time.Time) (providers.Derived, error) {
	key := m.cacheKey
	gen := b.mints.gen.Load()
	if h := e.minted.Load(); h != nil && h.gen == gen && now.Before(h.refreshAt) {
		return h.derived, nil // the hit: no lock, no map
	}
	b.mints.mu.RLock()
	s := b.mints.m[key]
	if s != nil && s.held && s.version == e.version && now.Before(s.refreshAt) {
		d := s.derived
		e.minted.Store(&mintedHit{derived: d, refreshAt: s.refreshAt, gen: gen})
		b.mints.mu.RUnlock()
		return d, nil
	}
	var old providers.Derived
	oldValid := s != nil && s.held && s.version == e.version && now.Before(s.derived.ExpiresAt)
	if oldValid {
		old = s.derived
	}
	b.mints.mu.RUnlock()
	v, err, _ := b.mints.flight.Do(string(key), func() (any, error) {
		// Another caller may have minted while this one waited.
		slot := b.mints.slot(key)
		b.mints.mu.Lock()
		if slot.held && slot.version == e.version && b.now().Before(slot.refreshAt) {
			d := slot.derived
			b.mints.mu.Unlock()
			return d, nil
		}
		b.mints.mu.Unlock()
		select {
		case b.mints.slots <- struct{}{}:
		default:
			b.metrics.minted(m.ref.Provider, "busy")
			return nil, fmt.Errorf("mint for %s: %w (at most %d at once)", m.ref, ErrMintBusy, cap(b.mints.slots))
		}
		defer func() { <-b.mints.slots }()
		ctx, span := tracer.Start(context.WithoutCancel(ctx), "keybroker mint", trace.WithAttributes(
			attribute.String("keybroker.scope", string(m.ref.ScopeKind)), attribute.String("keybroker.provider", m.ref.Provider)))
		defer span.End()
		ctx, cancel := context.WithTimeout(ctx, mintTimeout)
		defer cancel()
		minted := b.now()
		d, err := p.Derive(ctx, b.mints.env(p.ID), e.cred)
		if err != nil {
			b.metrics.minted(m.ref.Provider, "failed")
			return nil, err
		}
		// A zero ExpiresAt: the Deriver hands the credential out as it
		// is (an Azure API key, a Bedrock API key), kept until the key
		// changes; any other expiry must lie ahead.
		refresh := never
		if !d.ExpiresAt.IsZero() {
			if !d.ExpiresAt.After(minted) {
				b.metrics.minted(m.ref.Provider, "failed")
				return nil, errors.New("the minted credential has no expiry in the future")
			}
			refresh = refreshAt(minted, d.ExpiresAt)
		}
		b.mints.mu.Lock()
		if b.mints.m[key] == slot { // no change of the key since the mint began
			slot.version, slot.derived, slot.refreshAt, slot.held, slot.mintedAt = e.version, d, refresh, true, minted
		}
		b.mints.mu.Unlock()
		b.metrics.minted(m.ref.Provider, "ok")
		return d, nil
	})
	if err == nil {
		d := v.(providers.Derived)
		b.mints.mu.RLock()
		if s := b.mints.m[key]; s != nil && s.held && s.version == e.version && s.derived.Credential.Equal(d.Credential) {
			e.minted.Store(&mintedHit{derived: d, refreshAt: s.refreshAt, gen: gen})
		}
		b.mints.mu.RUnlock()
		return d, nil
	}
	if errors.Is(err, ErrMintBusy) {
		if oldValid {
			return old, nil
		}
		return providers.Derived{}, err
	}
	// The Deriver's errors never carry a field's value (its contract).
	b.log.Warn("could not mint a short-lived credential", "key", m.ref.String(), "error", err)
	if oldValid && b.now().Before(old.ExpiresAt) {
		// Within the refresh window the old credential still works.
		return old, nil
	}
	if errors.Is(err, providers.ErrMintRefused) {
		return providers.Derived{}, fmt.Errorf("mint for %s: %w: %w", m.ref, ErrMintFailed, err)
	}
	return providers.Derived{}, fmt.Errorf("mint for %s: %w", m.ref, ErrMintFailed)
}
