package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybroker/keybroker/providers"
)

// Revocation at the provider (docs/lifecycle.md): a key deleted with
// RevokeAtProvider is also ended at its provider through the admin API the
// scope holds a credential of (OpenAI: its service account deleted;
// Anthropic: set inactive). The revocation is recorded before anything is
// done; the key leaves its pool at once whatever the provider answers; a
// provider that fails is asked again (RetryRevocations) until it confirms,
// and the record says so meanwhile: never dropped.

// Revocation states.
const (
	RevocationPending = "pending"
	RevocationDone    = "done"
	RevocationFailed  = "failed"

	// ActionRevokeAtProvider is the audit action of a revocation at the
	// provider (each attempt).
	ActionRevokeAtProvider = "key.revoke_at_provider"
)

// maxRevocationBackoff bounds the wait between two attempts.
const maxRevocationBackoff = 30 * time.Minute

// Revocation is a revocation at the provider as PostgreSQL records it.
type Revocation struct {
	ID            string
	Ref           KeyRef
	ProviderKeyID string
	AdminKeyID    string
	// State is pending (to be tried, or tried again), done or failed (the
	// provider refused the admin credential: an admin must act; it is
	// still listed).
	State string
	// Action is what the provider did ("deleted", "deactivated") once
	// done; AlreadyGone when it no longer had the key.
	Action      string
	AlreadyGone bool
	Attempts    int
	LastError   string
	NextAttempt time.Time
	RequestedBy string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Located: the provider confirmed, with the admin credential, that it
	// governs the key (its project's, its organization's). Only then is a
	// 404 on revoking it "gone".
	Located bool
	// SigKeyID and Signature sign the ids the revocation acts on
	// (LifecycleSigner): a row without a valid signature is not acted on.
	SigKeyID  string
	Signature []byte
}

// RevocationStore keeps the revocations at the providers.
type RevocationStore interface {
	// StartRevocation records a pending revocation and appends ev, in one
	// transaction.
	StartRevocation(ctx context.Context, rv Revocation, ev AuditEvent) error
	// RecordRevocation stores rv's state, attempts and error and appends
	// ev, in one transaction.
	RecordRevocation(ctx context.Context, rv Revocation, ev AuditEvent) error
	// DueRevocations returns the pending revocations due at now.
	DueRevocations(ctx context.Context, now time.Time) ([]Revocation, error)
}

// RevokeKey deletes a key from its pool (as DeleteKey) and revokes it at
// its provider. It refuses, changing nothing, when the provider's admin
// API cannot revoke keys, the key's id at the provider is unknown, or the
// scope holds no admin credential for it. The answer says what the
// provider did, or that it will be asked again.
func (b *Broker) RevokeKey(ctx context.Context, req DeleteKeyRequest) (Revocation, error) {
	if _, err := b.rotationStore(); err != nil {
		return Revocation{}, err
	}
	rvs, ok := b.store.(RevocationStore)
	if !ok {
		return Revocation{}, fmt.Errorf("%w: the metadata store keeps no revocations", ErrNotConfigured)
	}
	p, err := b.keyProvider(req.Ref)
	if err != nil {
		return Revocation{}, err
	}
	if p.KeyAdmin == nil || p.KeyAdmin.Revoke == nil {
		return Revocation{}, refuse(ErrInvalidRequest, "%s keys cannot be revoked at the provider by keybroker (no admin API it uses): delete the key without revokeAtProvider, and revoke it in the provider's console", p.DisplayName)
	}
	rec, err := b.store.GetKey(ctx, req.Ref)
	if errors.Is(err, ErrNotFound) {
		return Revocation{}, fmt.Errorf("revoke %s: %w: no such key", req.Ref, ErrNotFound)
	}
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", req.Ref, fromStore(err))
	}
	if req.ExpectedVersion > 0 && rec.Version != req.ExpectedVersion {
		return Revocation{}, fmt.Errorf("revoke %s: current version is %d, not %d: %w", req.Ref, rec.Version, req.ExpectedVersion, ErrPreconditionFailed)
	}
	if rec.ProviderKeyID == "" {
		return Revocation{}, refuse(ErrInvalidRequest, "the key's id at %s is unknown: set providerKeyId (PATCH) first; nothing was deleted", p.DisplayName)
	}
	adminRef, admin, err := b.adminCredential(ctx, req.Ref.Owner(), p)
	if err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", req.Ref, err)
	}
	// The provider must know the key with this admin credential: a key of
	// another project or organization is refused here, changing nothing
	// (its later 404 would read as "gone"). A provider that fails leaves
	// the key to be located at the next attempt.
	if err := checkProviderKeyID(p, rec.ProviderKeyID); err != nil {
		return Revocation{}, err
	}
	located, hint, err := b.locateHint(ctx, p, admin, rec.ProviderKeyID)
	if errors.Is(err, errNotGoverned) {
		return Revocation{}, refuse(ErrInvalidRequest, "%s does not know the key %s with the scope's %s credential (a key of another project or organization, or revoked there already): nothing was deleted",
			p.DisplayName, rec.ProviderKeyID, p.KeyAdmin.Provider)
	}
	if located && !hintMatches(rec.MaskedKey, hint) {
		return Revocation{}, refuse(ErrInvalidRequest, "the key %s at %s is not the stored key (its last characters differ): providerKeyId names another key; nothing was deleted",
			rec.ProviderKeyID, p.DisplayName)
	}
	now := b.now()
	rv := Revocation{ID: newUUID(), Ref: req.Ref, ProviderKeyID: rec.ProviderKeyID, AdminKeyID: adminRef.KeyID, State: RevocationPending,
		NextAttempt: now, RequestedBy: req.Actor.Subject, CreatedAt: now, UpdatedAt: now, Located: located}
	ev := b.revocationEvent(rv, req.Actor, OutcomeSuccess, fmt.Sprintf("requested: %s %s at the provider, then every attempt until it confirms",
		p.KeyAdmin.Revokes, rv.ProviderKeyID))
	if err := b.signRevocation(&rv); err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", req.Ref, err)
	}
	if err := rvs.StartRevocation(ctx, rv, ev); err != nil {
		return Revocation{}, fmt.Errorf("revoke %s: %w", req.Ref, fromStore(err))
	}
	// The key stops serving first, whatever the provider answers. A
	// delete that fails here (Vault down) leaves the revocation pending:
	// it was asked for, and the lifecycle runner carries it out.
	if err := b.DeleteKey(ctx, req); err != nil && !errors.Is(err, ErrNotFound) {
		return rv, fmt.Errorf("revoke %s: the key could not be deleted from keybroker (the revocation at the provider is recorded and will be carried out; delete the key again): %w", req.Ref, err)
	}
	return b.attemptRevocation(ctx, rvs, rv, req.Actor), nil
}

