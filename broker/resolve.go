package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/providers"
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

// Resolution is the credential to use for a call. IsBYOK is what the
// platform checks to skip billing: true exactly when the customer brought
// the key (a workspace's or its organization's). String, LogValue and
// MarshalJSON never show the credential's secrets (providers.Credential).
type Resolution struct {
	Credential providers.Credential
	Source     Source
	IsBYOK     bool
	Version    int
	// ScopeKind is where the key lives (workspace, organization, hosted),
	// KeyID which key of the scope's pool served.
	ScopeKind ScopeKind
	KeyID     string
	// Fingerprint identifies the key (HMAC with the server's pepper) in
	// the platform's usage records; "" when this replica has no metadata
	// for it (a broker without a pool store).
	Fingerprint string
	// FallbackReason says why an earlier scope did not serve
	// (no_workspace_key, workspace_keys_unavailable, no_organization_key,
	// ...); "" when the workspace's own key served.
	FallbackReason string
	// ResolutionID names this answer in the platform's usage records and
	// in reports about the call.
	ResolutionID string
	// ExpiresAt is when a short-lived credential minted from the key
	// (Credential) stops working; zero for the key itself.
	ExpiresAt time.Time
	// KeyExpiresAt is the key's own expiresAt (zero: none): a client that
	// caches the answer keeps it no longer (docs/lifecycle.md).
	KeyExpiresAt time.Time
}

// Reasons a resolve found no key (NoKeyError.Reason) or fell back
// (Resolution.FallbackReason).
const (
	ReasonNoWorkspaceKey              = "no_workspace_key"
	ReasonWorkspaceKeysUnavailable    = "workspace_keys_unavailable"
	ReasonNoOrganizationKey           = "no_organization_key"
	ReasonOrganizationKeysUnavailable = "organization_keys_unavailable"
	ReasonHostedFallbackOff           = "hosted_fallback_off"
	ReasonNoHostedKey                 = "no_hosted_key"
	ReasonHostedKeysUnavailable       = "hosted_keys_unavailable"
	ReasonNoKeyAllowsModel            = "no_key_allows_model"
	// ReasonExpired: the keys of the scope that would have served have
	// all passed their expiresAt (docs/lifecycle.md).
	ReasonExpired = "expired"
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

// APIKey is the key of an api_key credential ("" for other kinds).
func (r Resolution) APIKey() string { return r.Credential.APIKey() }

func (r Resolution) String() string {
	return fmt.Sprintf("broker.Resolution{Source:%s Scope:%s KeyID:%s Version:%d Credential:%s}", r.Source, r.ScopeKind, r.KeyID, r.Version, r.Credential)
}
func (r Resolution) GoString() string { return r.String() }

// LogValue implements slog.LogValuer.
func (r Resolution) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", string(r.Source)), slog.String("scope", string(r.ScopeKind)),
		slog.String("key_id", r.KeyID), slog.Int("version", r.Version), slog.String("kind", r.Credential.Kind()))
}

// ResolveRequest asks for the key of a call.
type ResolveRequest struct {
	Workspace string
	Provider  string
	// Model is the model the call uses; keys with an allow-list of models
	// serve only calls that name one of them. Optional.
	Model string
	// Caller names who asks (the resolver token's id): the resolution id
	// is bound to it, so that only this caller may report on it.
	Caller string
	// Derived asks for the credential minted from the key, even for a
	// provider whose long-lived credential the operator exposes
	// (ExposeLongLived): the credential proxy's, which signs with it.
	Derived bool
}

// Resolve returns the key to use for a call: from the workspace's pool;
// else its organization's (when linked, and the workspace inherits); else
// the platform's hosted pool (when the workspace allows the fallback);
// else ErrKeysCoolingDown (a *CoolingDownError) when a key that would
// serve is cooling down, or ErrNoKey (a *NoKeyError with the reason). Within a pool the usable
// keys of the lowest priority take turns. Pools and settings come from
// this replica's memory; keys from the cache, or on a miss from Vault, one
// read per key at a time however many callers ask.
func (b *Broker) Resolve(ctx context.Context, req ResolveRequest) (Resolution, error) {
	start := time.Now()
	r, err := b.resolve(ctx, req)
	if b.metrics != nil {
		source, outcome := string(r.Source), "ok"
		switch {
		case errors.Is(err, ErrNoKey):
			source, outcome = "none", "no_key"
		case errors.Is(err, ErrKeysCoolingDown):
			source, outcome = "none", "keys_cooling_down"
		case err != nil:
			source, outcome = "none", "error"
		}
		b.metrics.resolved(source, outcome, time.Since(start))
	}
	return r, err
}

