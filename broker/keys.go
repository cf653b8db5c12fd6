package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// Actor is who asks for a change and from where, for the audit trail.
type Actor struct {
	// Subject names the caller (a token id, "cli:alice", "terraform").
	Subject string
	// RemoteAddr is the caller's network address, when known.
	RemoteAddr string
	// RequestID ties the change to the request's log lines.
	RequestID string
}

// KeyMeta is what keybroker says about a key: never the key itself.
type KeyMeta struct {
	Workspace   string
	Provider    string
	MaskedKey   string
	Version     int
	Fingerprint string
	CreatedAt   time.Time
	CreatedBy   string
	UpdatedAt   time.Time
	UpdatedBy   string
}

func metaOf(r store.KeyRecord) KeyMeta {
	return KeyMeta{
		Workspace: r.Workspace, Provider: r.Provider, MaskedKey: r.MaskedKey, Version: r.Version,
		Fingerprint: r.Fingerprint, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy,
		UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy,
	}
}

// Audit actions and outcomes.
const (
	ActionCreate   = "key.create"
	ActionRotate   = "key.rotate"
	ActionRollback = "key.rollback"
	ActionDelete   = "key.delete"
	ActionPurge    = "workspace.purge"

	OutcomeSuccess            = "success"
	OutcomeConflict           = "conflict"
	OutcomePreconditionFailed = "precondition_failed"
	OutcomeError              = "error"
	OutcomeReconciled         = "reconciled"
)

// SetResult is the outcome of SetKey.
type SetResult struct {
	Meta KeyMeta
	// Created is true when the workspace had no key for the provider.
	Created bool
}

// SetKey stores apiKey as the workspace's key for provider: a new key, or a
// new KV version of an existing one (rotation). With expectedVersion > 0 the
// write happens only if that version is current (ErrPreconditionFailed
// otherwise); without, a write that loses a race is retried once against
// the new current version before ErrConflict.
func (b *Broker) SetKey(ctx context.Context, actor Actor, workspace, provider, apiKey string, expectedVersion int) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	p, err := b.checkIDs(workspace, provider)
	if err != nil {
		return SetResult{}, err
	}
	if err := p.ValidateKey(apiKey); err != nil {
		return SetResult{}, err
	}
	if expectedVersion < 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "expected version must be positive")
	}
	return b.write(ctx, actor, workspace, provider, apiKey, store.OpSet, expectedVersion, "")
}

// Rollback makes an earlier version current again by writing its value as a
// new version. It needs the reader identity (the writer cannot read keys).
func (b *Broker) Rollback(ctx context.Context, actor Actor, workspace, provider string, version int) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	if b.reader == nil {
		return SetResult{}, fmt.Errorf("rollback: %w: it reads the old version with the Vault reader identity", ErrNotConfigured)
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return SetResult{}, err
	}
	if version <= 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "version must be a positive integer")
	}
	path := vault.WorkspaceKeyPath(workspace, provider)
	md, err := b.writer.Metadata(ctx, path)
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s/%s: %w", workspace, provider, fromVault(err))
	}
	if version == md.CurrentVersion {
		return SetResult{}, refuse(ErrInvalidRequest, "version %d is already current", version)
	}
	old, err := b.reader.GetVersion(ctx, path, version)
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s/%s to version %d: %w", workspace, provider, version, fromVault(err))
	}
	return b.write(ctx, actor, workspace, provider, old.Value, store.OpRollback, md.CurrentVersion, fmt.Sprintf("to version %d", version))
}

func (b *Broker) canManage() error {
	if b.writer == nil {
		return fmt.Errorf("%w: no Vault writer identity and metadata store", ErrNotConfigured)
	}
	return nil
}

