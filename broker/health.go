package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/keybroker/keybroker/providers"
)

// Health of a key, as the API shows it.
const (
	HealthHealthy     = "healthy"
	HealthCoolingDown = "cooling_down"
	HealthFailing     = "failing"
)

// Outcomes of a call made with a resolved key (POST /v1/resolve/report).
const (
	OutcomeOK            = "ok"
	OutcomeUnauthorized  = "unauthorized"
	OutcomeForbidden     = "forbidden"
	OutcomeQuotaExceeded = "quota_exceeded"
	OutcomeRateLimited   = "rate_limited"
	OutcomeServerError   = "server_error"
)

// Audit actions of health changes.
const (
	ActionHealth = "key.health"
	ActionTest   = "key.test"
)

// Cooldown bounds: a cooldown without Retry-After backs off from
// CooldownMin, doubling with each consecutive one, to CooldownMax (with
// ±20 % jitter); a Retry-After is taken up to MaxRetryAfter.
const (
	CooldownMin   = 30 * time.Second
	CooldownMax   = 10 * time.Minute
	MaxRetryAfter = time.Hour
)

// HealthChange is what a report or a test does to a key's health.
type HealthChange struct {
	// Kind is one of the Health* kinds below.
	Kind HealthKind
	// Reason says why, for the admins ("unauthorized: the provider
	// answered 401").
	Reason string
	// Cooldown, for HealthCooldown, is how long (already backed off and
	// jittered, or the provider's Retry-After).
	Cooldown time.Duration
}

// HealthKind names a health change.
type HealthKind int

const (
	// HealthCooldown keeps a healthy key out of its pool for a while,
	// unless it is cooling down or failing already.
	HealthCooldown HealthKind = iota + 1
	// HealthFail marks a key failing, unless it is already.
	HealthFail
	// HealthClearCooldown ends a cooldown early ("ok").
	HealthClearCooldown
	// HealthRestore makes a key healthy (a test passed, an admin set it
	// active).
	HealthRestore
)

// HealthStore is what health needs of PostgreSQL: one conditional update
// that reports whether it changed anything (so that a storm of reports
// changes a key once), with its audit event and announcement.
type HealthStore interface {
	ApplyHealth(ctx context.Context, ref KeyRef, change HealthChange, ev AuditEvent) (KeyRecord, bool, error)
}

// healthOf is the health a record's fields mean at now.
func healthOf(failing bool, cooldownUntil, now time.Time) string {
	switch {
	case failing:
		return HealthFailing
	case !cooldownUntil.IsZero() && now.Before(cooldownUntil):
		return HealthCoolingDown
	}
	return HealthHealthy
}

// ReportRequest says what a provider answered to a call made with a
// resolved key.
type ReportRequest struct {
	// Caller is the reporting token's id: it must be the one that got
	// the resolution.
	Caller       string
	RemoteAddr   string
	RequestID    string
	ResolutionID string
	Outcome      string
	// RetryAfter is the provider's Retry-After, when it sent one (0:
	// none); for rate_limited and server_error.
	RetryAfter time.Duration
	// Proxied: keybroker's credential proxy saw the provider's answer to
	// a call whose endpoint and body the caller chose (a sandbox). A
	// refusal (unauthorized, forbidden, quota_exceeded) is then the
	// provider's word about that call, not about the key: it takes the
	// key out of the caller's chain alone, until keybroker's own check
	// with the provider confirms it.
	Proxied bool
}

// ReportResult says what a report did.
type ReportResult struct {
	Ref KeyRef
	// Health is the key's health now, for the reporting workspace;
	// Changed whether this report changed it (a report that repeats what
	// is known changes nothing).
	Health  string
	Changed bool
	// WorkspaceOnly: the key is not the reporting workspace's own (its
	// organization's, or a hosted key), so the report changed it for that
	// workspace alone, on this replica; CallerOnly: a refusal the proxy
	// saw, which changed the key for the calling token alone (in that
	// workspace, on this replica); Verifying: keybroker is asking the
	// provider whether it refuses the key, and marks it failing for
	// everyone if it does.
	WorkspaceOnly bool
	CallerOnly    bool
	Verifying     bool
}

