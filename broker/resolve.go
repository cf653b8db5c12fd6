package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/keybroker/keybroker/vault"
)

// Source says where a resolved key came from.
type Source string

const (
	// SourceBYOK: the workspace's own key. Calls made with it are not
	// billed by the platform.
	SourceBYOK Source = "byok"
	// SourceHosted: the platform's hosted key, billed to the workspace.
	SourceHosted Source = "hosted"
)

// Resolution is the key to use for a call. IsBYOK is what the platform
// checks to skip billing: true exactly when the workspace brought the key.
// String and LogValue never show the key.
type Resolution struct {
	APIKey  string
	Source  Source
	IsBYOK  bool
	Version int
	// Scope is where the key lives (workspace, hosted), KeyID which key of
	// the scope's pool served (v1 scopes hold one key, "default").
	Scope ScopeKind
	KeyID string
	// FallbackReason says why an earlier scope did not serve
	// ("no_workspace_key" when a hosted key did); "" when the workspace's
	// own key served.
	FallbackReason string
	// ResolutionID names this answer in the platform's usage records.
	ResolutionID string
}

// Reasons a resolve found no key (NoKeyError.Reason) or fell back.
const (
	ReasonNoWorkspaceKey    = "no_workspace_key"
	ReasonHostedFallbackOff = "hosted_fallback_off"
	ReasonNoHostedKey       = "no_hosted_key"
)

// NoKeyError is ErrNoKey with the reason no scope could serve.
type NoKeyError struct {
	Workspace, Provider, Reason string
}

func (e *NoKeyError) Error() string {
	return fmt.Sprintf("resolve %s/%s: %s (%s)", e.Workspace, e.Provider, ErrNoKey, e.Reason)
}

// Is makes errors.Is(err, ErrNoKey) hold.
func (e *NoKeyError) Is(target error) bool { return target == ErrNoKey }

func (r Resolution) String() string {
	return fmt.Sprintf("broker.Resolution{Source:%s Version:%d APIKey:<redacted>}", r.Source, r.Version)
}
func (r Resolution) GoString() string { return r.String() }

// LogValue implements slog.LogValuer.
func (r Resolution) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", string(r.Source)), slog.Int("version", r.Version))
}

// Resolve returns the key to use for (workspace, provider): the
// workspace's own key when it has one, else the platform's hosted key.
// Answers come from memory for CacheTTL; on a miss, one Vault read per key
// is in flight at a time however many callers ask. ErrNoKey when neither
// exists.
func (b *Broker) Resolve(ctx context.Context, workspace, provider string) (Resolution, error) {
	start := time.Now()
	r, err := b.resolve(ctx, workspace, provider)
	if b.metrics != nil {
		source, outcome := string(r.Source), "ok"
		switch {
		case errors.Is(err, ErrNoKey):
			source, outcome = "none", "no_key"
		case err != nil:
			source, outcome = "none", "error"
		}
		b.metrics.resolved(source, outcome, time.Since(start))
	}
	return r, err
}

func (b *Broker) resolve(ctx context.Context, workspace, provider string) (Resolution, error) {
	if b.reader == nil {
		return Resolution{}, fmt.Errorf("resolve: %w: no Vault reader identity", ErrNotConfigured)
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return Resolution{}, fmt.Errorf("resolve: %w", err)
	}
	own := WorkspaceKey(workspace, provider)
	e, err := b.lookup(ctx, own)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve %s/%s: %w", workspace, provider, err)
	}
	if e.found {
		return Resolution{APIKey: e.key, Source: SourceBYOK, IsBYOK: true, Version: e.version, Scope: ScopeWorkspace,
			KeyID: DefaultKeyID, ResolutionID: b.newResolutionID()}, nil
	}
	settings, loaded := b.settings.get(workspace)
	if !loaded {
		return Resolution{}, fmt.Errorf("resolve %s/%s: the workspace has no key; whether it may fall back to a hosted key is unknown: %w",
			workspace, provider, ErrSettingsNotLoaded)
	}
	if !settings.HostedFallback {
		return Resolution{}, &NoKeyError{Workspace: workspace, Provider: provider, Reason: ReasonHostedFallbackOff}
	}
	hosted := HostedKey(provider)
	e, err = b.lookup(ctx, hosted)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve hosted key of %s: %w", provider, err)
	}
	if e.found {
		return Resolution{APIKey: e.key, Source: SourceHosted, IsBYOK: false, Version: e.version, Scope: ScopeHosted,
			KeyID: DefaultKeyID, FallbackReason: ReasonNoWorkspaceKey, ResolutionID: b.newResolutionID()}, nil
	}
	return Resolution{}, &NoKeyError{Workspace: workspace, Provider: provider, Reason: ReasonNoHostedKey}
}