// write is the one path of every key write (DESIGN.md, "Writes"): PostgreSQL
// row pending → Vault put with check-and-set → row active with the new
// version, masked preview and fingerprint plus an audit event, in one
// transaction → evict the cache entry. A failure after the Vault write
// leaves the row pending for Reconcile.
func (b *Broker) write(ctx context.Context, actor Actor, workspace, provider, value, op string, expectedVersion int, detail string) (SetResult, error) {
	path := vault.WorkspaceKeyPath(workspace, provider)
	masked, fp := MaskKey(value), Fingerprint(b.pepper, value)
	change := store.Change{ID: uuid.NewString(), Op: op, By: actor.Subject, MaskedKey: masked, Fingerprint: fp}
	rec, err := b.store.BeginChange(ctx, workspace, provider, change)
	if err != nil {
		return SetResult{}, fmt.Errorf("set %s/%s: %w", workspace, provider, errors.Join(ErrUnavailable, err))
	}
	created := rec.Version == 0
	action := ActionRotate
	switch {
	case op == store.OpRollback:
		action = ActionRollback
	case created:
		action = ActionCreate
	}
	audit := store.AuditEvent{
		Workspace: workspace, Provider: provider, Action: action, Actor: actor.Subject,
		RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID, MaskedKey: &masked, Fingerprint: &fp, Detail: detail,
	}

	version, err := b.putWithCAS(ctx, path, value, expectedVersion)
	if err != nil {
		// Nothing was written to Vault: undo the pending mark.
		if aerr := b.store.AbortChange(context.WithoutCancel(ctx), workspace, provider, change.ID); aerr != nil {
			b.log.Warn("could not undo a pending key change; the reconciler will", "workspace", workspace, "provider", provider, "error", aerr)
		}
		audit.Outcome = OutcomeError
		switch {
		case errors.Is(err, ErrPreconditionFailed):
			audit.Outcome = OutcomePreconditionFailed
		case errors.Is(err, ErrConflict):
			audit.Outcome = OutcomeConflict
		}
		if aerr := b.store.AppendAudit(context.WithoutCancel(ctx), audit); aerr != nil {
			b.log.Warn("could not record a failed key change in the audit trail", "workspace", workspace, "provider", provider, "error", aerr)
		}
		b.metrics.action(action, audit.Outcome)
		return SetResult{}, fmt.Errorf("set %s/%s: %w", workspace, provider, err)
	}
	if b.afterVaultWrite != nil {
		b.afterVaultWrite()
	}
	b.evict(workspace, provider)

	audit.Outcome = OutcomeSuccess
	audit.Version = &version
	written := store.Written{Version: version, MaskedKey: masked, Fingerprint: fp, By: actor.Subject}
	if err := b.store.CompleteWrite(ctx, workspace, provider, change.ID, written, audit); err != nil {
		return SetResult{}, fmt.Errorf("set %s/%s: key stored in Vault as version %d, but its metadata could not be recorded (the reconciler will finish it): %w",
			workspace, provider, version, errors.Join(ErrUnavailable, err))
	}
	b.metrics.action(action, OutcomeSuccess)
	b.log.InfoContext(ctx, "key stored", "workspace", workspace, "provider", provider, "action", action,
		"version", version, "masked_key", masked, "actor", actor.Subject)
	rec, err = b.store.GetKey(ctx, workspace, provider)
	if err != nil {
		return SetResult{}, fmt.Errorf("set %s/%s: read back metadata: %w", workspace, provider, errors.Join(ErrUnavailable, err))
	}
	return SetResult{Meta: metaOf(rec), Created: created}, nil
}

// putWithCAS writes value at path with check-and-set. With expected > 0 it
// is the caller's version (a mismatch is ErrPreconditionFailed); else the
// current version is read from Vault's metadata and one lost race is
// retried.
func (b *Broker) putWithCAS(ctx context.Context, path, value string, expected int) (int, error) {
	if expected > 0 {
		v, err := b.writer.Put(ctx, path, value, expected)
		if errors.Is(err, vault.ErrCASMismatch) {
			return 0, errors.Join(ErrPreconditionFailed, err)
		}
		return v, fromVault(err)
	}
	var err error
	for range 2 {
		var cas int
		md, merr := b.writer.Metadata(ctx, path)
		switch {
		case merr == nil:
			cas = md.CurrentVersion
		case errors.Is(merr, vault.ErrNotFound):
			cas = 0
		default:
			return 0, fromVault(merr)
		}
		var v int
		v, err = b.writer.Put(ctx, path, value, cas)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, vault.ErrCASMismatch) {
			return 0, fromVault(err)
		}
	}
	return 0, fromVault(err)
}

