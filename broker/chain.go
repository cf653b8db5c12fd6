package broker

import (
	"fmt"
	"time"
)

// The resolution chain: a workspace's calls for a provider are served by
// the first scope of its chain with a key that may serve — its own pool;
// its organization's, when it is linked and inherits; the platform's
// hosted pool, billed, when it allows the fallback — or by none.
// walkChain is the one place that walks it. Resolve walks it for a call
// (asking a pool picks a key and reads it); Effective walks it for the API
// and the admin page (asking a pool counts the keys that may serve now).
// So what GET .../effective says is what a resolve does now.

// poolProbe asks a pool of the chain what it can do for the call being
// decided: poolServed (the probe keeps what it found: a key, a count), or
// why it cannot; coolEnd (unix nanoseconds) is the earliest end of a
// cooldown when the outcome is poolCoolingDown. An error ends the walk.
type poolProbe func(pr PoolRef) (out poolOutcome, coolEnd int64, err error)

// chainDecision is which pool of a workspace's chain serves a call, and
// why.
type chainDecision struct {
	// Pool serves the call; its Scope is "" when no pool does.
	Pool PoolRef
	// Reason, when a pool serves, says why the scopes before it did not
	// (Resolution.FallbackReason: "" when the workspace's own pool
	// serves); when none serves, why: a NoKeyError's reason, or, with
	// CoolingUntil, a CoolingDownError's.
	Reason string
	// CoolingUntil (unix nanoseconds; 0: none), when no pool serves now
	// but one would once a key's cooldown ends, is the earliest end.
	CoolingUntil int64
}

// served says whether a pool of the chain serves the call.
func (d chainDecision) served() bool { return d.Pool.ScopeKind != "" }

// walkChain decides which pool of workspace's chain serves a call for
// provider: it asks probe about the workspace's pool, then, if that
// cannot serve, reads the workspace's settings (false: not loaded yet) and
// asks its organization's pool and the hosted pool, as far as the
// settings allow. It holds no lock and allocates nothing: the callers'
// probe and settings stay on their stack.
func walkChain(workspace, provider string, settings func(workspace string) (Settings, bool), probe poolProbe) (chainDecision, error) {
	var cool coolingScopes
	pr := PoolRef{ScopeKind: ScopeWorkspace, ScopeID: workspace, Provider: provider}
	out, until, err := probe(pr)
	if err != nil {
		return chainDecision{}, err
	}
	if out == poolServed {
		return chainDecision{Pool: pr}, nil
	}
	cool.add(ScopeWorkspace, until)
	excluded := out == poolModelExcluded
	reason := ReasonNoWorkspaceKey
	switch out {
	case poolEmpty:
	case poolExpired:
		reason = ReasonExpired
	default:
		reason = ReasonWorkspaceKeysUnavailable
	}
	s, loaded := settings(workspace)
	if !loaded {
		return chainDecision{}, fmt.Errorf("the workspace has no usable key; where it may fall back to is unknown: %w", ErrSettingsNotLoaded)
	}
	if org := s.InheritsFrom(); org != "" {
		pr = PoolRef{ScopeKind: ScopeOrganization, ScopeID: org, Provider: provider}
		if out, until, err = probe(pr); err != nil {
			return chainDecision{}, fmt.Errorf("from organization %s: %w", org, err)
		}
		if out == poolServed {
			return chainDecision{Pool: pr, Reason: reason}, nil
		}
		cool.add(ScopeOrganization, until)
		excluded = excluded || out == poolModelExcluded
		switch reason = ReasonNoOrganizationKey; out {
		case poolEmpty:
		case poolExpired:
			reason = ReasonExpired
		default:
			reason = ReasonOrganizationKeysUnavailable
		}
	}
	if !s.HostedFallback {
		return noPoolServes(cool, excluded, ReasonHostedFallbackOff), nil
	}
	pr = PoolRef{ScopeKind: ScopeHosted, Provider: provider}
	if out, until, err = probe(pr); err != nil {
		return chainDecision{}, fmt.Errorf("from the hosted keys: %w", err)
	}
	if out == poolServed {
		return chainDecision{Pool: pr, Reason: reason}, nil
	}
	cool.add(ScopeHosted, until)
	switch reason = ReasonHostedKeysUnavailable; out {
	case poolEmpty:
		reason = ReasonNoHostedKey
	case poolExpired:
		reason = ReasonExpired
	}
	return noPoolServes(cool, excluded || out == poolModelExcluded, reason), nil
}

// InheritsFrom names the organization whose pools come next in the
// workspace's chain: its organization when it is linked and inherits, else
// "". The hosted pools come last when HostedFallback is on.
func (s Settings) InheritsFrom() string {
	if s.Inherit {
		return s.Organization
	}
	return ""
}

// noPoolServes is the decision when no pool of the chain serves: keys
// cooling down first (the call will be served once the earliest cooldown
// ends), then keys that serve other models only, then reason.
func noPoolServes(cool coolingScopes, excluded bool, reason string) chainDecision {
	switch {
	case cool.until != 0:
		return chainDecision{Reason: coolingReason(cool.scope), CoolingUntil: cool.until}
	case excluded:
		return chainDecision{Reason: ReasonNoKeyAllowsModel}
	}
	return chainDecision{Reason: reason}
}

// coolingScopes remembers, along the chain, the earliest end of a
// cooldown among the keys that would have served, and its scope.
type coolingScopes struct {
	until int64 // unix nanoseconds; 0: no key of the chain is cooling down
	scope ScopeKind
}

func (c *coolingScopes) add(scope ScopeKind, until int64) {
	if until != 0 && (c.until == 0 || until < c.until) {
		c.until, c.scope = until, scope
	}
}

// Reasons of a CoolingDownError: the scope whose key serves again first.
const (
	ReasonWorkspaceKeysCoolingDown    = "workspace_keys_cooling_down"
	ReasonOrganizationKeysCoolingDown = "organization_keys_cooling_down"
	ReasonHostedKeysCoolingDown       = "hosted_keys_cooling_down"
)

func coolingReason(scope ScopeKind) string {
	switch scope {
	case ScopeOrganization:
		return ReasonOrganizationKeysCoolingDown
	case ScopeHosted:
		return ReasonHostedKeysCoolingDown
	}
	return ReasonWorkspaceKeysCoolingDown
}

// noKeyError is the error of a decision that no pool serves: a
// *CoolingDownError, to retry after the earliest end of a cooldown (whole
// seconds, at least one), or a *NoKeyError with the reason.
func (b *Broker) noKeyError(req ResolveRequest, d chainDecision) error {
	if d.CoolingUntil == 0 {
		return &NoKeyError{Workspace: req.Workspace, Provider: req.Provider, Reason: d.Reason}
	}
	wait := time.Unix(0, d.CoolingUntil).Sub(b.now())
	wait = max(time.Second, (wait+time.Second-1)/time.Second*time.Second) // whole seconds, rounded up
	return &CoolingDownError{RetryAfter: wait, Reason: d.Reason}
}