func (b *Broker) revocationEvent(rv Revocation, actor Actor, outcome, detail string) AuditEvent {
	return AuditEvent{ScopeKind: rv.Ref.ScopeKind, ScopeID: rv.Ref.ScopeID, Provider: rv.Ref.Provider, KeyID: rv.Ref.KeyID,
		Action: ActionRevokeAtProvider, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID,
		ClientRequestID: actor.ClientRequestID, Outcome: outcome, Detail: "revocation " + rv.ID + ": " + detail}
}

// attemptRevocation asks the provider once and records what it said: done,
// pending with the next attempt after a backoff, or failed when the
// provider refused the admin credential (still retried, less often: an
// admin may fix the credential).
func (b *Broker) attemptRevocation(ctx context.Context, rvs RevocationStore, rv Revocation, actor Actor) Revocation {
	rv.Attempts++
	res, err := b.revokeOnce(ctx, &rv)
	now := b.now()
	rv.UpdatedAt = now
	outcome, detail := OutcomeSuccess, ""
	switch {
	case err == nil:
		rv.State, rv.Action, rv.AlreadyGone, rv.LastError = RevocationDone, res.Action, res.AlreadyGone, ""
		detail = fmt.Sprintf("%s at the provider (%s)", res.Action, rv.ProviderKeyID)
		if res.AlreadyGone {
			detail = "the provider no longer had the key (" + rv.ProviderKeyID + "): revoked already"
		}
	default:
		rv.LastError = truncateText(err.Error(), 400)
		backoff := min(maxRevocationBackoff, time.Duration(1<<min(rv.Attempts, 10))*15*time.Second)
		rv.NextAttempt = now.Add(backoff)
		rv.State, outcome = RevocationPending, OutcomeError
		var ae *providers.AdminError
		if errors.As(err, &ae) && ae.Refused() || errors.Is(err, errNotGoverned) {
			rv.State = RevocationFailed
			rv.NextAttempt = now.Add(maxRevocationBackoff)
		}
		detail = fmt.Sprintf("attempt %d failed (%s); next attempt after %s", rv.Attempts, rv.LastError, rv.NextAttempt.UTC().Format(time.RFC3339))
		b.log.WarnContext(ctx, "revocation at the provider failed; it will be tried again", "key", rv.Ref.String(), "revocation", rv.ID,
			"attempt", rv.Attempts, "error", rv.LastError)
	}
	if err := b.signRevocation(&rv); err != nil {
		b.log.WarnContext(ctx, "could not sign a revocation attempt", "revocation", rv.ID, "error", err)
	} else if err := rvs.RecordRevocation(ctx, rv, b.revocationEvent(rv, actor, outcome, detail)); err != nil {
		// The row stays as it was (pending): the runner tries again.
		b.log.WarnContext(ctx, "could not record a revocation attempt", "revocation", rv.ID, "error", err)
	}
	return rv
}

// errNotGoverned: the provider does not know the key with the admin
// credential (404): a key of another project or organization, or one
// revoked already — which of them cannot be told, so nothing is revoked.
var errNotGoverned = errors.New("the provider does not know the key with the scope's admin credential (a key of another project or organization?): not revoked; correct providerKeyId or the admin credential")

// locate asks the provider whether the admin credential governs the key
// of id: true when it does; errNotGoverned when the provider answers
// 404; false and the provider's error when it fails.
func (b *Broker) locate(ctx context.Context, p *providers.Provider, admin providers.Credential, id string) (bool, error) {
	located, _, err := b.locateHint(ctx, p, admin, id)
	return located, err
}