func (b *Broker) resolve(ctx context.Context, req ResolveRequest) (Resolution, error) {
	if b.reader == nil {
		return Resolution{}, fmt.Errorf("resolve: %w: no Vault reader identity", ErrNotConfigured)
	}
	p, err := b.checkIDs(req.Workspace, req.Provider)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve: %w", err)
	}
	if p.IsAdmin() {
		// An admin credential manages keys at the provider: it never
		// leaves keybroker (docs/lifecycle.md).
		return Resolution{}, fmt.Errorf("resolve: %w", refuse(ErrInvalidRequest,
			"%s holds admin credentials, which keybroker never resolves nor proxies", p.ID))
	}
	if len(req.Model) > MaxModelLength {
		return Resolution{}, fmt.Errorf("resolve: %w", refuse(ErrInvalidRequest, "model must be at most %d characters", MaxModelLength))
	}
	// This replica's cooldowns of keys for the workspace (shared keys it
	// reported) and for the caller (keys refused on its proxied calls),
	// read once.
	cooled := b.cooldowns.of(req.Workspace, req.Caller)
	var refusedMint error // the last key's mint its token service refused
	for attempt := 1; ; attempt++ {
		// What the chain's pool that serves gave: its cache entry and member.
		var e *cacheEntry
		var m *member
		d, err := walkChain(req.Workspace, req.Provider, b.settings.get, func(pr PoolRef) (poolOutcome, int64, error) {
			var out poolOutcome
			var until int64
			var err error
			e, m, out, until, err = b.fromPool(ctx, pr, req.Model, cooled)
			return out, until, err
		})
		if err != nil {
			return Resolution{}, fmt.Errorf("resolve %s/%s: %w", req.Workspace, req.Provider, err)
		}
		if !d.served() {
			if refusedMint != nil {
				// Nothing serves after the refused key: what failed is the mint.
				return Resolution{}, refusedMint
			}
			return Resolution{}, b.noKeyError(req, d)
		}
		now := b.now()
		r := b.answer(req.Workspace, e, m, d.Reason, req.Caller, now)
		if e.usage != nil && req.Caller != "" {
			e.usage.recordCaller(e.version, req.Caller)
		}
		if p.Derive == nil || (!req.Derived && b.mints.exposed[p.ID]) {
			return r, nil
		}
		// The key stays here: the caller gets a credential minted from it.
		derived, err := b.derive(ctx, p, m, e, now)
		if err != nil {
			// A token service that refuses the key has said what a
			// check would: the key fails for everyone, and the next key
			// of the chain serves (a few times at most per resolve).
			err = fmt.Errorf("resolve %s/%s: %w", req.Workspace, req.Provider, err)
			if errors.Is(err, providers.ErrMintRefused) && attempt < maxMintFailovers && b.failRefusedMint(ctx, p, m, e, err) {
				refusedMint = err
				continue
			}
			return Resolution{}, err
		}
		r.Credential, r.ExpiresAt = derived.Credential, derived.ExpiresAt
		return r, nil
	}
}

// maxMintFailovers bounds the keys one resolve tries to mint from when
// token services refuse them.
const maxMintFailovers = 4

// failRefusedMint marks the key of m failing after its token service
// refused to mint from it (keybroker's own observation, as a check's
// refusal is: audited, announced, and probed back by the prober), and
// reports whether it is out of the chain now.
func (b *Broker) failRefusedMint(ctx context.Context, p *providers.Provider, m *member, e *cacheEntry, cause error) bool {
	if b.health == nil {
		return false
	}
	ref := m.ref
	// The Deriver's errors never carry a field's value (its contract).
	detail := p.DisplayName + ": " + cause.Error()
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionHealth,
		Actor: "keybroker", Outcome: providers.VerdictRefused, Version: &e.version, Detail: detail}
	res, err := b.applyHealth(ctx, ref, HealthChange{Kind: HealthFail, Reason: "the token service refused the key: " + cause.Error()}, ev)
	if err != nil {
		b.log.WarnContext(ctx, "could not mark a key failing after its token service refused it", "key", ref.String(), "error", err)
		return false
	}
	return res.Health == HealthFailing
}

// MaxModelLength bounds a model name, in a resolve and in a key's models.
const MaxModelLength = 128

