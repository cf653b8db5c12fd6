package auth

import (
	"context"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// RateLimits are the request limits of one replica. A zero rate takes the
// default; a negative one turns that limit off.
type RateLimits struct {
	// PerToken is the sustained requests per second of one authenticated
	// token, with PerTokenBurst on top. Default: 500/s, burst 1000 (the
	// execution path's resolver tokens are busy).
	PerToken      float64
	PerTokenBurst int
	// FailedAuthPerAddr is the sustained rate of failed authentications
	// from one client address, with FailedAuthBurst on top. It bounds the
	// token lookups a guesser makes, not the tokens that work: a token
	// this replica validated before, and a proxy token (checked by its
	// signature), need no lookup that could fail and are never refused by
	// it. A lookup of a token never seen reserves a failure before it
	// starts and gives it back when the token was good (BeginAuth), so at
	// most the burst of such lookups run at once per address, and past the
	// budget none starts. An IPv6 address counts per /64 (one host's usual
	// allocation). Default: 5/s, burst 20.
	FailedAuthPerAddr float64
	FailedAuthBurst   int
	// PerWorkspace is the sustained rate of proxied calls of one workspace
	// (whoever's token makes them), with PerWorkspaceBurst on top.
	// Default: 100/s, burst 200.
	PerWorkspace      float64
	PerWorkspaceBurst int
	// MintsPerToken is the sustained rate at which one resolver token
	// mints proxy tokens, with MintsBurst on top. Default: 20/s, burst 100.
	MintsPerToken float64
	MintsBurst    int
	// ReportsPerToken is the sustained rate of /v1/resolve/report calls of
	// one token, with ReportsBurst on top: a report storm cannot turn into
	// a storm of health writes. Default: 20/s, burst 100.
	ReportsPerToken float64
	ReportsBurst    int
	// MaxTracked bounds the tokens and addresses tracked per limit.
	// Default: 100000.
	MaxTracked int
}

func (r RateLimits) withDefaults() RateLimits {
	if r.PerToken == 0 {
		r.PerToken = 500
	}
	if r.PerTokenBurst <= 0 {
		r.PerTokenBurst = 1000
	}
	if r.FailedAuthPerAddr == 0 {
		r.FailedAuthPerAddr = 5
	}
	if r.FailedAuthBurst <= 0 {
		r.FailedAuthBurst = 20
	}
	if r.ReportsPerToken == 0 {
		r.ReportsPerToken = 20
	}
	if r.ReportsBurst <= 0 {
		r.ReportsBurst = 100
	}
	if r.PerWorkspace == 0 {
		r.PerWorkspace = 100
	}
	if r.PerWorkspaceBurst <= 0 {
		r.PerWorkspaceBurst = 200
	}
	if r.MintsPerToken == 0 {
		r.MintsPerToken = 20
	}
	if r.MintsBurst <= 0 {
		r.MintsBurst = 100
	}
	if r.MaxTracked <= 0 {
		r.MaxTracked = 100_000
	}
	return r
}

// Limiter enforces RateLimits with one token bucket per token, per
// workspace and per client address, in bounded maps.
type Limiter struct {
	tokens, reports, workspaces, mints *buckets
	addrs                              *reserveBuckets
	refused                            *prometheus.CounterVec
}

// NewLimiter returns the limiter of limits; refusals are counted in
// keybroker_rate_limited_total{limit="token"|"failed_auth"} on reg (when
// not nil).
func NewLimiter(limits RateLimits, reg prometheus.Registerer) *Limiter {
	limits = limits.withDefaults()
	l := &Limiter{
		tokens:     newBuckets(limits.PerToken, limits.PerTokenBurst, limits.MaxTracked),
		addrs:      newReserveBuckets(limits.FailedAuthPerAddr, limits.FailedAuthBurst, limits.MaxTracked),
		reports:    newBuckets(limits.ReportsPerToken, limits.ReportsBurst, limits.MaxTracked),
		workspaces: newBuckets(limits.PerWorkspace, limits.PerWorkspaceBurst, limits.MaxTracked),
		mints:      newBuckets(limits.MintsPerToken, limits.MintsBurst, limits.MaxTracked),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_rate_limited_total",
			Help: "Requests refused with 429, by the limit that refused them (token: an authenticated token's rate; failed_auth: a client address's failed authentications; report: a token's reports; workspace: a workspace's proxied calls; mint: a resolver token's proxy-token mints).",
		}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	return l
}

// AllowToken takes one request from the token's bucket; when it is empty
// it returns false and how long until the next request would pass.
func (l *Limiter) AllowToken(tokenID string) (bool, time.Duration) {
	return l.allow(l.tokens, tokenID, "token")
}

// AllowReport takes one report from the token's report bucket.
func (l *Limiter) AllowReport(tokenID string) (bool, time.Duration) {
	return l.allow(l.reports, tokenID, "report")
}

// AllowWorkspace takes one proxied call from the workspace's bucket.
func (l *Limiter) AllowWorkspace(workspace string) (bool, time.Duration) {
	return l.allow(l.workspaces, workspace, "workspace")
}

// AllowMint takes one proxy-token mint from the resolver token's bucket.
func (l *Limiter) AllowMint(tokenID string) (bool, time.Duration) {
	return l.allow(l.mints, tokenID, "mint")
}

// allow takes one from key's bucket of set, counting a refusal under
// limit.
func (l *Limiter) allow(set *buckets, key, limit string) (bool, time.Duration) {
	ok, wait := set.take(key)
	if !ok {
		l.refused.WithLabelValues(limit).Inc()
	}
	return ok, wait
}

// AuthAttempt is a failed authentication reserved for a token lookup
// before it starts (BeginAuth): the check and the charge are one step, so
// concurrent lookups from one address cannot pass its bound. It ends
// once: Succeeded gives the failure back, Failed keeps it.
type AuthAttempt struct {
	r     *reserveBuckets
	b     *bucket
	ended bool
}

// Succeeded gives the reserved failure back: the token was good (or the
// lookup could not be made: no failed authentication either). A nil
// attempt (no limiter) and an ended one are fine.
func (a *AuthAttempt) Succeeded() { a.end(true) }

// Failed keeps the reserved failure: the token was bad. After Succeeded
// it does nothing, so it may be deferred.
func (a *AuthAttempt) Failed() { a.end(false) }

func (a *AuthAttempt) end(good bool) {
	if a == nil || a.b == nil || a.ended {
		return
	}
	a.ended = true
	a.r.settle(a.b, good)
}

// maxAuthWait bounds how long BeginAuth waits for lookups under way: a
// lookup has its own deadline (2 s by default), so this is a safety net.
const maxAuthWait = 10 * time.Second

// BeginAuth reserves one failed authentication of addr before a lookup of
// a token that may be bad. When addr has none left but lookups of it are
// under way, it waits for them (as long as ctx lasts, at most 10 s): each
// good token among them gives its failure back, so valid tokens presented
// at once are all looked up, at most the burst at a time; once no lookup
// is under way and none is left, it refuses, saying for how long. Whoever
// gets an attempt must end it (Succeeded or Failed).
func (l *Limiter) BeginAuth(ctx context.Context, addr string) (*AuthAttempt, bool, time.Duration) {
	b, ok, wait := l.addrs.reserve(ctx, addrKey(addr))
	if !ok {
		l.refused.WithLabelValues("failed_auth").Inc()
		return nil, false, wait
	}
	return &AuthAttempt{r: l.addrs, b: b}, true, 0
}

// AddrBlocked reports whether addr has used up its failed
// authentications, and for how long. It only looks: BeginAuth is the
// check that also charges.
func (l *Limiter) AddrBlocked(addr string) (bool, time.Duration) {
	blocked, wait := l.addrs.empty(addrKey(addr))
	if blocked {
		l.refused.WithLabelValues("failed_auth").Inc()
	}
	return blocked, wait
}

// Tracked is how many tokens have a bucket now (bounded by MaxTracked).
func (l *Limiter) Tracked() int {
	l.tokens.mu.Lock()
	defer l.tokens.mu.Unlock()
	return len(l.tokens.m)
}

// FailedAuth charges a failed authentication of addr that needed no
// lookup (no token, a malformed one, one remembered as unknown, a proxy
// token whose signature fails). It returns false, and how long to wait,
// when addr had none left: the request is then refused as over the
// limit.
func (l *Limiter) FailedAuth(addr string) (bool, time.Duration) {
	ok, wait := l.addrs.take(addrKey(addr))
	if !ok {
		l.refused.WithLabelValues("failed_auth").Inc()
	}
	return ok, wait
}

// addrKey is the key of a client address: an IPv4 address, or an IPv6
// address's /64 (a host is given a /64, and would otherwise have 2^64
// addresses' worth of failures).
func addrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

type buckets struct {
	limit rate.Limit
	burst int
	max   int
	off   bool

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newBuckets(perSecond float64, burst, max int) *buckets {
	return &buckets{limit: rate.Limit(perSecond), burst: burst, max: max, off: perSecond < 0, m: make(map[string]*rate.Limiter)}
}

// get returns key's bucket, making room when the map is full: buckets
// that have refilled completely are dropped first (forgetting them changes
// nothing), then arbitrary ones.
func (b *buckets) get(key string, now time.Time) *rate.Limiter {
	lim := b.m[key]
	if lim != nil {
		return lim
	}
	if len(b.m) >= b.max {
		for k, l := range b.m {
			if l.TokensAt(now) >= float64(b.burst) {
				delete(b.m, k)
			}
		}
		for k := range b.m {
			if len(b.m) < b.max {
				break
			}
			delete(b.m, k)
		}
	}
	lim = rate.NewLimiter(b.limit, b.burst)
	b.m[key] = lim
	return lim
}

func (b *buckets) take(key string) (bool, time.Duration) {
	if b.off {
		return true, 0
	}
	now := time.Now()
	b.mu.Lock()
	lim := b.get(key, now)
	b.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, b.wait(lim, now)
}

// wait is the time until the bucket holds one request again, in whole
// seconds for Retry-After (at least 1).
func (b *buckets) wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	secs := math.Ceil(missing / float64(b.limit))
	return time.Duration(max(secs, 1)) * time.Second
}

// reserveBuckets are token buckets that can give a token back: a failed
// authentication is charged before the lookup and returned when the token
// turns out good. (rate.Limiter cannot return a token it already gave.)
// A bucket counts its reservations under way, so that a request finding
// it empty can wait for them rather than be refused while good tokens
// are still being looked up.
type reserveBuckets struct {
	perSecond float64
	burst     float64
	max       int
	off       bool

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	// pending is the reservations whose lookups have not ended; settled
	// is closed (and dropped) when one ends, waking the requests waiting.
	pending int
	settled chan struct{}
}

func newReserveBuckets(perSecond float64, burst, max int) *reserveBuckets {
	return &reserveBuckets{perSecond: perSecond, burst: float64(burst), max: max, off: perSecond < 0, m: make(map[string]*bucket)}
}

// refill brings b's tokens to now (b.mu held).
func (r *reserveBuckets) refill(b *bucket, now time.Time) {
	if now.After(b.at) {
		b.tokens = math.Min(r.burst, b.tokens+now.Sub(b.at).Seconds()*r.perSecond)
		b.at = now
	}
}

// get returns key's bucket (r.mu held), making room as buckets.get does.
func (r *reserveBuckets) get(key string, now time.Time) *bucket {
	if b := r.m[key]; b != nil {
		r.refill(b, now)
		return b
	}
	if len(r.m) >= r.max {
		for k, b := range r.m {
			if r.refill(b, now); b.tokens >= r.burst && b.pending == 0 {
				delete(r.m, k)
			}
		}
		for k := range r.m {
			if len(r.m) < r.max {
				break
			}
			delete(r.m, k)
		}
	}
	b := &bucket{tokens: r.burst, at: now}
	r.m[key] = b
	return b
}

// take takes one token atomically, or says how long until one is back.
func (r *reserveBuckets) take(key string) (bool, time.Duration) {
	if r.off {
		return true, 0
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.get(key, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, r.wait(b)
}

// reserve takes one token of key's bucket for a lookup under way (nil
// when the limit is off). An empty bucket with lookups under way is
// waited on: each that ends may give its token back.
func (r *reserveBuckets) reserve(ctx context.Context, key string) (*bucket, bool, time.Duration) {
	if r.off {
		return nil, true, 0
	}
	var timeout <-chan time.Time
	for {
		now := time.Now()
		r.mu.Lock()
		b := r.get(key, now)
		if b.tokens >= 1 {
			b.tokens--
			b.pending++
			r.mu.Unlock()
			return b, true, 0
		}
		if b.pending == 0 {
			wait := r.wait(b)
			r.mu.Unlock()
			return nil, false, wait
		}
		if b.settled == nil {
			b.settled = make(chan struct{})
		}
		settled := b.settled
		r.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(maxAuthWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, false, time.Second
		case <-timeout:
			return nil, false, time.Second
		}
	}
}

// settle ends a reservation of b: a good token gives its token back.
func (r *reserveBuckets) settle(b *bucket, good bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.pending--
	if good {
		r.refill(b, time.Now())
		b.tokens = math.Min(r.burst, b.tokens+1)
	}
	if b.settled != nil {
		close(b.settled)
		b.settled = nil
	}
}

func (r *reserveBuckets) empty(key string) (bool, time.Duration) {
	if r.off {
		return false, 0
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.m[key]
	if b == nil {
		return false, 0
	}
	if r.refill(b, now); b.tokens >= 1 {
		return false, 0
	}
	return true, r.wait(b)
}

// wait is the time until b holds one token again, in whole seconds for
// Retry-After (at least 1).
func (r *reserveBuckets) wait(b *bucket) time.Duration {
	secs := math.Ceil((1 - b.tokens) / r.perSecond)
	return time.Duration(max(secs, 1)) * time.Second
}
