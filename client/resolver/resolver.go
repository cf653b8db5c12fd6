// Package resolver is keybroker's execution-path library: Resolve answers
// from a cache in the caller's own memory, filled by POST /v1/resolve (one
// request per key at a time) and kept exact by GET /v1/resolve/watch,
// which evicts what a change can alter. Exactness comes first: while the
// stream is down no entry older than MaxDisconnectedAge is served, every
// (re)connection flushes the cache, and a revoked token empties it.
//
// Keys held here never reach a log, an error or a %v: answers are
// client.ResolveResponse values, whose String redacts the key.
package resolver

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/keybroker/keybroker/client"
)

// Config tunes a Resolver; zero values take the defaults stated.
type Config struct {
	// Client talks to keybroker with a resolver token (required).
	Client *client.Client
	// MaxEntries bounds the cache. Default: 10,000.
	MaxEntries int
	// MaxAge bounds an entry's age even while the stream is up; the
	// server's cache TTL (ttlSeconds of its answer) when shorter. A changed
	// key is evicted by the stream long before. Default: 30 s.
	MaxAge time.Duration
	// MaxDisconnectedAge: while the stream is down, entries older than
	// this are not served (they are fetched again). Default: 2 s.
	MaxDisconnectedAge time.Duration
	// StaleIfError serves an entry up to this old when keybroker cannot
	// be reached (a 5xx or no answer). Default: 0, off.
	StaleIfError time.Duration
	// Logger receives the stream's connection changes. Default: slog.Default().
	Logger *slog.Logger
}

type cacheKey struct{ workspace, provider, model string }

// fetch is a request in flight for a key.
type fetch struct{ stale bool }

type entry struct {
	resp   client.ResolveResponse
	at     time.Time
	maxAge time.Duration
}

// Resolver is safe for concurrent use.
type Resolver struct {
	cfg    Config
	mu     sync.RWMutex
	cache  map[cacheKey]*entry
	flight singleflight.Group
	// inflight are the keys being fetched: an eviction that matches one
	// marks it stale, and its answer is returned but not cached (it may
	// predate the change).
	inflight  map[cacheKey]*fetch
	connected atomic.Bool
	revoked   atomic.Bool
	requests  atomic.Int64
	stop      context.CancelFunc
	done      chan struct{}
}

// ErrRevoked: the token was revoked; the Resolver holds nothing.
var ErrRevoked = errors.New("keybroker resolver: the token was revoked")

// New starts a Resolver: its watch stream connects in the background.
// Close it when done.
func New(cfg Config) (*Resolver, error) {
	if cfg.Client == nil {
		return nil, errors.New("keybroker resolver: Config.Client is required")
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 30 * time.Second
	}
	if cfg.MaxDisconnectedAge <= 0 {
		cfg.MaxDisconnectedAge = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{cfg: cfg, cache: map[cacheKey]*entry{}, inflight: map[cacheKey]*fetch{}, stop: cancel, done: make(chan struct{})}
	go r.watch(ctx)
	return r, nil
}

// Close stops the stream and drops every key.
func (r *Resolver) Close() {
	r.stop()
	<-r.done
	r.flush()
}

// Connected reports whether the watch stream is up.
func (r *Resolver) Connected() bool { return r.connected.Load() }

// Requests counts the POST /v1/resolve this Resolver sent.
func (r *Resolver) Requests() int64 { return r.requests.Load() }

// Len is how many answers are cached.
func (r *Resolver) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.cache)
}

// Resolve returns the key for a call: from the local cache when it holds
// a fresh answer, else from keybroker (concurrent misses of one key share
// one request).
func (r *Resolver) Resolve(ctx context.Context, workspace, provider, model string) (client.ResolveResponse, error) {
	k := cacheKey{workspace, provider, model}
	r.mu.RLock()
	e := r.cache[k]
	r.mu.RUnlock()
	if e != nil && r.fresh(e) {
		return e.resp, nil
	}
	if r.revoked.Load() {
		return client.ResolveResponse{}, ErrRevoked
	}
	v, err, _ := r.flight.Do(workspace+"\x00"+provider+"\x00"+model, func() (any, error) {
		// A caller that missed just before another's fetch stored its
		// answer finds it here, rather than fetching again.
		r.mu.Lock()
		if e := r.cache[k]; e != nil && r.fresh(e) {
			r.mu.Unlock()
			return e.resp, nil
		}
		f := &fetch{}
		r.inflight[k] = f
		r.mu.Unlock()
		r.requests.Add(1)
		resp, err := r.cfg.Client.ResolveFor(context.WithoutCancel(ctx), client.ResolveRequest{Workspace: workspace, Provider: provider, Model: model})
		r.mu.Lock()
		delete(r.inflight, k)
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		if !f.stale && !r.revoked.Load() {
			if len(r.cache) >= r.cfg.MaxEntries {
				for old := range r.cache { // any one: a map's order is random
					delete(r.cache, old)
					break
				}
			}
			maxAge := r.cfg.MaxAge
			if ttl := time.Duration(resp.TTLSeconds) * time.Second; ttl > 0 && ttl < maxAge {
				maxAge = ttl // never longer than the server keeps it
			}
			if !resp.ExpiresAt.IsZero() {
				// A minted credential is refreshed before it expires: a
				// minute early, or halfway for one that lives less than
				// two minutes.
				left := time.Until(resp.ExpiresAt)
				maxAge = max(0, min(maxAge, left-min(time.Minute, left/2)))
			}
			if !resp.KeyExpiresAt.IsZero() {
				// Never kept past the provider key's own expiry.
				maxAge = max(0, min(maxAge, time.Until(resp.KeyExpiresAt)))
			}
			r.cache[k] = &entry{resp: resp, at: time.Now(), maxAge: maxAge}
		}
		r.mu.Unlock()
		return resp, nil
	})
	if err != nil {
		if e != nil && r.cfg.StaleIfError > 0 && time.Since(e.at) < r.cfg.StaleIfError && unavailable(err) && !r.revoked.Load() &&
			(e.resp.KeyExpiresAt.IsZero() || time.Now().Before(e.resp.KeyExpiresAt)) {
			return e.resp, nil
		}
		return client.ResolveResponse{}, err
	}
	return v.(client.ResolveResponse), nil
}