// answer is the resolution a pool member's cache entry gives workspace.
func (b *Broker) answer(workspace string, e *cacheEntry, m *member, fallbackReason, caller string, now time.Time) Resolution {
	source := SourceBYOK
	if m.ref.ScopeKind == ScopeHosted {
		source = SourceHosted
	}
	r := Resolution{Credential: e.cred, Source: source, IsBYOK: source == SourceBYOK, Version: e.version, ScopeKind: m.ref.ScopeKind,
		KeyID: m.ref.KeyID, Fingerprint: m.fingerprintOf(e.version), FallbackReason: fallbackReason,
		ResolutionID: b.resolutionIDs.make(workspace, &m.ref, e.version, caller, now)}
	if m.expiresAt != 0 {
		r.KeyExpiresAt = time.Unix(0, m.expiresAt)
	}
	return r
}

// cacheEntry is what the cache holds: a key, or the fact that there is
// none (found false). The cache keeps an entry past freshUntil for the
// stale-if-error window only; a stale entry is served only while Vault is
// unreachable.
type cacheEntry struct {
	found      bool
	cred       providers.Credential
	version    int
	fetchedAt  time.Time
	freshUntil time.Time
	refreshAt  time.Time   // a hit after this refreshes the entry in the background
	refreshing atomic.Bool // one background refresh at a time
	// usage counts the key's resolves (found entries with a usage store).
	usage *usageCounter
	// minted is the short-lived credential minted from this version of
	// the key (derive.go), for a hit without a lock.
	minted atomic.Pointer[mintedHit]
}

