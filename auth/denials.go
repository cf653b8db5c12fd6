package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/store"
)

// maxDenialKeys bounds the distinct (token, scope, action) keys held
// between flushes; past it, further keys are counted in one overflow row.
const maxDenialKeys = 10_000

type denialKey struct {
	token    string
	role     Role
	scope    broker.Scope
	provider string
	route    string
}

type denialCount struct {
	count      int
	remoteAddr string
	requestID  string
}

// denialRecorder aggregates denied requests. The first denial of a key in
// an interval is written at once (an admin sees it without delay); the
// ones after it are counted and written as one row when the interval ends.
type denialRecorder struct {
	store    Store
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	started time.Time
	seen    map[denialKey]bool // written once in this interval
	pending map[denialKey]*denialCount
}

func newDenialRecorder(st Store, interval time.Duration, now func() time.Time) *denialRecorder {
	return &denialRecorder{store: st, interval: interval, now: now, started: now(),
		seen: make(map[denialKey]bool), pending: make(map[denialKey]*denialCount)}
}

func (d *denialRecorder) record(ctx context.Context, k denialKey, remoteAddr, requestID string) error {
	d.mu.Lock()
	var due []store.AuditEvent
	if d.now().Sub(d.started) >= d.interval {
		due = d.takeLocked()
	}
	first := !d.seen[k] && len(d.seen) < maxDenialKeys
	switch {
	case first:
		d.seen[k] = true
	case len(d.pending) >= maxDenialKeys && d.pending[k] == nil:
		k = denialKey{route: "(many distinct denials)"}
		fallthrough
	default:
		c := d.pending[k]
		if c == nil {
			c = &denialCount{}
			d.pending[k] = c
		}
		c.count++
		c.remoteAddr, c.requestID = remoteAddr, requestID
	}
	d.mu.Unlock()
	if first {
		due = append(due, denialEvent(k, 1, remoteAddr, requestID, 0))
	}
	if len(due) == 0 {
		return nil
	}
	return d.store.AppendAudits(ctx, due)
}

// takeLocked ends the interval: the counted denials become events.
func (d *denialRecorder) takeLocked() []store.AuditEvent {
	evs := make([]store.AuditEvent, 0, len(d.pending))
	for k, c := range d.pending {
		evs = append(evs, denialEvent(k, c.count, c.remoteAddr, c.requestID, d.interval))
	}
	d.started = d.now()
	clear(d.seen)
	clear(d.pending)
	return evs
}

func (d *denialRecorder) flush(ctx context.Context) error {
	d.mu.Lock()
	evs := d.takeLocked()
	d.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	return d.store.AppendAudits(ctx, evs)
}

func denialEvent(k denialKey, count int, remoteAddr, requestID string, interval time.Duration) store.AuditEvent {
	detail := fmt.Sprintf("role %s may not %s", k.role, k.route)
	if interval > 0 {
		detail += fmt.Sprintf(" (%d more within %s after the first; the request named is the latest)", count, interval)
	}
	actor := "token:" + k.token
	if k.token == "" {
		actor = "(many)"
	}
	return store.AuditEvent{Scope: k.scope.Kind, ScopeID: k.scope.ID, Provider: k.provider, Action: "access.denied", Actor: actor,
		RemoteAddr: remoteAddr, Outcome: "forbidden", RequestID: requestID, Count: count, Detail: detail}
}

// Run flushes the aggregated denials every interval until ctx is done, and
// once more then.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.DenialInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := s.denials.flush(ctx); err != nil {
				s.opts.Logger.Warn("could not write aggregated denials to the audit trail", "error", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.denials.flush(fctx); err != nil {
				s.opts.Logger.Warn("could not write aggregated denials to the audit trail at shutdown", "error", err)
			}
			cancel()
			return
		}
	}
}