// DeleteKey removes the workspace's key for provider: its current KV
// version is soft-deleted (the history stays for Versions and Rollback) and
// its metadata row removed. Resolve falls back to the hosted key at once on
// this replica. With expectedVersion > 0, only if that version is current.
func (b *Broker) DeleteKey(ctx context.Context, actor Actor, workspace, provider string, expectedVersion int) error {
	if err := b.canManage(); err != nil {
		return err
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return err
	}
	path := vault.WorkspaceKeyPath(workspace, provider)
	md, err := b.writer.Metadata(ctx, path)
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", workspace, provider, fromVault(err))
	}
	if cur, ok := md.Current(); !ok || !cur.Alive() {
		return fmt.Errorf("delete %s/%s: %w: the workspace has no key for this provider", workspace, provider, ErrNotFound)
	}
	if expectedVersion > 0 && md.CurrentVersion != expectedVersion {
		return fmt.Errorf("delete %s/%s: current version is %d, not %d: %w", workspace, provider, md.CurrentVersion, expectedVersion, ErrPreconditionFailed)
	}
	change := store.Change{ID: uuid.NewString(), Op: store.OpDelete, By: actor.Subject}
	if _, err := b.store.BeginChange(ctx, workspace, provider, change); err != nil {
		return fmt.Errorf("delete %s/%s: %w", workspace, provider, errors.Join(ErrUnavailable, err))
	}
	version := md.CurrentVersion
	audit := store.AuditEvent{
		Workspace: workspace, Provider: provider, Action: ActionDelete, Actor: actor.Subject,
		RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID, Version: &version,
	}
	if err := b.writer.DeleteVersion(ctx, path, version); err != nil {
		if aerr := b.store.AbortChange(context.WithoutCancel(ctx), workspace, provider, change.ID); aerr != nil {
			b.log.Warn("could not undo a pending key change; the reconciler will", "workspace", workspace, "provider", provider, "error", aerr)
		}
		audit.Outcome = OutcomeError
		if aerr := b.store.AppendAudit(context.WithoutCancel(ctx), audit); aerr != nil {
			b.log.Warn("could not record a failed key change in the audit trail", "workspace", workspace, "provider", provider, "error", aerr)
		}
		return fmt.Errorf("delete %s/%s: %w", workspace, provider, fromVault(err))
	}
	b.evict(workspace, provider)
	audit.Outcome = OutcomeSuccess
	if err := b.store.CompleteDelete(ctx, workspace, provider, version, audit); err != nil {
		return fmt.Errorf("delete %s/%s: key deleted in Vault, but its metadata could not be removed (the reconciler will finish it): %w",
			workspace, provider, errors.Join(ErrUnavailable, err))
	}
	b.metrics.action(ActionDelete, OutcomeSuccess)
	b.log.InfoContext(ctx, "key deleted", "workspace", workspace, "provider", provider, "version", version, "actor", actor.Subject)
	return nil
}