// fresh says whether e may be served now: younger than its bound, and,
// while the stream is down, than MaxDisconnectedAge.
func (r *Resolver) fresh(e *entry) bool {
	age := time.Since(e.at)
	return age < e.maxAge && (age < r.cfg.MaxDisconnectedAge || r.connected.Load())
}

// Report says what the provider answered to a call made with a resolved
// key (see POST /v1/resolve/report). Unless the outcome is "ok", the
// answers that carry this resolution are dropped: the next Resolve asks
// keybroker, which serves the pool's next key. (A report about a key the
// workspace does not own — its organization's, a hosted key — changes it
// for that workspace alone, so no change comes back on the stream to
// evict it.)
func (r *Resolver) Report(ctx context.Context, resolutionID, outcome string) (client.ReportResult, error) {
	res, err := r.cfg.Client.Report(ctx, client.ReportRequest{ResolutionID: resolutionID, Outcome: outcome})
	if err == nil && outcome != "ok" {
		r.mu.Lock()
		for k, e := range r.cache {
			if e.resp.ResolutionID == resolutionID {
				delete(r.cache, k)
			}
		}
		r.mu.Unlock()
	}
	return res, err
}

func unavailable(err error) bool {
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= 500
	}
	return true // no answer at all
}

// flush drops every answer.
func (r *Resolver) flush() {
	r.mu.Lock()
	clear(r.cache)
	for _, f := range r.inflight {
		f.stale = true
	}
	r.mu.Unlock()
}

// evict drops what ev can alter: a workspace's answers for a provider (or
// all of them); for an organization's or the hosted pools, which may serve
// any workspace, every answer for the provider.
func (r *Resolver) evict(ev client.WatchEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.cache {
		if alters(ev, k) {
			delete(r.cache, k)
		}
	}
	for k, f := range r.inflight {
		if alters(ev, k) {
			f.stale = true
		}
	}
}

// alters says whether ev can change the answer for k.
func alters(ev client.WatchEvent, k cacheKey) bool {
	switch {
	case ev.Workspace != "":
		return k.workspace == ev.Workspace
	case ev.Scope == "workspace":
		return k.workspace == ev.ScopeID && (ev.Provider == "" || k.provider == ev.Provider)
	}
	// An organization's or the hosted pool may serve any workspace.
	return ev.Provider == "" || k.provider == ev.Provider
}

// watch keeps the stream up, reconnecting with jittered backoff, until
// ctx ends or the token is revoked.
func (r *Resolver) watch(ctx context.Context) {
	defer close(r.done)
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected, err := r.stream(ctx)
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if client.IsStatus(err, http.StatusUnauthorized) || errors.Is(err, ErrRevoked) {
			r.revoked.Store(true)
			r.flush()
			r.cfg.Logger.Warn("keybroker resolver: the token was revoked or expired; every key dropped", "error", err)
			return
		}
		if connected {
			delay = 100 * time.Millisecond // it was up: the backoff starts again
		}
		r.cfg.Logger.Info("keybroker resolver: watch stream down; reconnecting", "error", err, "in", delay.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay/2 + rand.N(delay)):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// stream reads one connection of the watch stream, and says whether it
// got as far as its hello; a silence of more than 45 s (three heartbeats)
// counts as a broken connection.
func (r *Resolver) stream(ctx context.Context) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := r.cfg.Client.Watch(ctx)
	if err != nil {
		return false, err
	}
	defer s.Close()
	alive := time.AfterFunc(45*time.Second, cancel)
	defer alive.Stop()
	for {
		ev, err := s.Next()
		if err != nil {
			return connected, err
		}
		alive.Reset(45 * time.Second)
		switch ev.Type {
		case "hello":
			// What was cached may have changed while the stream was down.
			r.flush()
			r.connected.Store(true)
			connected = true
		case "flush":
			r.flush()
		case "invalidate":
			r.evict(ev)
		case "revoked":
			return connected, ErrRevoked
		}
	}
}
