package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Signed lifecycle rows (docs/security.md): a rotation or a revocation at
// the provider makes keybroker delete or deactivate keys at the provider,
// so its row in PostgreSQL is a command. Like token rows and organization
// links, it carries an HMAC under the admin keys (which the database never
// holds) over every id keybroker acts on; a row written or changed with a
// database role alone has no valid signature and is not acted on: it is
// logged and audited once per process, and left as it is.

// LifecycleSigner signs and verifies the rows of rotations and
// revocations (auth.LifecycleSigner: the admin keys).
type LifecycleSigner interface {
	SignLifecycle(msg []byte) (keyID string, signature []byte, err error)
	VerifyLifecycle(keyID string, msg, signature []byte) bool
}

// lifecycleMessage frames fields, each with its length, so that no two
// different rows sign alike.
func lifecycleMessage(kind string, fields ...string) []byte {
	var sb strings.Builder
	sb.WriteString("keybroker " + kind + " v1")
	for _, f := range fields {
		sb.WriteString("\x00" + strconv.Itoa(len(f)) + ":" + f)
	}
	return []byte(sb.String())
}

func rotationMessage(r Rotation) []byte {
	return lifecycleMessage("rotation", r.ID, string(r.Ref.ScopeKind), r.Ref.ScopeID, r.Ref.Provider, r.Ref.KeyID, r.NewKeyID, r.AdminKeyID,
		r.Trigger, r.AccountName, r.OldProviderKeyID, r.NewProviderKeyID, strconv.FormatInt(int64(r.Grace.Seconds()), 10))
}

func revocationMessage(rv Revocation) []byte {
	return lifecycleMessage("revocation", rv.ID, string(rv.Ref.ScopeKind), rv.Ref.ScopeID, rv.Ref.Provider, rv.Ref.KeyID, rv.ProviderKeyID,
		rv.AdminKeyID, strconv.FormatBool(rv.Located))
}

// signRotation signs r as it is about to be stored (nothing without a
// signer).
func (b *Broker) signRotation(r *Rotation) error {
	if b.lifecycleSigner == nil {
		return nil
	}
	var err error
	if r.SigKeyID, r.Signature, err = b.lifecycleSigner.SignLifecycle(rotationMessage(*r)); err != nil {
		return fmt.Errorf("sign rotation %s: %w", r.ID, err)
	}
	return nil
}

// signRevocation signs rv as it is about to be stored.
func (b *Broker) signRevocation(rv *Revocation) error {
	if b.lifecycleSigner == nil {
		return nil
	}
	var err error
	if rv.SigKeyID, rv.Signature, err = b.lifecycleSigner.SignLifecycle(revocationMessage(*rv)); err != nil {
		return fmt.Errorf("sign revocation %s: %w", rv.ID, err)
	}
	return nil
}

// rotationTrusted says whether r carries keybroker's signature; it
// reports one that does not (once per row and process).
func (b *Broker) rotationTrusted(ctx context.Context, r Rotation) bool {
	if b.lifecycleSigner == nil || b.lifecycleSigner.VerifyLifecycle(r.SigKeyID, rotationMessage(r), r.Signature) {
		return true
	}
	b.reportUnsignedLifecycleRow(ctx, "rotation", r.ID, AuditEvent{ScopeKind: r.Ref.ScopeKind, ScopeID: r.Ref.ScopeID,
		Provider: r.Ref.Provider, KeyID: r.Ref.KeyID, Action: ActionRotation})
	return false
}

// revocationTrusted says whether rv carries keybroker's signature; it
// reports one that does not (once per row and process).
func (b *Broker) revocationTrusted(ctx context.Context, rv Revocation) bool {
	if b.lifecycleSigner == nil || b.lifecycleSigner.VerifyLifecycle(rv.SigKeyID, revocationMessage(rv), rv.Signature) {
		return true
	}
	b.reportUnsignedLifecycleRow(ctx, "revocation", rv.ID, AuditEvent{ScopeKind: rv.Ref.ScopeKind, ScopeID: rv.Ref.ScopeID,
		Provider: rv.Ref.Provider, KeyID: rv.Ref.KeyID, Action: ActionRevokeAtProvider})
	return false
}

func (b *Broker) reportUnsignedLifecycleRow(ctx context.Context, kind, id string, ev AuditEvent) {
	if _, seen := b.unsignedLifecycle.LoadOrStore(kind+"\x00"+id, true); seen {
		return
	}
	b.log.WarnContext(ctx, "not acting on a "+kind+" at the provider keybroker did not sign (written or changed outside keybroker, or signed with a retired key)",
		kind, id, "key", KeyRef{ScopeKind: ev.ScopeKind, ScopeID: ev.ScopeID, Provider: ev.Provider, KeyID: ev.KeyID}.String())
	ev.Actor, ev.Outcome = "keybroker:"+kind, OutcomeError
	ev.Detail = kind + " " + id + ": refused: the row has no valid signature (written or changed outside keybroker); nothing done at the provider"
	if err := b.store.AppendAudit(ctx, ev); err != nil {
		b.log.WarnContext(ctx, "could not audit an unsigned lifecycle row", kind, id, "error", err)
	}
}
