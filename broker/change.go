package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/keybroker/keybroker/providers"
)

// keyChange is one change of a key as DESIGN's write path has it: the row is
// marked pending, the Vault operation runs, then the change is completed
// (new metadata and its audit event in one transaction, announced to every
// replica) or aborted (row restored, the failure audited). Every write
// (set, rotate, rollback, delete) and the reconciler go through it, so the
// compensation after a failed Vault operation exists once.
type keyChange struct {
	b      *Broker
	ref    KeyRef
	id     string // the pending change's id
	op     string // OpSet, OpRollback, OpDelete: names the change in errors
	action string
	actor  Actor
	// outcome is what a completion records: success for a caller's change,
	// reconciled for the reconciler's.
	outcome string
	detail  string
	masked  string // of the key being written; "" for a delete
	fp      string
	view    CredentialView
}

// changeRequest is what beginChange needs to know.
type changeRequest struct {
	Ref   KeyRef
	Actor Actor
	Op    string // OpSet, OpRollback, OpDelete
	// Credential is the credential being written (set, rollback).
	Credential providers.Credential
	Detail     string // added to the audit event
	// Create: the key must be new (ErrKeyExists otherwise).
	Create bool
	// Member settles the settings of a key new to its pool.
	Member MemberSettings
}

// viewOf is the view of c, a credential of p.
func viewOf(p *providers.Provider, c providers.Credential) CredentialView {
	return CredentialView{Kind: c.Kind(), Fields: p.Credential.Public(c), Masked: p.Credential.Masks(c)}
}

// actionOf is the audit action of an operation on a key whose confirmed
// version was prior (0: none yet).
func actionOf(op string, prior int) string {
	switch {
	case op == OpDelete:
		return ActionDelete
	case op == OpRollback:
		return ActionRollback
	case prior == 0:
		return ActionCreate
	}
	return ActionRotate
}

// beginChange marks the key pending. It returns the change and the prior
// confirmed version (0 when the key has none).
func (b *Broker) beginChange(ctx context.Context, req changeRequest) (*keyChange, int, error) {
	c := &keyChange{b: b, ref: req.Ref, id: uuid.NewString(), op: req.Op, actor: req.Actor, outcome: OutcomeSuccess, detail: req.Detail}
	if req.Op != OpDelete {
		p, err := b.checkProvider(req.Ref.Provider)
		if err != nil {
			return nil, 0, err
		}
		c.masked, c.fp = p.Credential.Preview(req.Credential), providers.Fingerprint(b.pepper, req.Credential)
		c.view = viewOf(p, req.Credential)
	}
	rec, err := b.store.BeginChange(ctx, req.Ref,
		Change{ID: c.id, Op: req.Op, By: req.Actor.Subject, MaskedKey: c.masked, Fingerprint: c.fp, View: c.view,
			Create: req.Create, MaxPool: b.maxPool, Member: req.Member})
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", req.Op, req.Ref, fromStore(err))
	}
	c.action = actionOf(req.Op, rec.Version)
	return c, rec.Version, nil
}

// resumeChange takes over a change left pending (by a writer that died
// between its steps) for the reconciler.
func (b *Broker) resumeChange(rec KeyRecord) *keyChange {
	p := rec.Pending
	by := p.By
	if by == "" {
		by = reconcilerActor
	}
	return &keyChange{b: b, ref: rec.Ref(), id: p.ID, op: p.Op, action: actionOf(p.Op, rec.Version), actor: Actor{Subject: by},
		outcome: OutcomeReconciled, detail: "finished by the reconciler", masked: p.MaskedKey, fp: p.Fingerprint, view: p.View}
}

// repairChange is the reconciler's record of drift it repairs: a change made
// in Vault directly, with no pending row.
func (b *Broker) repairChange(ref KeyRef, action, detail string) *keyChange {
	return &keyChange{b: b, ref: ref, id: uuid.NewString(), op: "reconcile", action: action, actor: Actor{Subject: reconcilerActor},
		outcome: OutcomeReconciled, detail: detail}
}