// lookup answers from the cache or reads the key from Vault, one read per key
// at a time. A key found counts as one use (a resolve serves the first key
// found and looks no further), on the clock reading the hit already made.
// The cache key was computed when the pool was loaded: a hit allocates
// nothing here.
func (b *Broker) lookup(ctx context.Context, m *member) (*cacheEntry, error) {
	key, ref := m.cacheKey, m.ref
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
		// A span for the miss (the read from Vault is its child): which
		// scope and provider, never the key.
		ctx, span := tracer.Start(ctx, "keybroker cache miss", trace.WithAttributes(
			attribute.String("keybroker.scope", string(ref.ScopeKind)), attribute.String("keybroker.provider", ref.Provider)))
		defer span.End()
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
//
// A change announced while the read is in flight (Invalidate, an eviction,
// a flush) makes the read stale: what it read may predate the change, so
// it is returned to the callers that were waiting for it but not cached.
func (b *Broker) fetch(ctx context.Context, key CacheKey, ref KeyRef) (*cacheEntry, error) {
	gen := b.fetches.begin(key)
	defer b.fetches.end(key)
	cred, version, err := b.readCredential(ctx, ref.Provider, string(key), 0)
	if legacy := ref.LegacyVaultPath(); legacy != "" && b.poolStore != nil && errors.Is(err, vault.ErrNotFound) && !errors.Is(err, vault.ErrNoValueField) {
		// A pool's key that keybroker v1 kept, not yet moved by `keybroker
		// vault migrate-layout`.
		cred, version, err = b.readCredential(ctx, ref.Provider, legacy, 0)
	}
	now := b.now()
	switch {
	case err == nil:
		e := &cacheEntry{found: true, cred: cred, version: version, fetchedAt: now, freshUntil: now.Add(b.ttl),
			refreshAt: now.Add(b.ttl*6/10 + jitter(b.ttl/4))}
		if b.usageStore != nil {
			e.usage = b.usage.counter(ref)
		}
		b.fetches.ifCurrent(key, gen, func() {
			b.negative.Remove(string(key))
			if _, held := b.cache.Get(string(key)); held || b.cache.ItemCount() < b.maxEntries {
				b.cache.Set(string(key), e, b.ttl+b.staleIfError)
			} else {
				b.metrics.cacheFull()
			}
		})
		return e, nil
	case errors.Is(err, vault.ErrNotFound):
		if errors.Is(err, vault.ErrNoValueField) {
			// Logged at each read (at most once per NegativeCacheTTL per
			// key): a silent no_key would hide a key written around
			// keybroker under another field name.
			b.log.Warn("a secret in Vault has no "+missingField(err)+" field; resolve answers no_key for it",
				"key", ref.String(), "fields", vault.FieldNames(err))
		}
		// "No key" is never served stale: it lives NegativeCacheTTL, in
		// its own bounded set.
		e := &cacheEntry{fetchedAt: now, freshUntil: now.Add(b.negTTL)}
		b.fetches.ifCurrent(key, gen, func() {
			b.cache.Delete(string(key))
			b.negative.Add(string(key), e)
		})
		return e, nil
	case errors.Is(err, vault.ErrUnavailable):
		return nil, fromVault(err)
	default:
		// Refused (403 after one re-login) or malformed: fail closed.
		b.dropEntry(key)
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

// forgetKey forgets what is known of a key after a change: its cached
// answer, and the reads of it in flight (stale from now on; callers that
// come next read again instead of waiting for them).
func (b *Broker) forgetKey(key CacheKey) {
	b.fetches.invalidate(key)
	b.flight.Forget(string(key))
	b.dropEntry(key)
	b.mints.forget(key)
}

// dropEntry forgets a key's cached answer.
func (b *Broker) dropEntry(key CacheKey) {
	b.cache.Delete(string(key))
	b.negative.Remove(string(key))
}

// fetchGenerations tells a Vault read whether a change was announced
// while it was in flight. Each key being read has a generation, bumped by
// every change of the key (and by a flush, for all); a read caches its
// answer only if the generation it started with is still current, checked
// and cached under the lock that the bump takes. Only keys with a read in
// flight are held: the map is bounded by the reads in flight.
type fetchGenerations struct {
	mu sync.Mutex
	m  map[CacheKey]*fetchGeneration
}

type fetchGeneration struct {
	gen   uint64
	reads int
}

// begin registers a read of key and returns its generation.
func (f *fetchGenerations) begin(key CacheKey) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[CacheKey]*fetchGeneration{}
	}
	g := f.m[key]
	if g == nil {
		g = &fetchGeneration{}
		f.m[key] = g
	}
	g.reads++
	return g.gen
}

// end unregisters a read of key.
func (f *fetchGenerations) end(key CacheKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.m[key]; g != nil {
		if g.reads--; g.reads <= 0 {
			delete(f.m, key)
		}
	}
}

// ifCurrent runs store (which caches a read's answer) if no change of key
// was announced since the read began at gen.
func (f *fetchGenerations) ifCurrent(key CacheKey, gen uint64, store func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.m[key]; g != nil && g.gen != gen {
		return
	}
	store()
}

// invalidate makes the reads of key in flight stale.
func (f *fetchGenerations) invalidate(key CacheKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.m[key]; g != nil {
		g.gen++
	}
}

// invalidateAll makes every read in flight stale.
func (f *fetchGenerations) invalidateAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.m {
		g.gen++
	}
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

// Invalidate applies a change announced by a replica (or this one): the
// key's cached answer is forgotten and its pool re-read; for a purge
// (no provider), every pool of the scope is forgotten.
func (b *Broker) Invalidate(ctx context.Context, inv Invalidation) error {
	scope := Scope{Kind: inv.ScopeKind, ID: inv.ScopeID}
	if inv.Provider == "" {
		if b.pools != nil {
			for _, k := range b.pools.dropScope(scope) {
				b.forgetKey(k)
				b.metrics.evicted()
			}
		}
		// An answer cached while its pool was being forgotten is the
		// scope's too: none of the scope's answers stays.
		prefix := scope.vaultDir()
		for k := range b.cache.Items() {
			if strings.HasPrefix(k, prefix) {
				b.forgetKey(CacheKey(k))
			}
		}
		return nil
	}
	if inv.KeyID != "" {
		b.evict(scope.Key(inv.Provider, inv.KeyID))
	}
	return b.PoolChanged(ctx, scope.Pool(inv.Provider))
}

// FlushCache forgets every cached answer: after the invalidation listener
// reconnects, announcements may have been missed.
func (b *Broker) FlushCache() {
	b.fetches.invalidateAll()
	b.mints.forgetAll()
	b.cache.Flush()
	b.negative.Purge()
	b.metrics.flushed()
}

// Evict forgets the cached answer for a key (benchmarks measure a miss
// with it).
func (b *Broker) Evict(ref KeyRef) { b.evict(ref) }

// tracer is the broker's: the global provider's, a no-op one unless traces
// are on. Only misses make spans; a cache hit makes none.
var tracer = otel.Tracer("github.com/keybroker/keybroker/broker")

// CacheTTL is how long a resolved key stays cached (before a change evicts
// it).
func (b *Broker) CacheTTL() time.Duration { return b.ttl }
