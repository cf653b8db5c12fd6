package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keybroker/keybroker/providers"
)

// Expiry: a key may carry ExpiresAt (an admin's word, or its provider's).
// From then on it is not served: the pool's next usable key serves, or the
// next scope of the chain, whose answer says fallbackReason "expired"
// (pool.go, chain.go). Within the warning window before it (Config.
// ExpiryWarning, default 14 days) the key is "expiring": the API and the
// metrics say so, and one key.expiring event goes out per window step
// (14, 7 and 1 days before), once across every replica (WarnExpiring).

// Expiry states of a key (KeyMeta.Expiry).
const (
	// ExpiryNone: the key has no expiry date.
	ExpiryNone = ""
	// ExpiryValid: it has one, outside the warning window.
	ExpiryValid = "valid"
	// ExpiryExpiring: it expires within the warning window.
	ExpiryExpiring = "expiring"
	// ExpiryExpired: it has expired; it is not served.
	ExpiryExpired = "expired"
)

// DefaultExpiryWarning is the warning window before a key's expiry.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// ActionExpiring is the audit action (and webhook event) of a key
// entering a warning step.
const ActionExpiring = "key.expiring"

// expirySteps are the days before expiry at which key.expiring is sent,
// largest first.
var expirySteps = []int{14, 7, 1}

// expiryOf is the expiry state of a key expiring at exp, at now.
func expiryOf(exp, now time.Time, window time.Duration) string {
	switch {
	case exp.IsZero():
		return ExpiryNone
	case !now.Before(exp):
		return ExpiryExpired
	case exp.Sub(now) <= window:
		return ExpiryExpiring
	}
	return ExpiryValid
}

// expiryStep is the warning step a key expiring in left is in: the
// smallest of expirySteps (in days) that left is within; 0 for none.
func expiryStep(left time.Duration) int {
	step := 0
	for _, d := range expirySteps {
		if left <= time.Duration(d)*24*time.Hour {
			step = d
		}
	}
	return step
}

// ExpiryStore records the key.expiring events sent.
type ExpiryStore interface {
	// RecordExpiryWarning records that the warning of step (days) was
	// sent for the key expiring at expiresAt, and appends ev, in one
	// transaction, unless it was recorded already (by any replica): it
	// says whether this call recorded it.
	RecordExpiryWarning(ctx context.Context, ref KeyRef, expiresAt time.Time, stepDays int, ev AuditEvent) (bool, error)
	// LearnExpiry sets the key's expiresAt to expiresAt unless it has an
	// earlier one already (an admin's date, or one learned before), and
	// appends ev, in one transaction; it changes nothing else of the key
	// (a concurrent admin's change stays). It says whether it changed it.
	LearnExpiry(ctx context.Context, ref KeyRef, expiresAt time.Time, ev AuditEvent) (bool, error)
}

// learnExpiryEvery is how often the expiry of one key is asked of its
// provider: a key's expiry at the provider is set when it is made.
const learnExpiryEvery = 24 * time.Hour

// ExpirySweep is what one pass of WarnExpiring found.
type ExpirySweep struct {
	// Expiring and Expired count the keys in each state, by provider.
	Expiring, Expired map[string]int
	// Sent are the key.expiring events this pass sent (another replica's
	// pass sent the others).
	Sent []AuditEvent
}

// WarnExpiring reads every key's expiry, sends key.expiring for each key
// that entered a warning step (14, 7 or 1 days before its expiry) and
// whose warning of that step no replica has sent yet, and sets the
// keybroker_keys_expiring and keybroker_keys_expired gauges (by
// provider). Every admin replica runs it (RunExpiryWarnings); the store
// makes each warning go out once.
func (b *Broker) WarnExpiring(ctx context.Context) (ExpirySweep, error) {
	out := ExpirySweep{Expiring: map[string]int{}, Expired: map[string]int{}}
	if err := b.canManage(); err != nil {
		return out, err
	}
	es, ok := b.store.(ExpiryStore)
	if !ok {
		return out, fmt.Errorf("expiry warnings: %w: the metadata store keeps no warnings", ErrNotConfigured)
	}
	recs, err := b.store.ListAllKeys(ctx)
	if err != nil {
		return out, fmt.Errorf("expiry warnings: %w", fromStore(err))
	}
	now := b.now()
	for _, r := range recs {
		switch expiryOf(r.ExpiresAt, now, b.expiryWarning) {
		case ExpiryExpired:
			out.Expired[r.Provider]++
			continue
		case ExpiryExpiring:
			out.Expiring[r.Provider]++
		default:
			continue
		}
		left := r.ExpiresAt.Sub(now)
		step := expiryStep(left)
		if step == 0 {
			continue
		}
		version := r.Version
		masked := r.MaskedKey
		ev := AuditEvent{ScopeKind: r.ScopeKind, ScopeID: r.ScopeID, Provider: r.Provider, KeyID: r.KeyID, Action: ActionExpiring,
			Actor: "keybroker", Outcome: OutcomeSuccess, Version: &version, MaskedKey: &masked,
			Detail: fmt.Sprintf("expires at %s (in %s; the %d-day warning)", r.ExpiresAt.UTC().Format(time.RFC3339), roundLeft(left), step)}
		sent, err := es.RecordExpiryWarning(ctx, r.Ref(), r.ExpiresAt, step, ev)
		if err != nil {
			return out, fmt.Errorf("expiry warning of %s: %w", r.Ref(), fromStore(err))
		}
		if sent {
			ev.OccurredAt = now.UTC()
			b.events.publish(ev)
			out.Sent = append(out.Sent, ev)
			b.log.InfoContext(ctx, "key expiring", "key", r.Ref().String(), "expires_at", r.ExpiresAt.UTC(), "step_days", step)
		}
	}
	b.metrics.expiry(out.Expiring, out.Expired)
	return out, nil
}