// newResolutionID builds the id in one allocation: this is the hot path.
func (b *Broker) newResolutionID() string {
	var buf [40]byte
	out := append(buf[:0], b.resolutionPrefix...)
	out = strconv.AppendUint(out, b.resolutions.Add(1), 36)
	return string(out)
}

// cacheEntry is what the cache holds: a key, or the fact that there is
// none (found false). The cache keeps an entry past freshUntil for the
// stale-if-error window only; a stale entry is served only while Vault is
// unreachable.
type cacheEntry struct {
	found      bool
	key        string
	version    int
	fetchedAt  time.Time
	freshUntil time.Time
	refreshAt  time.Time   // a hit after this refreshes the entry in the background
	refreshing atomic.Bool // one background refresh at a time
	// usage counts the key's resolves (found entries with a usage store).
	usage *usageCounter
}

// lookup answers from the cache or reads the key from Vault, one read per key
// at a time. A key found counts as one use (a resolve serves the first key
// found and looks no further), on the clock reading the hit already made.
// The Vault path is computed only on the way to Vault: a hit costs one
// string, the cache key.
func (b *Broker) lookup(ctx context.Context, ref KeyRef) (*cacheEntry, error) {
	key := ref.CacheKey()
	var stale *cacheEntry
	if e, ok := b.cached(key); ok {
		now := b.now()
		if now.Before(e.freshUntil) {
			b.metrics.lookup(true)
			if e.usage != nil {
				e.usage.record(now)
			}
			if e.found && now.After(e.refreshAt) && e.refreshing.CompareAndSwap(false, true) {
				select {
				case b.refreshSlots <- struct{}{}:
					go b.refresh(key, ref, e)
				default:
					e.refreshing.Store(false) // all slots busy: the next hit tries again
				}
			}
			return e, nil
		}
		stale = e // kept for the stale-if-error window
	}
	b.metrics.lookup(false)
	v, err, _ := b.flight.Do(string(key), func() (any, error) {
		// Another caller may have refreshed the entry while this one
		// waited for the flight.
		if e, ok := b.cached(key); ok && b.now().Before(e.freshUntil) {
			return e, nil
		}
		// One of MaxColdReads slots, waited for with the first caller's
		// context: a burst of misses (made-up ids, a flushed cache) reaches
		// Vault as a bounded trickle.
		select {
		case b.coldSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for a Vault read slot: %w", errors.Join(ErrUnavailable, ctx.Err()))
		}
		defer func() { <-b.coldSlots }()
		// The read is shared by every caller waiting on this key, so it
		// must not die with the first caller's context; the Vault client
		// bounds it with its own deadline.
		e, err := b.fetch(context.WithoutCancel(ctx), key, ref)
		if err == nil {
			return e, nil
		}
		if stale != nil && errors.Is(err, ErrUnavailable) {
			b.metrics.staleServed()
			b.log.Warn("vault unavailable: serving a cached answer past its TTL (stale-if-error)",
				"age", b.now().Sub(stale.fetchedAt).Round(time.Millisecond).String(), "error", err)
			return stale, nil
		}
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	e := v.(*cacheEntry)
	if e.usage != nil {
		e.usage.record(b.now())
	}
	return e, nil
}

// fetch reads the key from Vault and caches the answer. A refusal (403) or an
// error other than unavailability forgets the entry: those never serve
// stale.
func (b *Broker) fetch(ctx context.Context, key CacheKey, ref KeyRef) (*cacheEntry, error) {
	s, err := b.reader.Get(ctx, ref.VaultPath())
	now := b.now()
	switch {
	case err == nil:
		e := &cacheEntry{found: true, key: s.Value, version: s.Version, fetchedAt: now, freshUntil: now.Add(b.ttl),
			refreshAt: now.Add(b.ttl*6/10 + jitter(b.ttl/4))}
		if b.usageStore != nil {
			e.usage = b.usage.counter(ref)
		}
		b.negative.Remove(string(key))
		if _, held := b.cache.Get(string(key)); held || b.cache.ItemCount() < b.maxEntries {
			b.cache.Set(string(key), e, b.ttl+b.staleIfError)
		} else {
			b.metrics.cacheFull()
		}
		return e, nil
	case errors.Is(err, vault.ErrNotFound):
		if errors.Is(err, vault.ErrNoValueField) {
			// Logged at each read (at most once per NegativeCacheTTL per
			// key): a silent no_key would hide a key written around
			// keybroker under another field name.
			b.log.Warn("a secret in Vault has no "+vault.ValueField+" field; resolve answers no_key for it",
				"key", ref.String(), "fields", vault.FieldNames(err))
		}
		// "No key" is never served stale: it lives NegativeCacheTTL, in
		// its own bounded set.
		e := &cacheEntry{fetchedAt: now, freshUntil: now.Add(b.negTTL)}
		b.cache.Delete(string(key))
		b.negative.Add(string(key), e)
		return e, nil
	case errors.Is(err, vault.ErrUnavailable):
		return nil, fromVault(err)
	default:
		// Refused (403 after one re-login) or malformed: fail closed.
		b.forgetKey(key)
		return nil, fromVault(err)
	}
}

// cached returns the entry held for key: a key, or a "no key" answer.
func (b *Broker) cached(key CacheKey) (*cacheEntry, bool) {
	if v, ok := b.cache.Get(string(key)); ok {
		return v.(*cacheEntry), true
	}
	return b.negative.Get(string(key))
}

func (b *Broker) forgetKey(key CacheKey) {
	b.cache.Delete(string(key))
	b.negative.Remove(string(key))
}

// CacheSize reports the entries held: keys, and "no key" answers.
func (b *Broker) CacheSize() (keys, negative int) { return b.cache.ItemCount(), b.negative.Len() }

// refresh re-reads a hot entry before it expires, so that a busy key never
// waits for Vault on the request path. Entries come due at 60–85 % of the
// TTL, at random: keys first read together (a restart, a flush) drift apart
// instead of being re-read together every TTL. It holds one of
// refreshSlots, which the caller took.
func (b *Broker) refresh(key CacheKey, ref KeyRef, old *cacheEntry) {
	defer func() { <-b.refreshSlots }()
	defer old.refreshing.Store(false)
	_, _, _ = b.flight.Do(string(key), func() (any, error) {
		e, err := b.fetch(context.Background(), key, ref)
		// Callers that find the entry expired join this flight; while Vault
		// is unavailable they get what lookup would give them: the old
		// answer while it is fresh or within the stale-if-error window.
		if err != nil && errors.Is(err, ErrUnavailable) {
			now := b.now()
			age := now.Sub(old.fetchedAt)
			if now.Before(old.freshUntil) {
				return old, nil
			}
			if b.staleIfError > 0 && age < old.freshUntil.Sub(old.fetchedAt)+b.staleIfError {
				b.metrics.staleServed()
				return old, nil
			}
		}
		return e, err
	})
}

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max)
}

// evict forgets the cached answer for a key.
func (b *Broker) evict(ref KeyRef) {
	b.forgetKey(ref.CacheKey())
	b.metrics.evicted()
}

// evictWorkspace forgets the cached answers for every provider's key of a
// workspace.
func (b *Broker) evictWorkspace(workspace string) {
	for _, p := range b.providers.All() {
		b.evict(WorkspaceKey(workspace, p.ID))
	}
}

// Evict forgets the cached answer for (workspace, provider).
func (b *Broker) Evict(workspace, provider string) { b.evict(WorkspaceKey(workspace, provider)) }

// Invalidate applies a change announced by a replica (or this one): the
// key, or every key of the workspace, is forgotten.
func (b *Broker) Invalidate(inv Invalidation) {
	if inv.Provider != "" {
		b.evict(WorkspaceKey(inv.Workspace, inv.Provider))
		return
	}
	b.evictWorkspace(inv.Workspace)
}

// FlushCache forgets every cached answer: after the invalidation listener
// reconnects, announcements may have been missed.
func (b *Broker) FlushCache() {
	b.cache.Flush()
	b.negative.Purge()
	b.metrics.flushed()
}
