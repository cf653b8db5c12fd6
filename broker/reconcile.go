package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// ReconcileReport says what Reconcile did with rows left pending.
type ReconcileReport struct {
	// Completed: the Vault write or delete had happened; the row now says so.
	Completed int
	// Aborted: Vault shows no trace of the change; the row is back as it was.
	Aborted int
	// Failed: rows that could not be checked (Vault or PostgreSQL errors).
	Failed int
}

// Reconcile repairs rows whose change has been pending for at least
// olderThan (a writer that crashed, or lost PostgreSQL, between its steps).
// Vault is the truth: if the secret's current version is newer than the
// row's, the write happened and the row takes the pending preview and
// fingerprint; if a pending delete's version is gone, the row goes; else the
// change is undone.
func (b *Broker) Reconcile(ctx context.Context, olderThan time.Duration) (ReconcileReport, error) {
	var rep ReconcileReport
	if err := b.canManage(); err != nil {
		return rep, err
	}
	pending, err := b.store.ListPending(ctx, olderThan)
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", errors.Join(ErrUnavailable, err))
	}
	var errs []error
	defer func() {
		if len(pending) > 0 {
			b.log.InfoContext(ctx, "reconciled pending key changes", "completed", rep.Completed, "aborted", rep.Aborted, "failed", rep.Failed)
		}
	}()
	for _, rec := range pending {
		if err := b.reconcileOne(ctx, rec, &rep); err != nil {
			rep.Failed++
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

func (b *Broker) reconcileOne(ctx context.Context, rec store.KeyRecord, rep *ReconcileReport) error {
	ws, provider := rec.Workspace, rec.Provider
	if rec.PendingID == nil || rec.PendingOp == nil {
		return nil
	}
	id, op := *rec.PendingID, *rec.PendingOp
	md, err := b.writer.Metadata(ctx, vault.WorkspaceKeyPath(ws, provider))
	exists := err == nil
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("reconcile %s/%s: %w", ws, provider, fromVault(err))
	}
	cur, curListed := md.Current()
	alive := exists && curListed && cur.Alive()
	by := "reconciler"
	if rec.PendingBy != nil {
		by = *rec.PendingBy
	}

	switch {
	case op == store.OpDelete && !alive:
		version := md.CurrentVersion
		ev := store.AuditEvent{Workspace: ws, Provider: provider, Action: ActionDelete, Actor: by,
			Outcome: OutcomeReconciled, Version: &version, Detail: "finished by the reconciler"}
		if err := b.store.CompleteDelete(ctx, ws, provider, max(version, rec.Version), ev); err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, err)
		}
		b.evict(ws, provider)
		rep.Completed++
	case op != store.OpDelete && alive && md.CurrentVersion > rec.Version:
		masked, fp := deref(rec.PendingMaskedKey), deref(rec.PendingFingerprint)
		version := md.CurrentVersion
		action := ActionRotate
		switch {
		case op == store.OpRollback:
			action = ActionRollback
		case rec.Version == 0:
			action = ActionCreate
		}
		ev := store.AuditEvent{Workspace: ws, Provider: provider, Action: action, Actor: by,
			Outcome: OutcomeReconciled, Version: &version, MaskedKey: &masked, Fingerprint: &fp,
			Detail: "finished by the reconciler"}
		w := store.Written{Version: version, MaskedKey: masked, Fingerprint: fp, By: by}
		if err := b.store.CompleteWrite(ctx, ws, provider, id, w, ev); err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, err)
		}
		b.evict(ws, provider)
		rep.Completed++
	default:
		if err := b.store.AbortChange(ctx, ws, provider, id); err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, err)
		}
		rep.Aborted++
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