// roundLeft says how long is left, in whole hours (days past two days).
func roundLeft(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%d hours", int(d/time.Hour))
}

// LearnExpiries asks the providers whose admin API says when a key
// expires (Anthropic) about each key with a providerKeyId whose scope
// holds the admin credential, and records an expiry the provider states
// that the key's record lacks or has otherwise (audited, announced: every
// replica stops serving it then). An admin's own expiresAt is kept where
// the provider states none. It returns how many keys it changed.
func (b *Broker) LearnExpiries(ctx context.Context) (int, error) {
	if _, err := b.rotationStore(); err != nil {
		return 0, err
	}
	es, ok := b.store.(ExpiryStore)
	if !ok {
		return 0, fmt.Errorf("%w: the metadata store records no expiries", ErrNotConfigured)
	}
	now := b.now()
	recs, err := b.store.ListAllKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("learn expiries: %w", fromStore(err))
	}
	type adminOf struct {
		scope    Scope
		provider string
	}
	admins := map[adminOf]*providers.Credential{}
	changed := 0
	var errs []error
	for _, r := range recs {
		p, ok := b.providers.Lookup(r.Provider)
		if !ok || p.KeyAdmin == nil || p.KeyAdmin.Describe == nil || r.ProviderKeyID == "" {
			continue
		}
		k := adminOf{r.Ref().Owner(), p.KeyAdmin.Provider}
		admin, seen := admins[k]
		if !seen {
			if _, c, err := b.adminCredential(ctx, k.scope, p); err == nil {
				admin = &c
			}
			admins[k] = admin
		}
		if admin == nil {
			continue // the scope holds no admin credential
		}
		// At most daily per key (per runner): one tenant's many keys do
		// not make every pass call the provider for each.
		learnKey := r.Ref().String() + "\x00" + r.ProviderKeyID
		if last, ok := b.expiryLearned.Load(learnKey); ok && now.Sub(last.(time.Time)) < learnExpiryEvery {
			continue
		}
		b.expiryLearned.Store(learnKey, now)
		ap, _ := b.providers.Lookup(p.KeyAdmin.Provider)
		info, err := p.KeyAdmin.Describe(ctx, b.adminEnv.AdminEnv(ap), *admin, r.ProviderKeyID)
		if err != nil {
			errs = append(errs, fmt.Errorf("learn the expiry of %s: %w", r.Ref(), err))
			continue
		}
		// The earlier date wins: a provider's later date never undoes an
		// admin's expiry.
		if info.ExpiresAt.IsZero() || !r.ExpiresAt.IsZero() && !info.ExpiresAt.Before(r.ExpiresAt) {
			continue
		}
		ev := AuditEvent{ScopeKind: r.ScopeKind, ScopeID: r.ScopeID, Provider: r.Provider, KeyID: r.KeyID, Action: ActionUpdate,
			Actor: "keybroker:provider", Outcome: OutcomeSuccess,
			Detail: fmt.Sprintf("expiresAt=%s learned from %s (key %s)", info.ExpiresAt.UTC().Format(time.RFC3339), p.DisplayName, r.ProviderKeyID)}
		learned, err := es.LearnExpiry(ctx, r.Ref(), info.ExpiresAt, ev)
		if err != nil {
			errs = append(errs, fmt.Errorf("record the expiry of %s: %w", r.Ref(), fromStore(err)))
			continue
		}
		if !learned {
			continue
		}
		b.poolChangedHere(ctx, r.Ref().Pool())
		changed++
	}
	return changed, errors.Join(errs...)
}
