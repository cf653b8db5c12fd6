package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

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
	// Repaired: drift between Vault and PostgreSQL made outside keybroker
	// (a key written, rotated or deleted in Vault directly) that was safe
	// to fix: metadata now matches Vault.
	Repaired int
	// Unrepaired: drift left for an operator, one "workspace/provider:
	// reason" each (fixing it needs the reader identity).
	Unrepaired []string
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
	if err := b.reconcileDrift(ctx, &rep); err != nil {
		errs = append(errs, err)
	}
	for _, u := range rep.Unrepaired {
		b.log.WarnContext(ctx, "reconcile: drift between Vault and PostgreSQL left for an operator", "key", u)
	}
	return rep, errors.Join(errs...)
}

// reconcileDrift compares every workspace key in Vault with its metadata
// row. Rows whose key is gone from Vault are removed; keys that Vault holds
// at another version than the row, or that have no row, are adopted when
// the reader identity can read them (to compute the preview and
// fingerprint), else reported.
func (b *Broker) reconcileDrift(ctx context.Context, rep *ReconcileReport) error {
	recs, err := b.store.ListAllKeys(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", errors.Join(ErrUnavailable, err))
	}
	rows := make(map[string]store.KeyRecord, len(recs))
	for _, r := range recs {
		if r.State == store.StateActive {
			rows[r.Workspace+"/"+r.Provider] = r
		}
	}
	workspaces, err := b.writer.List(ctx, "workspaces/")
	if err != nil {
		return fmt.Errorf("reconcile: list workspaces in Vault: %w", fromVault(err))
	}
	var errs []error
	for _, wsDir := range workspaces {
		ws := strings.TrimSuffix(wsDir, "/")
		if !ValidID(ws) {
			continue
		}
		providers, err := b.writer.List(ctx, vault.WorkspaceProvidersDir(ws))
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile: list %s: %w", ws, fromVault(err)))
			continue
		}
		for _, provider := range providers {
			if !ValidID(provider) {
				continue
			}
			key := ws + "/" + provider
			rec, hasRow := rows[key]
			delete(rows, key)
			if err := b.reconcileKey(ctx, ws, provider, rec, hasRow, rep); err != nil {
				rep.Failed++
				errs = append(errs, err)
			}
		}
	}
	// Rows whose key Vault does not hold at all.
	for _, rec := range rows {
		if err := b.reconcileKey(ctx, rec.Workspace, rec.Provider, rec, true, rep); err != nil {
			rep.Failed++
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Broker) reconcileKey(ctx context.Context, ws, provider string, rec store.KeyRecord, hasRow bool, rep *ReconcileReport) error {
	if hasRow && rec.State != store.StateActive {
		return nil // pending: handled by reconcileOne
	}
	path := vault.WorkspaceKeyPath(ws, provider)
	md, err := b.writer.Metadata(ctx, path)
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("reconcile %s/%s: %w", ws, provider, fromVault(err))
	}
	cur, listed := md.Current()
	alive := err == nil && listed && cur.Alive()
	switch {
	case !alive && hasRow:
		version := max(md.CurrentVersion, rec.Version)
		ev := store.AuditEvent{Workspace: ws, Provider: provider, Action: ActionDelete, Actor: "reconciler",
			Outcome: OutcomeReconciled, Version: &version, Detail: "the key is gone from Vault"}
		if err := b.store.CompleteDelete(ctx, ws, provider, version, ev); err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, err)
		}
		b.evict(ws, provider)
		rep.Repaired++
	case alive && (!hasRow || rec.Version != md.CurrentVersion):
		reason := fmt.Sprintf("Vault holds version %d, metadata says %d", md.CurrentVersion, rec.Version)
		if !hasRow {
			reason = fmt.Sprintf("Vault holds version %d and there is no metadata row", md.CurrentVersion)
		}
		if b.reader == nil {
			rep.Unrepaired = append(rep.Unrepaired, ws+"/"+provider+": "+reason)
			return nil
		}
		s, err := b.reader.Get(ctx, path)
		if err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, fromVault(err))
		}
		masked, fp, version := MaskKey(s.Value), Fingerprint(b.pepper, s.Value), s.Version
		ev := store.AuditEvent{Workspace: ws, Provider: provider, Action: ActionRotate, Actor: "reconciler",
			Outcome: OutcomeReconciled, Version: &version, MaskedKey: &masked, Fingerprint: &fp,
			Detail: "adopted a change made in Vault directly: " + reason}
		if !hasRow {
			ev.Action = ActionCreate
		}
		w := store.Written{Version: version, MaskedKey: masked, Fingerprint: fp, By: "reconciler"}
		if err := b.store.CompleteWrite(ctx, ws, provider, uuid.NewString(), w, ev); err != nil {
			return fmt.Errorf("reconcile %s/%s: %w", ws, provider, err)
		}
		b.evict(ws, provider)
		rep.Repaired++
	}
	return nil
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
