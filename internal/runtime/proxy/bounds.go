package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// bounds count the calls in flight on this replica, per workspace and per
// proxy token, and the bytes of request bodies kept for a retry, in all
// and per workspace. A call past a bound is refused at once (429, retry
// after a second): waiting would hold the caller's connection, which is
// what the bound saves.
//
// No few workspaces take a whole replica: a workspace has a bound of its
// own (calls: MaxInFlightPerWorkspace; kept bytes: its share, the same
// fraction of the buffer, at least one body of the retry limit), and the
// last quarter of the replica's calls and of its buffer is kept for
// workspaces that hold little of it (fewer than an eighth of their own
// bound). With the defaults, six workspaces at their bound hold 384 of 512
// calls and 96 of 128 MiB, and the rest is left to workspaces with fewer
// than 8 calls and 2 MiB each. (An operator who lets one workspace take
// the whole replica, a bound per workspace as large as the replica's,
// gets no reserve: a single tenant.) A body's bytes are reserved as they
// arrive, a step ahead of them, never its declared length at once, so a
// body that is slow to come holds at most its first step (keepStep).
//
// There is no share per issuer (the resolver token that minted a proxy
// token): every tenant's proxy tokens are usually minted by the
// platform's one resolver token, so such a share would bound all tenants
// together, which the replica's bound does already.
type bounds struct {
	maxTotal, maxWorkspace, maxToken int
	// Past reserveFrom calls in flight, only a workspace with fewer than
	// lightCalls takes another.
	reserveFrom, lightCalls int
	maxKept                 int64
	// keptShare is what one workspace's bodies may hold of the buffer;
	// past keptReserveFrom bytes, only a workspace holding less than
	// lightKept reserves more.
	keptShare, keptReserveFrom, lightKept int64

	mu          sync.Mutex
	total       int
	byWorkspace map[string]int
	byToken     map[string]int
	kept        int64
	keptBy      map[string]int64
}

// keepStep is the first reservation of a kept body (or its whole length
// when smaller); each further one doubles what is held, up to the body's
// declared length.
const keepStep = 64 << 10

func newBounds(cfg Config) *bounds {
	b := &bounds{maxTotal: cfg.MaxInFlight, maxWorkspace: cfg.MaxInFlightPerWorkspace, maxToken: cfg.MaxInFlightPerToken,
		maxKept: cfg.RetryBufferBytes, byWorkspace: map[string]int{}, byToken: map[string]int{}, keptBy: map[string]int64{}}
	b.reserveFrom, b.lightCalls = b.maxTotal, b.maxWorkspace
	if b.maxWorkspace < b.maxTotal {
		b.reserveFrom = b.maxTotal - b.maxTotal/4
		b.lightCalls = max(1, b.maxWorkspace/8)
	}
	b.keptShare = b.maxKept
	if b.maxWorkspace < b.maxTotal {
		b.keptShare = b.maxKept * int64(b.maxWorkspace) / int64(b.maxTotal)
	}
	b.keptShare = min(b.maxKept, max(b.keptShare, cfg.RetryBodyLimit))
	b.keptReserveFrom, b.lightKept = b.maxKept, b.keptShare
	if b.keptShare < b.maxKept {
		b.keptReserveFrom = b.maxKept - b.maxKept/4
		b.lightKept = b.keptShare / 8
	}
	return b
}

// boundRetryAfter is the Retry-After of a call refused by a bound.
const boundRetryAfter = time.Second

