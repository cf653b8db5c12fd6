package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/vault"
)

// Actor is who asks for a change and from where, for the audit trail.
type Actor struct {
	// Subject names the caller (a token id, "cli:alice", "terraform").
	Subject string
	// RemoteAddr is the caller's network address, when known.
	RemoteAddr string
	// RequestID ties the change to the request's log lines (keybroker's
	// own id); ClientRequestID is the caller's X-Request-Id, if any.
	RequestID, ClientRequestID string
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
	// Resolves and LastUsedAt are the key's usage as flushed by every
	// replica (up to a flush interval behind); zero when never used.
	Resolves   int64
	LastUsedAt time.Time
	// Idle: unused (or, never used, created) more than IdleAfter ago.
	Idle bool
}

// withUsage adds the usage of the workspace's keys to metas.
func (b *Broker) withUsage(ctx context.Context, workspace string, metas []KeyMeta) []KeyMeta {
	if b.usageStore == nil {
		return metas
	}
	usage, err := b.usageStore.UsageOf(ctx, ScopeWorkspace, workspace)
	if err != nil {
		b.log.Warn("could not read key usage; answering without it", "workspace", workspace, "error", err)
		usage = nil
	}
	now := b.now()
	for i := range metas {
		m := &metas[i]
		u := usage[m.Provider+"/"+DefaultKeyID]
		m.Resolves, m.LastUsedAt = u.Resolves, u.LastUsedAt
		since := m.CreatedAt
		if !u.LastUsedAt.IsZero() {
			since = u.LastUsedAt
		}
		m.Idle = !since.IsZero() && now.Sub(since) > IdleAfter
	}
	return metas
}

func metaOf(r KeyRecord) KeyMeta {
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

// SetKeyRequest asks SetKey to store APIKey as the workspace's key for
// Provider.
type SetKeyRequest struct {
	Actor     Actor
	Workspace string
	Provider  string
	APIKey    string
	// ExpectedVersion > 0 writes only if that version is current
	// (ErrPreconditionFailed otherwise); 0 retries a lost race once.
	ExpectedVersion int
}

// SetKey stores the key: a new key, or a new KV version of an existing one
// (rotation). With ExpectedVersion > 0 the write happens only if that
// version is current (ErrPreconditionFailed otherwise); without, a write
// that loses a race is retried once against the new current version before
// ErrConflict.
func (b *Broker) SetKey(ctx context.Context, req SetKeyRequest) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	p, err := b.checkIDs(req.Workspace, req.Provider)
	if err != nil {
		return SetResult{}, err
	}
	// A mask echoed back is named as such before the format rule (which
	// would only say the length is wrong).
	if err := b.refuseEchoedMask(ctx, req); err != nil {
		return SetResult{}, err
	}
	if err := p.ValidateKey(req.APIKey); err != nil {
		return SetResult{}, err
	}
	if req.ExpectedVersion < 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "expected version must be positive")
	}
	return b.write(ctx, changeRequest{Ref: WorkspaceKey(req.Workspace, req.Provider), Actor: req.Actor, Op: OpSet, Value: req.APIKey},
		req.ExpectedVersion)
}

// RollbackRequest asks Rollback to make Version of the workspace's key for
// Provider current again.
type RollbackRequest struct {
	Actor     Actor
	Workspace string
	Provider  string
	Version   int
}

// Rollback makes an earlier version current again by writing its value as a
// new version. It needs the reader identity (the writer cannot read keys).
func (b *Broker) Rollback(ctx context.Context, req RollbackRequest) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	if b.reader == nil {
		return SetResult{}, fmt.Errorf("rollback: %w: it reads the old version with the Vault reader identity", ErrNotConfigured)
	}
	if _, err := b.checkIDs(req.Workspace, req.Provider); err != nil {
		return SetResult{}, err
	}
	if req.Version <= 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "version must be a positive integer")
	}
	ref := WorkspaceKey(req.Workspace, req.Provider)
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s: %w", ref, fromVault(err))
	}
	if req.Version == md.CurrentVersion {
		return SetResult{}, refuse(ErrInvalidRequest, "version %d is already current", req.Version)
	}
	old, err := b.reader.GetVersion(ctx, ref.VaultPath(), req.Version)
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s to version %d: %w", ref, req.Version, fromVault(err))
	}
	return b.write(ctx, changeRequest{Ref: ref, Actor: req.Actor, Op: OpRollback, Value: old.Value,
		Detail: fmt.Sprintf("to version %d", req.Version)}, md.CurrentVersion)
}

