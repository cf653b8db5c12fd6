package auth

import (
	"math"
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
	// from one client address, with FailedAuthBurst on top; past it, every
	// request from the address that is not yet authenticated is refused
	// before any lookup. Default: 5/s, burst 20.
	FailedAuthPerAddr float64
	FailedAuthBurst   int
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
	if r.MaxTracked <= 0 {
		r.MaxTracked = 100_000
	}
	return r
}

// Limiter enforces RateLimits with one token bucket per token and per
// client address (golang.org/x/time/rate), in bounded maps.
type Limiter struct {
	tokens, addrs, reports *buckets
	refused                *prometheus.CounterVec
}

// NewLimiter returns the limiter of limits; refusals are counted in
// keybroker_rate_limited_total{limit="token"|"failed_auth"} on reg (when
// not nil).
func NewLimiter(limits RateLimits, reg prometheus.Registerer) *Limiter {
	limits = limits.withDefaults()
	l := &Limiter{
		tokens:  newBuckets(limits.PerToken, limits.PerTokenBurst, limits.MaxTracked),
		addrs:   newBuckets(limits.FailedAuthPerAddr, limits.FailedAuthBurst, limits.MaxTracked),
		reports: newBuckets(limits.ReportsPerToken, limits.ReportsBurst, limits.MaxTracked),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keybroker_rate_limited_total",
			Help: "Requests refused with 429, by the limit that refused them (token: an authenticated token's rate; failed_auth: a client address's failed authentications; report: a token's reports).",
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
	ok, wait := l.tokens.take(tokenID)
	if !ok {
		l.refused.WithLabelValues("token").Inc()
	}
	return ok, wait
}

// AllowReport takes one report from the token's report bucket.
func (l *Limiter) AllowReport(tokenID string) (bool, time.Duration) {
	ok, wait := l.reports.take(tokenID)
	if !ok {
		l.refused.WithLabelValues("report").Inc()
	}
	return ok, wait
}

// AddrBlocked reports whether addr has used up its failed
// authentications, and for how long.
func (l *Limiter) AddrBlocked(addr string) (bool, time.Duration) {
	blocked, wait := l.addrs.empty(addr)
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

// FailedAuth counts a failed authentication from addr.
func (l *Limiter) FailedAuth(addr string) { l.addrs.take(addr) }

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

func (b *buckets) empty(key string) (bool, time.Duration) {
	if b.off {
		return false, 0
	}
	now := time.Now()
	b.mu.Lock()
	lim := b.m[key]
	b.mu.Unlock()
	if lim == nil || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, b.wait(lim, now)
}

// wait is the time until the bucket holds one request again, in whole
// seconds for Retry-After (at least 1).
func (b *buckets) wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	secs := math.Ceil(missing / float64(b.limit))
	return time.Duration(max(secs, 1)) * time.Second
}