// enter counts call in, or says which bound it is over. token is the
// proxy token's id ("" for a resolver token, which the per-token bound
// does not cover: it is the platform's own execution path).
func (b *bounds) enter(workspace, token string) (leave func(), refused *Failure, bound string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.byWorkspace[workspace]
	switch {
	case b.total >= b.maxTotal:
		return nil, busy(fmt.Sprintf("this replica forwards %d calls at once, its bound; retry shortly", b.maxTotal)), "replica"
	case held >= b.maxWorkspace:
		return nil, busy(fmt.Sprintf("this workspace has %d calls in flight on this replica, its bound; retry when one ends", b.maxWorkspace)), "workspace"
	case token != "" && b.byToken[token] >= b.maxToken:
		return nil, busy(fmt.Sprintf("this proxy token has %d calls in flight on this replica, its bound; retry when one ends", b.maxToken)), "token"
	case b.total >= b.reserveFrom && held >= b.lightCalls:
		light := fmt.Sprintf("fewer than %d calls", b.lightCalls)
		if b.lightCalls == 1 {
			light = "no call"
		}
		return nil, busy(fmt.Sprintf("this replica is busy: its last %d call slots are kept for workspaces with %s in flight, and this workspace has %d; retry when one ends",
			b.maxTotal-b.reserveFrom, light, held)), "replica_reserve"
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

// keptRefusal is a body that would pass a bound of the retry buffer:
// bound names it for the metrics, failure is the caller's 429.
type keptRefusal struct {
	bound   string
	failure Failure
}

func (e *keptRefusal) Error() string { return e.failure.Message }

// keepBody reads a request body of declared bytes (its Content-Length, at
// most the retry limit) to keep it for a retry, reserving the retry
// buffer as its bytes arrive: keepStep first, then twice what is held
// each time it is full, up to declared. A reservation past the replica's
// buffer, the workspace's share or the reserve ends the read with a
// *keptRefusal; a body that breaks off ends it with the read's error
// (io.ErrUnexpectedEOF when it ends early). release gives the
// reservation back; call it as soon as no retry can happen any more (the
// first attempt's answer is going back to the caller). It may be called
// more than once.
func (b *bounds) keepBody(body io.Reader, declared int64, workspace string) (kept []byte, release func(), err error) {
	var held int64
	var once sync.Once
	release = func() { once.Do(func() { b.unkeep(workspace, held) }) }
	grow := func(to int64) error {
		if err := b.reserveKept(workspace, to-held); err != nil {
			return err
		}
		held = to
		return nil
	}
	if err := grow(min(declared, keepStep)); err != nil {
		return nil, nil, err
	}
	buf := make([]byte, 0, held)
	for int64(len(buf)) < declared {
		if len(buf) == cap(buf) {
			if err := grow(min(declared, 2*held)); err != nil {
				release()
				return nil, nil, err
			}
			next := make([]byte, len(buf), held)
			copy(next, buf)
			buf = next
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF && int64(len(buf)) == declared: // all of it
		case err == io.EOF:
			release()
			return nil, nil, io.ErrUnexpectedEOF
		case err != nil:
			release()
			return nil, nil, err
		}
	}
	return buf, release, nil
}

// reserveKept reserves n more bytes of the buffer for workspace, or says
// which bound it would pass.
func (b *bounds) reserveKept(workspace string, n int64) error {
	if n <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.keptBy[workspace]
	switch {
	case b.kept+n > b.maxKept:
		return &keptRefusal{bound: "retry_buffer", failure: *busy(fmt.Sprintf(
			"this replica holds %d bytes of request bodies for retries, its bound; retry shortly", b.maxKept))}
	case held+n > b.keptShare:
		return &keptRefusal{bound: "retry_buffer_workspace", failure: *busy(fmt.Sprintf(
			"this workspace's calls hold %d bytes of request bodies for retries on this replica, its share; retry when one ends", b.keptShare))}
	case b.kept+n > b.keptReserveFrom && held >= b.lightKept:
		return &keptRefusal{bound: "retry_buffer_reserve", failure: *busy(fmt.Sprintf(
			"this replica's request bodies for retries are busy: its last %d bytes are kept for workspaces holding less than %d, and this workspace's calls hold %d; retry when one ends",
			b.maxKept-b.keptReserveFrom, b.lightKept, held))}
	}
	b.kept += n
	b.keptBy[workspace] = held + n
	return nil
}

// unkeep gives back n bytes workspace held.
func (b *bounds) unkeep(workspace string, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kept -= n
	if b.keptBy[workspace] -= n; b.keptBy[workspace] <= 0 {
		delete(b.keptBy, workspace)
	}
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