// Report applies what a provider answered to a call made with a resolved
// key. About a key of the reporting workspace's own pool: rate_limited and
// server_error put the key in cooldown, unauthorized, forbidden and
// quota_exceeded mark it failing, ok ends a cooldown early, for every
// workspace on every replica. About a key the workspace does not own (its
// organization's, a hosted key), the report changes the key for that
// workspace alone, on this replica: a cooldown (a refusal too), or ok
// ending it; and a refusal makes keybroker check the key with the
// provider (bounded, deduplicated) before it fails for everyone. A refusal
// the proxy saw (req.Proxied), about any key, is a cooldown for the
// calling token alone (in that workspace, on this replica) and the same
// check: the caller chose the call the provider refused. A report that
// repeats what this replica knows changes nothing and touches no store.
func (b *Broker) Report(ctx context.Context, req ReportRequest) (ReportResult, error) {
	if b.health == nil {
		return ReportResult{}, fmt.Errorf("report: %w: no health store", ErrNotConfigured)
	}
	now := b.now()
	res, err := b.resolutionIDs.parse(req.ResolutionID, req.Caller, now)
	if err != nil {
		return ReportResult{}, fmt.Errorf("report: %w", err)
	}
	if req.RetryAfter < 0 || req.RetryAfter > MaxRetryAfter {
		return ReportResult{}, refuse(ErrInvalidRequest, "retryAfterSeconds must be from 0 to %d", int(MaxRetryAfter.Seconds()))
	}
	switch req.Outcome {
	case OutcomeRateLimited, OutcomeServerError, OutcomeUnauthorized, OutcomeForbidden, OutcomeQuotaExceeded, OutcomeOK:
	default:
		return ReportResult{}, refuse(ErrInvalidRequest, "outcome must be one of ok, unauthorized, forbidden, quota_exceeded, rate_limited, server_error")
	}
	// A problem with a key drops the short-lived credential minted from
	// it, unless it is younger than reportedRemintAfter: the next resolve
	// mints another (docs/credentials.md).
	if req.Outcome != OutcomeOK {
		b.mints.forgetReported(res.Ref.CacheKey(), now)
	}
	// Whatever the proxy saw answered a call the sandbox chose (its
	// endpoint, body and model): a refusal, a rate limit (a request over a
	// model's per-minute tokens is a 429) or an error takes the key from
	// that caller alone, never from the workspace's other callers.
	if req.Proxied && req.Outcome != OutcomeOK {
		return b.reportRefusedCall(ctx, res, req, now), nil
	}
	if !res.owned() {
		return b.reportShared(ctx, res, req, now), nil
	}
	ref := res.Ref
	m := b.memberOf(ref)
	var change HealthChange
	switch req.Outcome {
	case OutcomeRateLimited, OutcomeServerError:
		if m != nil && (m.failing || m.coolingAt(now)) {
			return ReportResult{Ref: ref, Health: m.health(now)}, nil
		}
		d := req.RetryAfter
		if d == 0 {
			cooldowns := 0
			if m != nil {
				cooldowns = m.cooldowns
			}
			d = backoff(cooldowns)
		}
		change = HealthChange{Kind: HealthCooldown, Cooldown: d,
			Reason: fmt.Sprintf("%s reported: cooling down for %s", req.Outcome, d.Round(time.Second))}
	case OutcomeUnauthorized, OutcomeForbidden, OutcomeQuotaExceeded:
		if m != nil && m.failing {
			return ReportResult{Ref: ref, Health: HealthFailing}, nil
		}
		change = HealthChange{Kind: HealthFail, Reason: req.Outcome + " reported: the provider refused the key"}
	case OutcomeOK:
		if m != nil && !m.coolingAt(now) && m.cooldowns == 0 {
			return ReportResult{Ref: ref, Health: m.health(now)}, nil
		}
		change = HealthChange{Kind: HealthClearCooldown, Reason: "ok reported: cooldown ended"}
	}
	b.metrics.reported(ref.Provider, req.Outcome)
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionHealth,
		Actor: "token:" + req.Caller, RemoteAddr: req.RemoteAddr, RequestID: req.RequestID, Outcome: OutcomeSuccess,
		Version: &res.Version, Detail: change.Reason}
	return b.applyHealth(ctx, ref, change, ev)
}

