package auth

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/ids"
)

// maxDenialKeys bounds the distinct (token, scope, action) keys held
// between flushes; past it, further keys are counted in one overflow row.
const maxDenialKeys = 10_000

type denialKey struct {
	token string
	// actor names the caller in the row ("token:ID", or a person's
	// Subject).
	actor    string
	role     Role
	scope    broker.Scope
	provider string
	route    string
	// offTrail: the denied scope is one the token does not reach; the
	// row goes to the operator-wide trail (scope is then zero), and all
	// such denials of a token and route within an interval are one row
	// however many scopes they name.
	offTrail bool
}

type denialCount struct {
	count      int
	remoteAddr string
	requestID  string
	target     broker.Scope // offTrail: the latest scope named
}

// recordDenial notes a denied call of p on scope (Service.RecordDenial).
// It lands in the trail of scope only when p reaches that trail (see
// reachesTrail); a denial of a scope p does not reach lands in the
// operator-wide trail, so that no token can write into the trail of a
// tenant it is not part of by knocking at its door.
func (s *Service) recordDenial(ctx context.Context, p Principal, scope broker.Scope, provider, route, remoteAddr, requestID string) error {
	role := p.Role
	if p.Scoped != nil {
		// A person's role where they were refused, not their broadest.
		if role = p.scopedRole(scope); role == "" {
			role = "none"
		}
	}
	k := denialKey{token: p.TokenID, actor: p.Subject(), role: role, scope: scope, provider: provider, route: route}
	if scope.Kind != "" && !p.reachesTrail(scope) {
		k = denialKey{token: p.TokenID, actor: p.Subject(), role: role, route: route, offTrail: true}
	}
	return s.denials.record(ctx, k, scope, remoteAddr, requestID)
}

// reachesTrail says whether scope's audit trail is one p's holder belongs
// to: an operator's every trail; an admin's or a reader's, the workspaces
// and organizations the token lists; a resolver's, the workspaces it is
// limited to. A resolver of every workspace, a proxy token or an unknown
// role reaches no tenant's trail.
func (p Principal) reachesTrail(scope broker.Scope) bool {
	switch p.Role {
	case RoleOperator:
		return true
	case RoleAdmin, RoleReader:
		return p.reaches(scope)
	case RoleResolver:
		return scope.Kind == broker.ScopeWorkspace && slices.Contains(p.Workspaces, scope.ID)
	}
	return false
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

// record notes a denial of key k; target is the scope the request named
// (for the detail of an off-trail row).
func (d *denialRecorder) record(ctx context.Context, k denialKey, target broker.Scope, remoteAddr, requestID string) error {
	d.mu.Lock()
	var due []broker.AuditEvent
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
		c.remoteAddr, c.requestID, c.target = remoteAddr, requestID, target
	}
	d.mu.Unlock()
	if first {
		due = append(due, denialEvent(k, denialCount{count: 1, remoteAddr: remoteAddr, requestID: requestID, target: target}, 0))
	}
	if len(due) == 0 {
		return nil
	}
	return d.store.AppendAudits(ctx, due)
}

// takeLocked ends the interval: the counted denials become events.
func (d *denialRecorder) takeLocked() []broker.AuditEvent {
	evs := make([]broker.AuditEvent, 0, len(d.pending))
	for k, c := range d.pending {
		evs = append(evs, denialEvent(k, *c, d.interval))
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

func denialEvent(k denialKey, c denialCount, interval time.Duration) broker.AuditEvent {
	detail := fmt.Sprintf("role %s may not %s", k.role, k.route)
	if k.offTrail {
		detail += " on " + scopeName(c.target) + ", which the token does not reach"
	}
	if interval > 0 {
		detail += fmt.Sprintf(" (%d more within %s after the first; the request named is the latest)", c.count, interval)
	}
	actor := k.actor
	if actor == "" {
		actor = "token:" + k.token
	}
	if k.token == "" {
		actor = "(many)"
	}
	return broker.AuditEvent{ScopeKind: k.scope.Kind, ScopeID: k.scope.ID, Provider: k.provider, Action: "access.denied", Actor: actor,
		RemoteAddr: c.remoteAddr, Outcome: "forbidden", RequestID: c.requestID, Count: c.count, Detail: detail}
}

// scopeName names a scope in a detail; an id that breaks the id rule (the
// handlers refuse those before any authorization) is not repeated.
func scopeName(s broker.Scope) string {
	switch {
	case s.Kind == broker.ScopeHosted:
		return "the hosted keys"
	case !ids.Valid(s.ID):
		return string(s.Kind) + " (an invalid id)"
	}
	return string(s.Kind) + " " + s.ID
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