func (b *Broker) canManage() error {
	if b.writer == nil {
		return fmt.Errorf("%w: no Vault writer identity and metadata store", ErrNotConfigured)
	}
	return nil
}

// write carries a set or a rollback through the key-change unit: row
// pending → Vault put with check-and-set → row active with the new version,
// masked preview and fingerprint plus an audit event, in one transaction →
// cache entry evicted. A failure after the Vault write leaves the row
// pending for Reconcile.
func (b *Broker) write(ctx context.Context, req changeRequest, expectedVersion int) (SetResult, error) {
	change, prior, err := b.beginChange(ctx, req)
	if err != nil {
		return SetResult{}, err
	}
	version, err := b.putWithCAS(ctx, req.Ref.VaultPath(), req.Value, expectedVersion)
	if err != nil {
		return SetResult{}, change.abort(ctx, err, 0)
	}
	if err := change.completeWrite(ctx, version); err != nil {
		return SetResult{}, err
	}
	b.log.InfoContext(ctx, "key stored", "workspace", req.Ref.ScopeID, "provider", req.Ref.Provider, "action", change.action,
		"version", version, "masked_key", change.masked, "actor", req.Actor.Subject)
	rec, err := b.store.GetKey(ctx, req.Ref)
	if err != nil {
		return SetResult{}, fmt.Errorf("%s %s: read back metadata: %w", req.Op, req.Ref, fromStore(err))
	}
	return SetResult{Meta: metaOf(rec), Created: prior == 0}, nil
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

// DeleteKeyRequest asks DeleteKey to remove the workspace's key for
// Provider.
type DeleteKeyRequest struct {
	Actor     Actor
	Workspace string
	Provider  string
	// ExpectedVersion > 0 deletes only if that version is current.
	ExpectedVersion int
	// Destroy removes every version and the key's metadata from Vault for
	// good, instead of soft-deleting the current version (which leaves the
	// older versions readable by Vault's operators and restorable by them).
	// It also clears what a plain delete left behind.
	Destroy bool
}

// DeleteKey removes the workspace's key: its current KV version is
// soft-deleted (the history stays for Versions and Rollback) and its
// metadata row removed. Resolve falls back to the hosted key at once on
// this replica. With ExpectedVersion > 0, only if that version is current.
func (b *Broker) DeleteKey(ctx context.Context, req DeleteKeyRequest) error {
	if err := b.canManage(); err != nil {
		return err
	}
	if _, err := b.checkIDs(req.Workspace, req.Provider); err != nil {
		return err
	}
	ref := WorkspaceKey(req.Workspace, req.Provider)
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, fromVault(err))
	}
	if cur, ok := md.Current(); !req.Destroy && (!ok || !cur.Alive()) {
		return fmt.Errorf("delete %s: %w: the workspace has no key for this provider", ref, ErrNotFound)
	}
	if req.ExpectedVersion > 0 && md.CurrentVersion != req.ExpectedVersion {
		return fmt.Errorf("delete %s: current version is %d, not %d: %w", ref, md.CurrentVersion, req.ExpectedVersion, ErrPreconditionFailed)
	}
	detail := "current version soft-deleted; older versions remain in Vault"
	if req.Destroy {
		detail = fmt.Sprintf("destroyed: all %d versions and the metadata removed from Vault", len(md.Versions))
	}
	change, _, err := b.beginChange(ctx, changeRequest{Ref: ref, Actor: req.Actor, Op: OpDelete, Detail: detail})
	if err != nil {
		return err
	}
	version := md.CurrentVersion
	if req.Destroy {
		err = b.writer.Destroy(ctx, ref.VaultPath())
	} else {
		err = b.writer.DeleteVersion(ctx, ref.VaultPath(), version)
	}
	if err != nil {
		return change.abort(ctx, fromVault(err), version)
	}
	if err := change.completeDelete(ctx, version); err != nil {
		return err
	}
	b.log.InfoContext(ctx, "key deleted", "workspace", ref.ScopeID, "provider", ref.Provider, "version", version, "destroyed", req.Destroy, "actor", req.Actor.Subject)
	return nil
}