// reportShared applies a report about a key the reporting workspace does
// not own: for that workspace alone, on this replica; a refusal is checked
// with the provider before it counts for anyone else. Nothing is audited
// on the reporter's word (a tenant must not fill another scope's trail);
// keybroker's own checks are.
func (b *Broker) reportShared(ctx context.Context, res Resolved, req ReportRequest, now time.Time) ReportResult {
	ref, ws := res.Ref, res.Workspace
	out := ReportResult{Ref: ref, WorkspaceOnly: true}
	m := b.memberOf(ref)
	known := HealthHealthy
	if m != nil {
		known = m.health(now)
	}
	b.metrics.reportedShared(ref.Provider, req.Outcome)
	if m != nil && m.failing {
		out.Health = HealthFailing // out of every chain already
		return out
	}
	switch req.Outcome {
	case OutcomeOK:
		out.Changed = b.cooldowns.clear(coolSubject{workspace: ws}, ref)
		out.Health = known
		return out
	case OutcomeRateLimited, OutcomeServerError:
		if m != nil && m.coolingAt(now) {
			out.Health = HealthCoolingDown // cooling down for everyone already
			return out
		}
	}
	b.coolLocally(ctx, coolSubject{workspace: ws}, res, req, now, &out)
	if out.Changed {
		b.log.DebugContext(ctx, "a shared key cooled down for one workspace on its report", "key", ref.String(), "workspace", ws,
			"outcome", req.Outcome, "verifying", out.Verifying)
	}
	return out
}

// reportRefusedCall applies a refusal (or a rate limit, or an error) the
// proxy saw, about any key: the caller chose the endpoint and the body, and a provider refuses a call
// for reasons of the call (an endpoint outside a restricted key's scopes,
// an organization header the key is not in), so the key leaves the
// calling token's chain alone, on this replica — its retry and its next
// calls are served the next key, everyone else's are not changed — and
// keybroker checks the key with the provider before it fails for
// everyone. Nothing is audited on the report (keybroker's check is).
func (b *Broker) reportRefusedCall(ctx context.Context, res Resolved, req ReportRequest, now time.Time) ReportResult {
	ref := res.Ref
	out := ReportResult{Ref: ref, CallerOnly: true}
	b.metrics.reportedByCall(ref.Provider, req.Outcome)
	if m := b.memberOf(ref); m != nil && m.failing {
		out.Health = HealthFailing // out of every chain already
		return out
	}
	b.coolLocally(ctx, coolSubject{workspace: res.Workspace, caller: req.Caller}, res, req, now, &out)
	if out.Changed {
		b.log.DebugContext(ctx, "a key cooled down for one caller after the provider refused or limited its proxied call", "key", ref.String(),
			"workspace", res.Workspace, "caller", req.Caller, "outcome", req.Outcome, "verifying", out.Verifying)
	}
	return out
}

// coolLocally takes the reported key out of subject's chain on this
// replica (the provider's Retry-After, else the backoff of subject's
// strikes) and, for a refusal, asks the provider about the key.
func (b *Broker) coolLocally(ctx context.Context, subject coolSubject, res Resolved, req ReportRequest, now time.Time, out *ReportResult) {
	_, out.Changed = b.cooldowns.cool(subject, res.Ref, now, func(strikes int) time.Duration {
		if req.RetryAfter > 0 {
			return req.RetryAfter
		}
		return backoff(strikes)
	})
	out.Health = HealthCoolingDown
	if refusal(req.Outcome) {
		out.Verifying = b.verifyReported(ctx, res, req)
	}
}

// refusal says whether outcome is the provider refusing the key (401,
// 403, 402), as opposed to a rate limit, an error or ok.
func refusal(outcome string) bool {
	switch outcome {
	case OutcomeUnauthorized, OutcomeForbidden, OutcomeQuotaExceeded:
		return true
	}
	return false
}

