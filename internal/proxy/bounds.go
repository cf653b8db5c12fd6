package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// bounds count the calls in flight on this replica, per workspace and per
// proxy token, and the bytes of request bodies kept for a retry. A call
// past a bound is refused at once (429, retry after a second): waiting
// would hold the caller's connection, which is what the bound saves.
type bounds struct {
	maxTotal, maxWorkspace, maxToken int
	maxKept                          int64

	mu          sync.Mutex
	total       int
	byWorkspace map[string]int
	byToken     map[string]int
	kept        int64
}

func newBounds(cfg Config) *bounds {
	return &bounds{maxTotal: cfg.MaxInFlight, maxWorkspace: cfg.MaxInFlightPerWorkspace, maxToken: cfg.MaxInFlightPerToken,
		maxKept: cfg.RetryBufferBytes, byWorkspace: map[string]int{}, byToken: map[string]int{}}
}

// boundRetryAfter is the Retry-After of a call refused by a bound.
const boundRetryAfter = time.Second

// enter counts call in, or says which bound it is over. token is the
// proxy token's id ("" for a resolver token, which the per-token bound
// does not cover: it is the platform's own execution path).
func (b *bounds) enter(workspace, token string) (leave func(), refused *Failure, bound string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.total >= b.maxTotal:
		return nil, busy(fmt.Sprintf("this replica forwards %d calls at once, its bound; retry shortly", b.maxTotal)), "replica"
	case b.byWorkspace[workspace] >= b.maxWorkspace:
		return nil, busy(fmt.Sprintf("this workspace has %d calls in flight on this replica, its bound; retry when one ends", b.maxWorkspace)), "workspace"
	case token != "" && b.byToken[token] >= b.maxToken:
		return nil, busy(fmt.Sprintf("this proxy token has %d calls in flight on this replica, its bound; retry when one ends", b.maxToken)), "token"
	}
	b.total++
	b.byWorkspace[workspace]++
	if token != "" {
		b.byToken[token]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.total--
			if b.byWorkspace[workspace]--; b.byWorkspace[workspace] == 0 {
				delete(b.byWorkspace, workspace)
			}
			if token != "" {
				if b.byToken[token]--; b.byToken[token] == 0 {
					delete(b.byToken, token)
				}
			}
		})
	}, nil, ""
}

// keep reserves n bytes of the retry buffer for a body, or refuses.
func (b *bounds) keep(n int64) (release func(), ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kept+n > b.maxKept {
		return nil, false
	}
	b.kept += n
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.kept -= n
			b.mu.Unlock()
		})
	}, true
}

// keptBytes is the retry buffer in use.
func (b *bounds) keptBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kept
}

func busy(msg string) *Failure {
	return &Failure{Status: http.StatusTooManyRequests, Code: "too_many_calls", Message: msg, RetryAfter: boundRetryAfter}
}