// PurgeWorkspace destroys every key of a deleted workspace in Vault, all
// versions and metadata, and removes its rows. It returns how many keys
// Vault held. Running it again finishes an interrupted purge.
func (b *Broker) PurgeWorkspace(ctx context.Context, actor Actor, workspace string) (int, error) {
	if err := b.canManage(); err != nil {
		return 0, err
	}
	if err := checkWorkspace(workspace); err != nil {
		return 0, err
	}
	names, err := b.writer.List(ctx, WorkspaceKeysDir(workspace))
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", workspace, fromVault(err))
	}
	destroyed := 0
	for _, provider := range names {
		if !ids.Valid(provider) {
			continue // a folder or a name keybroker did not write
		}
		ref := WorkspaceKey(workspace, provider)
		if err := b.writer.Destroy(ctx, ref.VaultPath()); err != nil {
			return destroyed, fmt.Errorf("purge %s: destroy %s: %w", workspace, provider, fromVault(err))
		}
		destroyed++
		b.evict(ref)
	}
	b.evictWorkspace(workspace)
	audit := AuditEvent{
		Workspace: workspace, Action: ActionPurge, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID, ClientRequestID: actor.ClientRequestID,
		Outcome: OutcomeSuccess, Detail: fmt.Sprintf("%d keys destroyed", destroyed),
	}
	if _, err := b.store.PurgeWorkspace(ctx, workspace, audit); err != nil {
		return destroyed, fmt.Errorf("purge %s: keys destroyed in Vault, but metadata could not be removed (run the purge again): %w",
			workspace, fromStore(err))
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
	rec, err := b.store.GetKey(ctx, WorkspaceKey(workspace, provider))
	if errors.Is(err, ErrNotFound) {
		return KeyMeta{}, fmt.Errorf("%w: the workspace has no key for %s", ErrNotFound, provider)
	}
	if err != nil {
		return KeyMeta{}, fromStore(err)
	}
	return b.withUsage(ctx, workspace, []KeyMeta{metaOf(rec)})[0], nil
}

// ListKeys returns the metadata of every key of a workspace, by provider.
func (b *Broker) ListKeys(ctx context.Context, workspace string) ([]KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if err := checkWorkspace(workspace); err != nil {
		return nil, err
	}
	recs, err := b.store.ListKeys(ctx, workspace)
	if err != nil {
		return nil, fromStore(err)
	}
	out := make([]KeyMeta, 0, len(recs))
	for _, r := range recs {
		out = append(out, metaOf(r))
	}
	return b.withUsage(ctx, workspace, out), nil
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
	ref := WorkspaceKey(workspace, provider)
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", ref, fromVault(err))
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
func (b *Broker) Audit(ctx context.Context, workspace string, before int64, limit int) ([]AuditEvent, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if err := checkWorkspace(workspace); err != nil {
		return nil, err
	}
	evs, err := b.store.ListAudit(ctx, workspace, before, limit)
	if err != nil {
		return nil, fromStore(err)
	}
	return evs, nil
}

// AuditAll returns the global trail (every workspace's events and the
// operator-wide ones), newest first, with ids below before.
func (b *Broker) AuditAll(ctx context.Context, before int64, limit int) ([]AuditEvent, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	evs, err := b.store.ListAllAudit(ctx, before, limit)
	if err != nil {
		return nil, fromStore(err)
	}
	return evs, nil
}

// refuseEchoedMask refuses a value that is a masked preview — its own, or
// the current key's: a page or script echoing the mask back would
// otherwise replace a working key with its preview.
func (b *Broker) refuseEchoedMask(ctx context.Context, req SetKeyRequest) error {
	const why = "the value is a masked preview (%s), not a key: send the full key"
	if MaskKey(req.APIKey) == req.APIKey {
		return refuse(ErrInvalidKey, why, "its own")
	}
	if !strings.Contains(req.APIKey, "...") {
		return nil
	}
	rec, err := b.store.GetKey(ctx, WorkspaceKey(req.Workspace, req.Provider))
	if err == nil && rec.MaskedKey != "" && rec.MaskedKey == req.APIKey {
		return refuse(ErrInvalidKey, why, "the current key's")
	}
	return nil
}