func (b *Broker) applyHealth(ctx context.Context, ref KeyRef, change HealthChange, ev AuditEvent) (ReportResult, error) {
	rec, changed, err := b.health.ApplyHealth(ctx, ref, change, ev)
	if errors.Is(err, ErrNotFound) {
		return ReportResult{}, fmt.Errorf("health of %s: %w: the key is gone", ref, ErrNotFound)
	}
	if err != nil {
		return ReportResult{}, fmt.Errorf("health of %s: %w", ref, fromStore(err))
	}
	if changed {
		b.poolChangedHere(ctx, ref.Pool())
		health := healthOf(rec.Failing, rec.CooldownUntil, b.now())
		b.metrics.healthChanged(ref.Provider, health)
		b.log.InfoContext(ctx, "key health changed", "key", ref.String(), "health", health, "reason", change.Reason)
		b.events.publish(ev)
	}
	return ReportResult{Ref: ref, Health: healthOf(rec.Failing, rec.CooldownUntil, b.now()), Changed: changed}, nil
}

// backoff is the cooldown after n consecutive ones: 30 s doubling to 10
// min, ±20 %.
func backoff(n int) time.Duration {
	d := CooldownMin
	for i := 0; i < n && d < CooldownMax; i++ {
		d *= 2
	}
	d = min(d, CooldownMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// memberOf is ref's pool member as this replica knows it (nil: unknown).
func (b *Broker) memberOf(ref KeyRef) *member {
	if b.pools == nil {
		return nil
	}
	p, _ := b.pools.peek(ref.Pool())
	if p == nil {
		return nil
	}
	for i := range p.members {
		if p.members[i].ref == ref {
			return &p.members[i]
		}
	}
	return nil
}

// KeyChecker asks a provider whether it accepts a credential, with the
// provider's cheapest authenticated call (providers.Checker).
type KeyChecker interface {
	Check(ctx context.Context, p *providers.Provider, c providers.Credential) providers.CheckResult
}

var _ KeyChecker = (*providers.Checker)(nil)

// ErrVerificationFailed: the provider refused the key of a verified write
// (nothing was stored).
var ErrVerificationFailed = errors.New("the provider refused the key")

// verify checks a key before a verified write: refused is
// ErrVerificationFailed, unreachable ErrUnavailable.
func (b *Broker) verify(ctx context.Context, p *providers.Provider, c providers.Credential) error {
	if b.checker == nil {
		return fmt.Errorf("verify: %w: no provider checker", ErrNotConfigured)
	}
	r := b.check(ctx, p, c)
	switch r.Verdict {
	case providers.VerdictAccepted, providers.VerdictRateLimited:
		return nil
	case providers.VerdictRefused:
		return refuse(ErrVerificationFailed, "%s refused the key (%s); nothing was stored", p.DisplayName, r.Detail)
	}
	return errors.Join(ErrUnavailable, refuse(ErrUnavailable, "%s could not be asked (%s); nothing was stored", p.DisplayName, r.Detail))
}

// check runs one provider check within the checker's concurrency bound.
func (b *Broker) check(ctx context.Context, p *providers.Provider, c providers.Credential) providers.CheckResult {
	select {
	case b.checkerLimit <- struct{}{}:
		defer func() { <-b.checkerLimit }()
	case <-ctx.Done():
		return providers.CheckResult{Verdict: providers.VerdictUnreachable, Detail: "gave up waiting for a check slot"}
	}
	r := b.checker.Check(ctx, p, c)
	b.metrics.checked(p.ID, r.Verdict)
	return r
}

// KeyCheck is the answer of TestKey.
type KeyCheck struct {
	providers.CheckResult
	// Health is the key's health after the test.
	Health    string
	CheckedAt time.Time
}

// CheckKey asks the provider whether it accepts key ref (read with the
// reader identity): accepted returns a failing or cooling key to its pool,
// refused marks it failing. Both are audited.
func (b *Broker) CheckKey(ctx context.Context, actor Actor, ref KeyRef) (KeyCheck, error) {
	if err := b.canManage(); err != nil {
		return KeyCheck{}, err
	}
	if b.reader == nil {
		return KeyCheck{}, fmt.Errorf("test: %w: it reads the key with the Vault reader identity", ErrNotConfigured)
	}
	if b.checker == nil {
		return KeyCheck{}, fmt.Errorf("test: %w: no provider checker", ErrNotConfigured)
	}
	p, err := b.keyProvider(ref)
	if err != nil {
		return KeyCheck{}, err
	}
	rec, err := b.store.GetKey(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return KeyCheck{}, fmt.Errorf("test %s: %w: no such key", ref, ErrNotFound)
	}
	if err != nil {
		return KeyCheck{}, fmt.Errorf("test %s: %w", ref, fromStore(err))
	}
	cred, version, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), 0)
	if err != nil {
		return KeyCheck{}, fmt.Errorf("test %s: %w", ref, fromVault(err))
	}
	r := b.check(ctx, p, cred)
	now := b.now()
	out := KeyCheck{CheckResult: r, Health: healthOf(rec.Failing, rec.CooldownUntil, now), CheckedAt: now}
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionTest,
		Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID, ClientRequestID: actor.ClientRequestID,
		Outcome: r.Verdict, Version: &version, Detail: p.DisplayName + " " + r.Detail}
	var change HealthChange
	switch r.Verdict {
	case providers.VerdictAccepted:
		change = HealthChange{Kind: HealthRestore, Reason: "test passed: " + r.Detail}
	case providers.VerdictRefused:
		change = HealthChange{Kind: HealthFail, Reason: "test refused: " + r.Detail}
	}
	if change.Kind != 0 && b.health != nil {
		res, err := b.applyHealth(ctx, ref, change, ev)
		if err != nil {
			return out, err
		}
		out.Health = res.Health
		if res.Changed {
			return out, nil // audited with the change
		}
	}
	if err := b.store.AppendAudit(ctx, ev); err != nil {
		b.log.Warn("could not record a key test in the audit trail", "key", ref.String(), "error", err)
	}
	return out, nil
}