// locateHint is locate, with the provider's redacted form of the key
// ("" when it gives none).
func (b *Broker) locateHint(ctx context.Context, p *providers.Provider, admin providers.Credential, id string) (bool, string, error) {
	if p.KeyAdmin.Locate == nil {
		return false, "", nil
	}
	ap, ok := b.providers.Lookup(p.KeyAdmin.Provider)
	if !ok {
		return false, "", fmt.Errorf("%w: %s", ErrUnknownProvider, p.KeyAdmin.Provider)
	}
	hint, err := p.KeyAdmin.Locate(ctx, b.adminEnv.AdminEnv(ap), admin, id)
	if providers.IsAdminNotFound(err) {
		return false, "", errNotGoverned
	}
	return err == nil, hint, err
}

// hintMatches says whether the provider's redacted form of a key and the
// stored key's mask end alike (both show the key's last 4 characters); a
// form without them compares equal.
func hintMatches(mask, hint string) bool {
	i, j := strings.LastIndex(mask, "..."), strings.LastIndex(hint, "...")
	if i < 0 || j < 0 || len(mask)-i-3 < 4 || len(hint)-j-3 < 4 {
		return true
	}
	return mask[len(mask)-4:] == hint[len(hint)-4:]
}

// checkProviderKeyID refuses a providerKeyId that cannot name a key the
// provider's admin API revokes (its id prefix).
func checkProviderKeyID(p *providers.Provider, id string) error {
	if id == "" || p.KeyAdmin == nil || p.KeyAdmin.KeyIDPrefix == "" || strings.HasPrefix(id, p.KeyAdmin.KeyIDPrefix) {
		return nil
	}
	return refuse(ErrInvalidRequest, "providerKeyId of a %s key is its id at the provider, which starts with %q", p.DisplayName, p.KeyAdmin.KeyIDPrefix)
}

// revokeOnce asks the provider's admin API to revoke the key: a key not
// located yet is located first, and the provider's "already gone" (404)
// is believed only of a located key.
func (b *Broker) revokeOnce(ctx context.Context, rv *Revocation) (providers.Revoked, error) {
	p, ok := b.providers.Lookup(rv.Ref.Provider)
	if !ok || p.KeyAdmin == nil || p.KeyAdmin.Revoke == nil {
		return providers.Revoked{}, fmt.Errorf("%w: %s cannot revoke keys", ErrUnknownProvider, rv.Ref.Provider)
	}
	ap, ok := b.providers.Lookup(p.KeyAdmin.Provider)
	if !ok {
		return providers.Revoked{}, fmt.Errorf("%w: %s", ErrUnknownProvider, p.KeyAdmin.Provider)
	}
	ref := rv.Ref.Owner().Key(ap.ID, rv.AdminKeyID)
	admin, _, err := b.readCredential(ctx, ap.ID, ref.VaultPath(), 0)
	if err != nil {
		return providers.Revoked{}, fmt.Errorf("read the admin credential %s: %w", ref, fromVault(err))
	}
	if !rv.Located && p.KeyAdmin.Locate != nil {
		if _, err := b.locate(ctx, p, admin, rv.ProviderKeyID); err != nil {
			return providers.Revoked{}, err
		}
		rv.Located = true
	}
	return p.KeyAdmin.Revoke(ctx, b.adminEnv.AdminEnv(ap), admin, rv.ProviderKeyID)
}

// RetryRevocations asks the providers again about every revocation due
// (pending or failed, its backoff over); it returns how many are done.
func (b *Broker) RetryRevocations(ctx context.Context) (int, error) {
	if _, err := b.rotationStore(); err != nil {
		return 0, err
	}
	rvs, ok := b.store.(RevocationStore)
	if !ok {
		return 0, fmt.Errorf("%w: the metadata store keeps no revocations", ErrNotConfigured)
	}
	due, err := rvs.DueRevocations(ctx, b.now())
	if err != nil {
		return 0, fromStore(err)
	}
	done := 0
	perScope := map[Scope]int{}
	for _, rv := range due {
		if !b.revocationTrusted(ctx, rv) {
			continue
		}
		if perScope[rv.Ref.Owner()]++; perScope[rv.Ref.Owner()] > maxLifecycleWorkPerScope {
			continue
		}
		if out := b.attemptRevocation(ctx, rvs, rv, Actor{Subject: "keybroker:revocation"}); out.State == RevocationDone {
			done++
		}
	}
	return done, nil
}

// LifecyclePass is one pass of what the key lifecycle does in the
// background, on one replica at a time (the lifecycle lease): rotations
// resumed after a crash or past their grace period, revocations at the
// providers retried, rotations on schedule (rotateAfter), and the
// expiries the providers state learned.
func (b *Broker) LifecyclePass(ctx context.Context) error {
	_, rerr := b.ResumeRotations(ctx)
	_, verr := b.RetryRevocations(ctx)
	_, serr := b.RotateDue(ctx)
	_, lerr := b.LearnExpiries(ctx)
	return errors.Join(rerr, verr, serr, lerr)
}
