package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
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
		return rep, fmt.Errorf("reconcile: %w", fromStore(err))
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
		return fmt.Errorf("reconcile: %w", fromStore(err))
	}
	rows := make(map[KeyRef]KeyRecord, len(recs))
	for _, r := range recs {
		if r.WriteStatus == WriteComplete {
			rows[r.Ref()] = r
		}
	}
	var errs []error
	for _, scope := range b.vaultScopes(ctx, &errs) {
		providers, err := b.writer.List(ctx, scope.ProvidersDir())
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile: list %s: %w", scope, fromVault(err)))
			continue
		}
		for _, name := range providers {
			provider, isDir := strings.CutSuffix(name, "/")
			if !ids.Valid(provider) {
				continue
			}
			if !isDir {
				if scope.Key(provider, DefaultKeyID).LegacyVaultPath() != "" {
					rep.Unrepaired = append(rep.Unrepaired, scope.Pool(provider).String()+": a key stored where keybroker v1 kept it "+
						"(resolve still serves it); run `keybroker vault migrate-layout` to move it")
				}
				continue
			}
			pool := scope.Pool(provider)
			keys, err := b.writer.List(ctx, pool.KeysDir())
			if err != nil {
				errs = append(errs, fmt.Errorf("reconcile: list %s: %w", pool, fromVault(err)))
				continue
			}
			for _, keyID := range keys {
				if !ids.Valid(keyID) {
					continue
				}
				ref := pool.Key(keyID)
				rec, hasRow := rows[ref]
				delete(rows, ref)
				if err := b.reconcileKey(ctx, ref, rec, hasRow, rep); err != nil {
					rep.Failed++
					errs = append(errs, err)
				}
			}
		}
	}
	// Rows whose key Vault does not hold at all.
	for ref, rec := range rows {
		if err := b.reconcileKey(ctx, ref, rec, true, rep); err != nil {
			rep.Failed++
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// vaultScopes lists the scopes that hold keys in Vault: every workspace and
// organization folder, and hosted.
func (b *Broker) vaultScopes(ctx context.Context, errs *[]error) []Scope {
	scopes := []Scope{HostedScope()}
	for kind, dir := range map[ScopeKind]string{ScopeWorkspace: "workspaces/", ScopeOrganization: "organizations/"} {
		names, err := b.writer.List(ctx, dir)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("reconcile: list %s: %w", dir, fromVault(err)))
			continue
		}
		for _, n := range names {
			if id, ok := strings.CutSuffix(n, "/"); ok && ids.Valid(id) {
				scopes = append(scopes, Scope{Kind: kind, ID: id})
			}
		}
	}
	return scopes
}

func (b *Broker) reconcileKey(ctx context.Context, ref KeyRef, rec KeyRecord, hasRow bool, rep *ReconcileReport) error {
	if hasRow && rec.WriteStatus != WriteComplete {
		return nil // pending: handled by reconcileOne
	}
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("reconcile %s: %w", ref, fromVault(err))
	}
	cur, listed := md.Current()
	alive := err == nil && listed && cur.Alive()
	switch {
	case !alive && hasRow:
		change := b.repairChange(ref, ActionDelete, "the key is gone from Vault")
		if err := change.completeDelete(ctx, max(md.CurrentVersion, rec.Version)); err != nil {
			return err
		}
		rep.Repaired++
	case alive && (!hasRow || rec.Version != md.CurrentVersion):
		reason := fmt.Sprintf("Vault holds version %d, metadata says %d", md.CurrentVersion, rec.Version)
		if !hasRow {
			reason = fmt.Sprintf("Vault holds version %d and there is no metadata row", md.CurrentVersion)
		}
		if b.reader == nil {
			rep.Unrepaired = append(rep.Unrepaired, ref.String()+": "+reason)
			return nil
		}
		cred, version, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), 0)
		if errors.Is(err, vault.ErrNoValueField) {
			// Written around keybroker under another field name: nothing to
			// serve, and nothing keybroker may guess. An operator fixes it.
			rep.Unrepaired = append(rep.Unrepaired, ref.String()+": "+reason+", but it has no field "+missingField(err)+" ("+vault.FieldNames(err)+"); "+
				"resolve answers no_key until it is rewritten with that field")
			return nil
		}
		if err != nil {
			return fmt.Errorf("reconcile %s: %w", ref, fromVault(err))
		}
		change := b.repairChange(ref, actionOf(OpSet, rec.Version), "adopted a change made in Vault directly: "+reason)
		p, err := b.checkProvider(ref.Provider)
		if err != nil {
			return err
		}
		change.masked, change.fp = p.Credential.Preview(cred), providers.Fingerprint(b.pepper, cred)
		change.view = viewOf(p, cred)
		if err := change.completeWrite(ctx, version); err != nil {
			return err
		}
		rep.Repaired++
	}
	return nil
}

func (b *Broker) reconcileOne(ctx context.Context, rec KeyRecord, rep *ReconcileReport) error {
	if rec.Pending == nil {
		return nil
	}
	change := b.resumeChange(rec)
	md, err := b.writer.Metadata(ctx, change.ref.VaultPath())
	exists := err == nil
	if err != nil && !errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("reconcile %s: %w", change.ref, fromVault(err))
	}
	cur, curListed := md.Current()
	alive := exists && curListed && cur.Alive()
	op := rec.Pending.Op
	switch {
	case op == OpDelete && !alive:
		if err := change.completeDelete(ctx, max(md.CurrentVersion, rec.Version)); err != nil {
			return err
		}
		rep.Completed++
	case op != OpDelete && alive && md.CurrentVersion > rec.Version:
		if err := change.completeWrite(ctx, md.CurrentVersion); err != nil {
			return err
		}
		rep.Completed++
	default:
		if err := change.undo(ctx); err != nil {
			return err
		}
		rep.Aborted++
	}
	return nil
}