// ProbeFailing re-tests every failing key this replica knows, at most
// concurrency at a time, and returns those that pass to their pools. It
// returns how many were tested and how many passed. It needs the Vault
// reader identity, a checker and the health store, not the writer: a
// resolver replica probes. A test that changes nothing (the key is still
// refused, or the provider could not be asked) is counted in the checks
// metric, not audited: the trail would get a row per failing key every
// interval.
func (b *Broker) ProbeFailing(ctx context.Context, concurrency int) (tested, passed int, err error) {
	if b.reader == nil || b.checker == nil || b.health == nil {
		return 0, 0, fmt.Errorf("probe: %w: it needs the Vault reader identity, a provider checker and the health store", ErrNotConfigured)
	}
	if b.poolStore == nil {
		return 0, 0, fmt.Errorf("probe: %w: it needs the pool store", ErrNotConfigured)
	}
	failing, err := b.poolStore.FailingKeys(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("probe: list the failing keys: %w", fromStore(err))
	}
	sem := make(chan struct{}, max(concurrency, 1))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, ref := range failing {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			health, err := b.probe(ctx, ref)
			mu.Lock()
			defer mu.Unlock()
			tested++
			if err != nil {
				errs = append(errs, err)
				return
			}
			if health != HealthFailing {
				passed++
			}
		})
	}
	wg.Wait()
	return tested, passed, errors.Join(errs...)
}

// probe re-tests one failing key: accepted restores it (audited as the
// actor "prober"); anything else leaves it failing. It returns the key's
// health after the test.
func (b *Broker) probe(ctx context.Context, ref KeyRef) (string, error) {
	p, err := b.keyProvider(ref)
	if err != nil {
		return "", err
	}
	cred, version, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), 0)
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", ref, fromVault(err))
	}
	r := b.check(ctx, p, cred)
	if r.Verdict != providers.VerdictAccepted {
		return HealthFailing, nil
	}
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionTest,
		Actor: "prober", Outcome: r.Verdict, Version: &version, Detail: p.DisplayName + " " + r.Detail}
	res, err := b.applyHealth(ctx, ref, HealthChange{Kind: HealthRestore, Reason: "test passed: " + r.Detail}, ev)
	if err != nil {
		return "", err
	}
	return res.Health, nil
}

// EventSink receives audit events as they are recorded (health changes,
// and with an audit-streaming sink every event). Publish must not block.
type EventSink interface {
	Publish(ev AuditEvent)
}

type eventSink struct{ s EventSink }

func (e eventSink) publish(ev AuditEvent) {
	if e.s != nil {
		if ev.OccurredAt.IsZero() {
			ev.OccurredAt = time.Now().UTC()
		}
		e.s.Publish(ev)
	}
}
