package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keybroker/keybroker/store"
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
}

func (r Resolution) String() string {
	return fmt.Sprintf("broker.Resolution{Source:%s Version:%d APIKey:<redacted>}", r.Source, r.Version)
}
func (r Resolution) GoString() string { return r.String() }

// LogValue implements slog.LogValuer.
func (r Resolution) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", string(r.Source)), slog.Int("version", r.Version))
}

// CacheKey names a cache entry: a workspace's key for a provider, or the
// hosted key of a provider. Ids cannot contain '/', so the two never meet.
type CacheKey string

func workspaceCacheKey(workspace, provider string) CacheKey {
	return CacheKey(workspace + "/" + provider)
}

func hostedCacheKey(provider string) CacheKey { return CacheKey("/hosted/" + provider) }

// cacheEntry is what the cache holds: a key, or the fact that there is
// none (found false).
type cacheEntry struct {
	found     bool
	key       string
	version   int
	fetchedAt time.Time
}

// Resolve returns the key to use for (workspace, provider): the
// workspace's own key when it has one, else the platform's hosted key.
// Answers come from memory for CacheTTL; on a miss, one Vault read per key
// is in flight at a time however many callers ask. ErrNoKey when neither
// exists.
func (b *Broker) Resolve(ctx context.Context, workspace, provider string) (Resolution, error) {
	if b.reader == nil {
		return Resolution{}, fmt.Errorf("resolve: %w: no Vault reader identity", ErrNotConfigured)
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return Resolution{}, fmt.Errorf("resolve: %w", err)
	}
	e, err := b.lookup(ctx, workspaceCacheKey(workspace, provider), vault.WorkspaceKeyPath(workspace, provider))
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve %s/%s: %w", workspace, provider, err)
	}
	if e.found {
		return Resolution{APIKey: e.key, Source: SourceBYOK, IsBYOK: true, Version: e.version}, nil
	}
	e, err = b.lookup(ctx, hostedCacheKey(provider), vault.HostedKeyPath(provider))
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve hosted key of %s: %w", provider, err)
	}
	if e.found {
		return Resolution{APIKey: e.key, Source: SourceHosted, IsBYOK: false, Version: e.version}, nil
	}
	return Resolution{}, fmt.Errorf("resolve %s/%s: %w", workspace, provider, ErrNoKey)
}

// lookup answers from the cache or reads path from Vault, one read per key
// at a time.
func (b *Broker) lookup(ctx context.Context, key CacheKey, path string) (*cacheEntry, error) {
	if v, ok := b.cache.Get(string(key)); ok {
		return v.(*cacheEntry), nil
	}
	v, err, _ := b.flight.Do(string(key), func() (any, error) {
		// Another caller may have filled the entry while this one waited
		// for the flight.
		if v, ok := b.cache.Get(string(key)); ok {
			return v, nil
		}
		// The read is shared by every caller waiting on this key, so it
		// must not die with the first caller's context; the Vault client
		// bounds it with its own deadline.
		s, err := b.reader.Get(context.WithoutCancel(ctx), path)
		switch {
		case err == nil:
			e := &cacheEntry{found: true, key: s.Value, version: s.Version, fetchedAt: time.Now()}
			b.cache.Set(string(key), e, b.ttl)
			return e, nil
		case errors.Is(err, vault.ErrNotFound):
			e := &cacheEntry{fetchedAt: time.Now()}
			b.cache.Set(string(key), e, b.negTTL)
			return e, nil
		default:
			// Refused or unreachable: fail closed, and forget what we knew.
			b.cache.Delete(string(key))
			return nil, fromVault(err)
		}
	})
	if err != nil {
		return nil, err
	}
	return v.(*cacheEntry), nil
}

// evict forgets the cached answer for a workspace's key.
func (b *Broker) evict(workspace, provider string) {
	b.cache.Delete(string(workspaceCacheKey(workspace, provider)))
}

// Evict forgets the cached answer for (workspace, provider).
func (b *Broker) Evict(workspace, provider string) { b.evict(workspace, provider) }

// Invalidate applies a change announced by a replica (or this one) over
// PostgreSQL: the key, or every key of the workspace, is forgotten.
func (b *Broker) Invalidate(inv store.Invalidation) {
	if inv.Provider != "" {
		b.evict(inv.Workspace, inv.Provider)
		return
	}
	for _, p := range b.providers.All() {
		b.evict(inv.Workspace, p.ID)
	}
}

// FlushCache forgets every cached answer: after the invalidation listener
// reconnects, announcements may have been missed.
func (b *Broker) FlushCache() { b.cache.Flush() }