// PurgeWorkspace destroys every key of a deleted workspace in Vault, all
// versions and metadata, and removes its rows. It returns how many keys
// Vault held. Running it again finishes an interrupted purge.
func (b *Broker) PurgeWorkspace(ctx context.Context, actor Actor, workspace string) (int, error) {
	if err := b.canManage(); err != nil {
		return 0, err
	}
	if !ValidID(workspace) {
		return 0, errors.Join(ErrInvalidID, errors.New("workspace id must match [a-z0-9][a-z0-9_-]{0,62}"))
	}
	names, err := b.writer.List(ctx, vault.WorkspaceProvidersDir(workspace))
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", workspace, fromVault(err))
	}
	destroyed := 0
	for _, provider := range names {
		if !ValidID(provider) {
			continue // a folder or a name keybroker did not write
		}
		if err := b.writer.Destroy(ctx, vault.WorkspaceKeyPath(workspace, provider)); err != nil {
			return destroyed, fmt.Errorf("purge %s: destroy %s: %w", workspace, provider, fromVault(err))
		}
		destroyed++
		b.evict(workspace, provider)
	}
	for _, p := range b.providers.All() {
		b.evict(workspace, p.ID)
	}
	audit := store.AuditEvent{
		Workspace: workspace, Action: ActionPurge, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID,
		Outcome: OutcomeSuccess, Detail: fmt.Sprintf("%d keys destroyed", destroyed),
	}
	if _, err := b.store.PurgeWorkspace(ctx, workspace, audit); err != nil {
		return destroyed, fmt.Errorf("purge %s: keys destroyed in Vault, but metadata could not be removed (run the purge again): %w",
			workspace, errors.Join(ErrUnavailable, err))
	}
	b.metrics.action(ActionPurge, OutcomeSuccess)
	b.log.InfoContext(ctx, "workspace purged", "workspace", workspace, "keys_destroyed", destroyed, "actor", actor.Subject)
	return destroyed, nil
}

// GetKey returns a key's metadata.
func (b *Broker) GetKey(ctx context.Context, workspace, provider string) (KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return KeyMeta{}, err
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return KeyMeta{}, err
	}
	rec, err := b.store.GetKey(ctx, workspace, provider)
	if errors.Is(err, store.ErrNotFound) {
		return KeyMeta{}, fmt.Errorf("%w: the workspace has no key for %s", ErrNotFound, provider)
	}
	if err != nil {
		return KeyMeta{}, errors.Join(ErrUnavailable, err)
	}
	return metaOf(rec), nil
}

// ListKeys returns the metadata of every key of a workspace, by provider.
func (b *Broker) ListKeys(ctx context.Context, workspace string) ([]KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if !ValidID(workspace) {
		return nil, errors.Join(ErrInvalidID, errors.New("workspace id must match [a-z0-9][a-z0-9_-]{0,62}"))
	}
	recs, err := b.store.ListKeys(ctx, workspace)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	out := make([]KeyMeta, 0, len(recs))
	for _, r := range recs {
		out = append(out, metaOf(r))
	}
	return out, nil
}

// VersionInfo describes one KV version of a key (metadata only).
type VersionInfo struct {
	Version   int
	CreatedAt time.Time
	DeletedAt time.Time // zero unless soft-deleted
	Destroyed bool
	Current   bool
}

// Versions returns a key's version history, newest first.
func (b *Broker) Versions(ctx context.Context, workspace, provider string) ([]VersionInfo, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if _, err := b.checkIDs(workspace, provider); err != nil {
		return nil, err
	}
	md, err := b.writer.Metadata(ctx, vault.WorkspaceKeyPath(workspace, provider))
	if err != nil {
		return nil, fmt.Errorf("versions of %s/%s: %w", workspace, provider, fromVault(err))
	}
	out := make([]VersionInfo, 0, len(md.Versions))
	for i := len(md.Versions) - 1; i >= 0; i-- {
		v := md.Versions[i]
		out = append(out, VersionInfo{
			Version: v.Version, CreatedAt: v.CreatedTime, DeletedAt: v.DeletionTime,
			Destroyed: v.Destroyed, Current: v.Version == md.CurrentVersion,
		})
	}
	return out, nil
}

// Audit returns up to limit audit events of a workspace, newest first, with
// ids below before (0: from the newest).
func (b *Broker) Audit(ctx context.Context, workspace string, before int64, limit int) ([]store.AuditEvent, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if !ValidID(workspace) {
		return nil, errors.Join(ErrInvalidID, errors.New("workspace id must match [a-z0-9][a-z0-9_-]{0,62}"))
	}
	evs, err := b.store.ListAudit(ctx, workspace, before, limit)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	return evs, nil
}