// reconcilerActor names the reconciler in the audit trail.
const reconcilerActor = "reconciler"

func (c *keyChange) audit(outcome string, version int) AuditEvent {
	ev := AuditEvent{ScopeKind: c.ref.ScopeKind, ScopeID: c.ref.ScopeID, Provider: c.ref.Provider, KeyID: c.ref.KeyID, Action: c.action, Actor: c.actor.Subject,
		RemoteAddr: c.actor.RemoteAddr, RequestID: c.actor.RequestID, ClientRequestID: c.actor.ClientRequestID, Outcome: outcome, Detail: c.detail}
	if version > 0 {
		ev.Version = &version
	}
	if c.masked != "" || c.fp != "" {
		masked, fp := c.masked, c.fp
		ev.MaskedKey, ev.Fingerprint = &masked, &fp
	}
	return ev
}

// abort undoes the pending mark after the Vault operation failed with
// cause (nothing was changed in Vault), records the failure in the audit
// trail, and returns cause wrapped with what failed. It runs without the
// caller's cancellation: the row must not stay pending because the caller
// went away.
func (c *keyChange) abort(ctx context.Context, cause error, version int) error {
	ctx = context.WithoutCancel(ctx)
	b := c.b
	if err := b.store.AbortChange(ctx, c.ref, c.id); err != nil {
		b.log.Warn("could not undo a pending key change; the reconciler will", "key", c.ref.String(), "error", err)
	}
	outcome := OutcomeError
	switch {
	case errors.Is(cause, ErrPreconditionFailed):
		outcome = OutcomePreconditionFailed
	case errors.Is(cause, ErrConflict):
		outcome = OutcomeConflict
	}
	if err := b.store.AppendAudit(ctx, c.audit(outcome, version)); err != nil {
		b.log.Warn("could not record a failed key change in the audit trail", "key", c.ref.String(), "error", err)
	}
	b.metrics.action(c.action, outcome)
	return fmt.Errorf("%s %s: %w", c.op, c.ref, cause)
}

// undo restores the row of a change that the reconciler found never
// reached Vault; nothing is audited (nothing happened).
func (c *keyChange) undo(ctx context.Context) error {
	if err := c.b.store.AbortChange(ctx, c.ref, c.id); err != nil {
		return fmt.Errorf("reconcile %s: %w", c.ref, fromStore(err))
	}
	return nil
}

// completeWrite records that Vault now holds version (with the change's
// preview and fingerprint) and evicts the cached answer.
func (c *keyChange) completeWrite(ctx context.Context, version int) error {
	b := c.b
	b.evict(c.ref)
	w := Written{Version: version, MaskedKey: c.masked, Fingerprint: c.fp, View: c.view, By: c.actor.Subject}
	if err := b.store.CompleteWrite(ctx, c.ref, c.id, w, c.audit(c.outcome, version)); err != nil {
		return fmt.Errorf("%s %s: key stored in Vault as version %d, but its metadata could not be recorded (the reconciler will finish it): %w",
			c.op, c.ref, version, fromStore(err))
	}
	b.poolChangedHere(ctx, c.ref.Pool())
	c.counted()
	return nil
}

// completeDelete records that Vault deleted version and evicts the cached
// answer.
func (c *keyChange) completeDelete(ctx context.Context, version int) error {
	b := c.b
	b.evict(c.ref)
	if err := b.store.CompleteDelete(ctx, c.ref, version, c.audit(c.outcome, version)); err != nil {
		return fmt.Errorf("%s %s: key deleted in Vault, but its metadata could not be removed (the reconciler will finish it): %w",
			c.op, c.ref, fromStore(err))
	}
	b.poolChangedHere(ctx, c.ref.Pool())
	c.counted()
	return nil
}

// counted counts a caller's completed change in the metrics (the
// reconciler's repairs are in its report and the audit trail).
func (c *keyChange) counted() {
	if c.outcome == OutcomeSuccess {
		c.b.metrics.action(c.action, OutcomeSuccess)
	}
}
