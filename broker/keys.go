package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
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

// KeyMeta is what keybroker says about a key (metaOf): never the key
// itself.
type KeyMeta struct {
	KeyFacts
	// State is KeyActive or KeyDisabled.
	State string
	// Resolves and LastUsedAt are the key's usage as flushed by every
	// replica (up to a flush interval behind); zero when never used.
	Resolves   int64
	LastUsedAt time.Time
	// Idle: unused (or, never used, created) more than IdleAfter ago.
	Idle bool
	// Health is HealthHealthy, HealthCoolingDown (until CooldownUntil) or
	// HealthFailing; HealthReason says why, HealthChangedAt since when.
	Health string
	// Expiry is ExpiryNone, ExpiryValid, ExpiryExpiring or ExpiryExpired
	// (of ExpiresAt, at the time of the answer).
	Expiry string
}

// withUsage adds the usage of a scope's keys to metas.
func (b *Broker) withUsage(ctx context.Context, scope Scope, metas []KeyMeta) []KeyMeta {
	var usage map[string]Usage
	if b.usageStore != nil {
		var err error
		if usage, err = b.usageStore.UsageOf(ctx, scope.Kind, scope.ID); err != nil {
			b.log.Warn("could not read key usage; answering without it", "scope", scope.String(), "error", err)
			usage = nil
		}
	}
	now := b.now()
	for i := range metas {
		m := &metas[i]
		u := usage[m.Provider+"/"+m.KeyID]
		m.Resolves, m.LastUsedAt = u.Resolves, u.LastUsedAt
		since := m.CreatedAt
		if !u.LastUsedAt.IsZero() {
			since = u.LastUsedAt
		}
		m.Idle = !since.IsZero() && now.Sub(since) > IdleAfter
		m.Expiry = expiryOf(m.ExpiresAt, now, b.expiryWarning)
	}
	return metas
}

// metaOf is what keybroker says of a record at now (its health then).
func metaOf(r KeyRecord, now time.Time) KeyMeta {
	state := KeyActive
	if r.Disabled {
		state = KeyDisabled
	}
	m := KeyMeta{KeyFacts: r.KeyFacts, State: state, Health: healthOf(r.Failing, r.CooldownUntil, now)}
	if m.Models == nil {
		m.Models = []string{}
	}
	if m.Health != HealthCoolingDown {
		m.CooldownUntil = time.Time{} // a cooldown over is no longer news
	}
	return m
}

// Audit actions and outcomes.
const (
	ActionCreate   = "key.create"
	ActionRotate   = "key.rotate"
	ActionRollback = "key.rollback"
	ActionDelete   = "key.delete"
	ActionUpdate   = "key.update"
	ActionPurge    = "workspace.purge"
	// ActionPurgeOrganization: every key of an organization destroyed.
	ActionPurgeOrganization = "organization.purge"

	OutcomeSuccess            = "success"
	OutcomeConflict           = "conflict"
	OutcomePreconditionFailed = "precondition_failed"
	OutcomeError              = "error"
	OutcomeReconciled         = "reconciled"
)

// SetResult is the outcome of PutKey and AddKey.
type SetResult struct {
	Meta KeyMeta
	// Created is true when the pool had no key of this id.
	Created bool
}

// PutKeyRequest asks PutKey to store Credential as key Ref.
type PutKeyRequest struct {
	Actor      Actor
	Ref        KeyRef
	Credential providers.Credential
	// ExpectedVersion > 0 writes only if that version is current
	// (ErrPreconditionFailed otherwise); 0 retries a lost race once.
	ExpectedVersion int
	// Check asks the provider first: a refused key is
	// ErrVerificationFailed and nothing is stored.
	Check bool
}

// PutKey stores the key: a new key of its pool (with the default
// settings), or a new KV version of an existing one (rotation). With
// ExpectedVersion > 0 the write happens only if that version is current
// (ErrPreconditionFailed otherwise); without, a write that loses a race is
// retried once against the new current version before ErrConflict.
func (b *Broker) PutKey(ctx context.Context, req PutKeyRequest) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	p, err := b.keyProvider(req.Ref)
	if err != nil {
		return SetResult{}, err
	}
	if err := b.checkValue(ctx, p, req.Ref, req.Credential); err != nil {
		return SetResult{}, err
	}
	if req.ExpectedVersion < 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "expected version must be positive")
	}
	if req.Check {
		if err := b.verify(ctx, p, req.Credential); err != nil {
			return SetResult{}, err
		}
	}
	return b.write(ctx, changeRequest{Ref: req.Ref, Actor: req.Actor, Op: OpSet, Credential: req.Credential,
		Member: MemberSettings{Priority: DefaultPriority}}, req.ExpectedVersion)
}

// checkValue refuses a credential with an echoed mask or one that breaks
// the provider's schema and format rules.
func (b *Broker) checkValue(ctx context.Context, p *providers.Provider, ref KeyRef, c providers.Credential) error {
	// A mask echoed back is named as such before the format rule (which
	// would only say the length is wrong).
	if err := b.refuseEchoedMask(ctx, p, ref, c); err != nil {
		return err
	}
	if err := p.Validate(c); err != nil {
		return err
	}
	return b.checkAdminCredential(ctx, p, c)
}

// checkAdminCredential asks the provider, for an admin credential, whether
// it can act where it says (OpenAI: the project is its organization's):
// refused, it is refused here, changing nothing. A provider that cannot
// be reached does not block the write (rotation and revocation ask the
// provider again about each key).
func (b *Broker) checkAdminCredential(ctx context.Context, p *providers.Provider, c providers.Credential) error {
	if !p.IsAdmin() || b.adminEnv == nil {
		return nil
	}
	of, ok := b.providers.Lookup(p.AdminOf)
	if !ok || of.KeyAdmin == nil || of.KeyAdmin.CheckAdmin == nil {
		return nil
	}
	err := of.KeyAdmin.CheckAdmin(ctx, b.adminEnv.AdminEnv(p), c)
	var ae *providers.AdminError
	if errors.As(err, &ae) && ae.Refused() {
		if ae.Code == providers.CodeProjectNotFound {
			return refuse(ErrInvalidRequest, "%s does not know the project with this admin key (a project of another organization?): nothing was stored", of.DisplayName)
		}
		return refuse(ErrInvalidRequest, "%s refused the admin key (%d): nothing was stored", of.DisplayName, ae.Status)
	}
	if err != nil {
		b.log.WarnContext(ctx, "the admin credential could not be checked with its provider; stored unchecked", "provider", p.ID, "error", err)
	}
	return nil
}

// AddKeyRequest asks AddKey for a new key of a pool.
type AddKeyRequest struct {
	Actor Actor
	Pool  PoolRef
	// KeyID names the key; generated when "".
	KeyID      string
	Credential providers.Credential
	// Name, Priority (nil: DefaultPriority), State ("": active) and Models
	// (nil: every model) settle the key's place in the pool.
	Name     string
	Priority *int
	State    string
	Models   []string
	// ExpiresAt (zero: none) and ProviderKeyID ("": unknown): see
	// KeyFacts.
	ExpiresAt     time.Time
	ProviderKeyID string
	// Check asks the provider first (see PutKeyRequest.Check).
	Check bool
}

// DefaultPriority is a key's priority unless it is given one.
const DefaultPriority = 100

// AddKey adds a key to a pool: ErrKeyExists when the pool has a key of that
// id, ErrPoolFull when the pool holds MaxKeysPerPool keys.
func (b *Broker) AddKey(ctx context.Context, req AddKeyRequest) (SetResult, error) {
	if err := b.canManage(); err != nil {
		return SetResult{}, err
	}
	if req.KeyID == "" {
		req.KeyID = newKeyID()
	}
	ref := req.Pool.Key(req.KeyID)
	p, err := b.keyProvider(ref)
	if err != nil {
		return SetResult{}, err
	}
	member := MemberSettings{Name: req.Name, Priority: DefaultPriority, Models: req.Models, ExpiresAt: req.ExpiresAt, ProviderKeyID: req.ProviderKeyID}
	if req.Priority != nil {
		member.Priority = *req.Priority
	}
	if req.State != "" {
		if member.Disabled, err = parseState(req.State); err != nil {
			return SetResult{}, err
		}
	}
	if member, err = checkMember(member); err != nil {
		return SetResult{}, err
	}
	if err := checkProviderKeyID(p, member.ProviderKeyID); err != nil {
		return SetResult{}, err
	}
	if err := b.checkValue(ctx, p, ref, req.Credential); err != nil {
		return SetResult{}, err
	}
	if req.Check {
		if err := b.verify(ctx, p, req.Credential); err != nil {
			return SetResult{}, err
		}
	}
	return b.write(ctx, changeRequest{Ref: ref, Actor: req.Actor, Op: OpSet, Credential: req.Credential, Create: true, Member: member,
		Detail: memberDetail(member)}, 0)
}

// newKeyID generates a key id: "key-" and 8 random hex digits.
func newKeyID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "key-" + hex.EncodeToString(b)
}

// Limits of a pool member's settings.
const (
	MaxNameLength = 120
	MaxPriority   = 1000
	MaxModels     = 64
)

// parseState reads an admin state: true for disabled.
func parseState(s string) (bool, error) {
	switch s {
	case KeyActive:
		return false, nil
	case KeyDisabled:
		return true, nil
	}
	return false, refuse(ErrInvalidRequest, "state must be %q or %q", KeyActive, KeyDisabled)
}

// checkMember validates a member's settings; models are returned without
// duplicates, in the order given.
func checkMember(m MemberSettings) (MemberSettings, error) {
	if utf8.RuneCountInString(m.Name) > MaxNameLength || !utf8.ValidString(m.Name) {
		return m, refuse(ErrInvalidRequest, "name must be at most %d characters", MaxNameLength)
	}
	if strings.ContainsFunc(m.Name, unicode.IsControl) {
		return m, refuse(ErrInvalidRequest, "name must not contain control characters (newlines, tabs)")
	}
	if m.Priority < 0 || m.Priority > MaxPriority {
		return m, refuse(ErrInvalidRequest, "priority must be an integer from 0 to %d (lower serves first)", MaxPriority)
	}
	if len(m.Models) > MaxModels {
		return m, refuse(ErrInvalidRequest, "models may list at most %d model names", MaxModels)
	}
	seen := make(map[string]bool, len(m.Models))
	out := make([]string, 0, len(m.Models))
	for _, model := range m.Models {
		if model == "" || len(model) > MaxModelLength || strings.ContainsFunc(model, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return m, refuse(ErrInvalidRequest, "each model must be a model name of 1 to %d characters without spaces", MaxModelLength)
		}
		if !seen[model] {
			seen[model] = true
			out = append(out, model)
		}
	}
	m.Models = out
	if m.ProviderKeyID != "" && !validProviderKeyID(m.ProviderKeyID) {
		return m, refuse(ErrInvalidRequest, "providerKeyId must be 1 to 200 letters, digits, '-', '_', '.' or ':' (the key's id at its provider, never the key)")
	}
	if !m.ExpiresAt.IsZero() && (m.ExpiresAt.Year() < 2000 || m.ExpiresAt.Year() > 9999) {
		return m, refuse(ErrInvalidRequest, "expiresAt must be a date between the years 2000 and 9999")
	}
	return m, nil
}

// validProviderKeyID says whether id may name a key at its provider.
func validProviderKeyID(id string) bool {
	if len(id) > 200 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return false
		}
	}
	// "." and ".." are path segments, not ids: in the admin API's URL
	// they would name the project or the listing.
	return id != "" && id != "." && id != ".."
}

// memberDetail describes a member's settings for the audit trail.
func memberDetail(m MemberSettings) string {
	state := KeyActive
	if m.Disabled {
		state = KeyDisabled
	}
	d := fmt.Sprintf("name=%q priority=%d state=%s models=%q", m.Name, m.Priority, state, m.Models)
	if !m.ExpiresAt.IsZero() {
		d += " expiresAt=" + m.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if m.ProviderKeyID != "" {
		d += fmt.Sprintf(" providerKeyId=%q", m.ProviderKeyID)
	}
	return d
}

// UpdateKeyRequest changes a key's settings in its pool; nil fields stay.
type UpdateKeyRequest struct {
	Actor    Actor
	Ref      KeyRef
	Name     *string
	Priority *int
	State    *string
	// Models: a pointer to an empty list lets the key serve every model.
	Models *[]string
	// ExpiresAt: a pointer to the zero time removes the expiry;
	// ProviderKeyID: a pointer to "" forgets the provider's id.
	ExpiresAt     *time.Time
	ProviderKeyID *string
}

// UpdateKey changes a key's name, priority, state or models (never the
// key), records it in the audit trail and announces it: every replica's
// next resolve sees it.
func (b *Broker) UpdateKey(ctx context.Context, req UpdateKeyRequest) (KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return KeyMeta{}, err
	}
	p, err := b.keyProvider(req.Ref)
	if err != nil {
		return KeyMeta{}, err
	}
	rec, err := b.store.GetKey(ctx, req.Ref)
	if errors.Is(err, ErrNotFound) {
		return KeyMeta{}, fmt.Errorf("update %s: %w: no such key", req.Ref, ErrNotFound)
	}
	if err != nil {
		return KeyMeta{}, fmt.Errorf("update %s: %w", req.Ref, fromStore(err))
	}
	cur := MemberSettings{Name: rec.Name, Priority: rec.Priority, Disabled: rec.Disabled, Models: rec.Models,
		ExpiresAt: rec.ExpiresAt, ProviderKeyID: rec.ProviderKeyID}
	next := cur
	if req.Name != nil {
		next.Name = *req.Name
	}
	if req.Priority != nil {
		next.Priority = *req.Priority
	}
	if req.State != nil {
		if next.Disabled, err = parseState(*req.State); err != nil {
			return KeyMeta{}, err
		}
		next.ResetHealth = !next.Disabled
	}
	if req.Models != nil {
		next.Models = *req.Models
	}
	if req.ExpiresAt != nil {
		next.ExpiresAt = *req.ExpiresAt
	}
	if req.ProviderKeyID != nil {
		next.ProviderKeyID = *req.ProviderKeyID
	}
	if next, err = checkMember(next); err != nil {
		return KeyMeta{}, err
	}
	if req.ProviderKeyID != nil {
		if err := checkProviderKeyID(p, next.ProviderKeyID); err != nil {
			return KeyMeta{}, err
		}
	}
	ev := AuditEvent{ScopeKind: req.Ref.ScopeKind, ScopeID: req.Ref.ScopeID, Provider: req.Ref.Provider, KeyID: req.Ref.KeyID,
		Action: ActionUpdate, Actor: req.Actor.Subject, RemoteAddr: req.Actor.RemoteAddr, RequestID: req.Actor.RequestID,
		ClientRequestID: req.Actor.ClientRequestID, Outcome: OutcomeSuccess,
		Detail: memberDetail(next) + " (was " + memberDetail(cur) + ")"}
	rec, err = b.store.UpdateMember(ctx, req.Ref, next, ev)
	if errors.Is(err, ErrNotFound) {
		return KeyMeta{}, fmt.Errorf("update %s: %w: no such key", req.Ref, ErrNotFound)
	}
	if err != nil {
		return KeyMeta{}, fmt.Errorf("update %s: %w", req.Ref, fromStore(err))
	}
	b.poolChangedHere(ctx, req.Ref.Pool())
	b.metrics.action(ActionUpdate, OutcomeSuccess)
	b.log.InfoContext(ctx, "key settings changed", "key", req.Ref.String(), "detail", ev.Detail, "actor", req.Actor.Subject)
	return b.withUsage(ctx, req.Ref.Owner(), []KeyMeta{metaOf(rec, b.now())})[0], nil
}

// RollbackRequest asks Rollback to make Version of key Ref current again.
type RollbackRequest struct {
	Actor   Actor
	Ref     KeyRef
	Version int
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
	if _, err := b.keyProvider(req.Ref); err != nil {
		return SetResult{}, err
	}
	if req.Version <= 0 {
		return SetResult{}, refuse(ErrInvalidRequest, "version must be a positive integer")
	}
	ref := req.Ref
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s: %w", ref, fromVault(err))
	}
	if req.Version == md.CurrentVersion {
		return SetResult{}, refuse(ErrInvalidRequest, "version %d is already current", req.Version)
	}
	old, _, err := b.readCredential(ctx, ref.Provider, ref.VaultPath(), req.Version)
	if err != nil {
		return SetResult{}, fmt.Errorf("rollback %s to version %d: %w", ref, req.Version, fromVault(err))
	}
	return b.write(ctx, changeRequest{Ref: ref, Actor: req.Actor, Op: OpRollback, Credential: old,
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
	p, err := b.checkProvider(req.Ref.Provider)
	if err != nil {
		return SetResult{}, change.abort(ctx, err, 0)
	}
	version, err := b.putWithCAS(ctx, req.Ref, p.Credential.ToVault(req.Credential), expectedVersion)
	if err != nil {
		return SetResult{}, change.abort(ctx, err, 0)
	}
	if err := change.completeWrite(ctx, version); err != nil {
		return SetResult{}, err
	}
	b.log.InfoContext(ctx, "key stored", "key", req.Ref.String(), "action", change.action,
		"version", version, "masked_key", change.masked, "actor", req.Actor.Subject)
	rec, err := b.store.GetKey(ctx, req.Ref)
	if err != nil {
		return SetResult{}, fmt.Errorf("%s %s: read back metadata: %w", req.Op, req.Ref, fromStore(err))
	}
	return SetResult{Meta: b.withUsage(ctx, req.Ref.Owner(), []KeyMeta{metaOf(rec, b.now())})[0], Created: prior == 0}, nil
}

// putWithCAS writes data (a credential's Vault fields) at path with
// check-and-set. With expected > 0 it
// is the caller's version (a mismatch is ErrPreconditionFailed); else the
// current version is read from Vault's metadata and one lost race is
// retried.
func (b *Broker) putWithCAS(ctx context.Context, ref KeyRef, data map[string]string, expected int) (int, error) {
	path := ref.VaultPath()
	if expected > 0 {
		v, err := b.writer.Put(ctx, path, data, expected)
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
			if err := b.refuseLegacy(ctx, ref); err != nil {
				return 0, err
			}
			cas = 0
		default:
			return 0, fromVault(merr)
		}
		var v int
		v, err = b.writer.Put(ctx, path, data, cas)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, vault.ErrCASMismatch) {
			return 0, fromVault(err)
		}
	}
	return 0, fromVault(err)
}

// refuseLegacy refuses the first write of a key that keybroker v1 still
// holds at its old path: written at the new path, it would start again at
// version 1 beside its history. `keybroker vault migrate-layout` moves it.
func (b *Broker) refuseLegacy(ctx context.Context, ref KeyRef) error {
	legacy := ref.LegacyVaultPath()
	if legacy == "" {
		return nil
	}
	md, err := b.writer.Metadata(ctx, legacy)
	if errors.Is(err, vault.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fromVault(err)
	}
	if cur, ok := md.Current(); ok && cur.Alive() {
		return fmt.Errorf("%w: %s is still stored where keybroker v1 kept it (%s): run `keybroker vault migrate-layout` first",
			ErrLegacyLayout, ref, legacy)
	}
	return nil
}

// DeleteKeyRequest asks DeleteKey to remove key Ref.
type DeleteKeyRequest struct {
	Actor Actor
	Ref   KeyRef
	// ExpectedVersion > 0 deletes only if that version is current.
	ExpectedVersion int
	// Destroy removes every version and the key's metadata from Vault for
	// good, instead of soft-deleting the current version (which leaves the
	// older versions readable by Vault's operators and restorable by them).
	// It also clears what a plain delete left behind.
	Destroy bool
}

// DeleteKey removes a key from its pool: its current KV version is
// soft-deleted (the history stays for Versions and Rollback) and its
// metadata row removed. The pool loses it at once on this replica, and on
// the others when the change is announced. With ExpectedVersion > 0, only
// if that version is current.
func (b *Broker) DeleteKey(ctx context.Context, req DeleteKeyRequest) error {
	if err := b.canManage(); err != nil {
		return err
	}
	if _, err := b.keyProvider(req.Ref); err != nil {
		return err
	}
	ref := req.Ref
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if errors.Is(err, vault.ErrNotFound) {
		return fmt.Errorf("delete %s: %w: no such key", ref, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, fromVault(err))
	}
	if cur, ok := md.Current(); !req.Destroy && (!ok || !cur.Alive()) {
		return fmt.Errorf("delete %s: %w: no such key", ref, ErrNotFound)
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
	b.log.InfoContext(ctx, "key deleted", "key", ref.String(), "version", version, "destroyed", req.Destroy, "actor", req.Actor.Subject)
	return nil
}

// PurgeScope destroys every key of a deleted workspace or organization in
// Vault, all versions and metadata, and removes its rows (and a
// workspace's settings). It returns how many keys Vault held. Running it
// again finishes an interrupted purge.
func (b *Broker) PurgeScope(ctx context.Context, actor Actor, scope Scope) (int, error) {
	if err := b.canManage(); err != nil {
		return 0, err
	}
	if err := scope.Check(); err != nil {
		return 0, err
	}
	if scope.Kind == ScopeHosted {
		return 0, refuse(ErrInvalidRequest, "the hosted scope cannot be purged: delete its keys one by one")
	}
	providers, err := b.writer.List(ctx, scope.ProvidersDir())
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", scope, fromVault(err))
	}
	destroyed := 0
	for _, name := range providers {
		provider, isDir := strings.CutSuffix(name, "/")
		if !ids.Valid(provider) {
			continue // a name keybroker did not write
		}
		if !isDir {
			// A v1 key at the old layout.
			if legacy := scope.Key(provider, DefaultKeyID).LegacyVaultPath(); legacy != "" {
				if err := b.writer.Destroy(ctx, legacy); err != nil {
					return destroyed, fmt.Errorf("purge %s: destroy %s: %w", scope, legacy, fromVault(err))
				}
				destroyed++
			}
			continue
		}
		pool := scope.Pool(provider)
		keys, err := b.writer.List(ctx, pool.KeysDir())
		if err != nil {
			return destroyed, fmt.Errorf("purge %s: %w", pool, fromVault(err))
		}
		for _, keyID := range keys {
			if !ids.Valid(keyID) {
				continue
			}
			ref := pool.Key(keyID)
			if err := b.writer.Destroy(ctx, ref.VaultPath()); err != nil {
				return destroyed, fmt.Errorf("purge %s: destroy %s: %w", scope, ref, fromVault(err))
			}
			destroyed++
			b.evict(ref)
		}
	}
	action := ActionPurge
	if scope.Kind == ScopeOrganization {
		action = ActionPurgeOrganization
	}
	audit := AuditEvent{
		ScopeKind: scope.Kind, ScopeID: scope.ID, Action: action, Actor: actor.Subject, RemoteAddr: actor.RemoteAddr, RequestID: actor.RequestID,
		ClientRequestID: actor.ClientRequestID, Outcome: OutcomeSuccess, Detail: fmt.Sprintf("%d keys destroyed", destroyed),
	}
	if _, err := b.store.PurgeScope(ctx, scope, audit); err != nil {
		return destroyed, fmt.Errorf("purge %s: keys destroyed in Vault, but metadata could not be removed (run the purge again): %w",
			scope, fromStore(err))
	}
	_ = b.Invalidate(ctx, Invalidation{ScopeKind: scope.Kind, ScopeID: scope.ID})
	b.metrics.action(action, OutcomeSuccess)
	b.log.InfoContext(ctx, "scope purged", "scope", scope.String(), "keys_destroyed", destroyed, "actor", actor.Subject)
	return destroyed, nil
}

// GetKey returns a key's metadata.
func (b *Broker) GetKey(ctx context.Context, ref KeyRef) (KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return KeyMeta{}, err
	}
	if _, err := b.keyProvider(ref); err != nil {
		return KeyMeta{}, err
	}
	rec, err := b.store.GetKey(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return KeyMeta{}, fmt.Errorf("%w: %s has no key %s for %s", ErrNotFound, ref.Owner(), ref.KeyID, ref.Provider)
	}
	if err != nil {
		return KeyMeta{}, fromStore(err)
	}
	return b.withUsage(ctx, ref.Owner(), []KeyMeta{metaOf(rec, b.now())})[0], nil
}

// ListKeys returns the metadata of every key of a scope, by provider, then
// as each pool orders them (priority, then age).
func (b *Broker) ListKeys(ctx context.Context, scope Scope) ([]KeyMeta, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if err := scope.Check(); err != nil {
		return nil, err
	}
	recs, err := b.store.ListKeys(ctx, scope)
	if err != nil {
		return nil, fromStore(err)
	}
	out := make([]KeyMeta, 0, len(recs))
	now := b.now()
	for _, r := range recs {
		out = append(out, metaOf(r, now))
	}
	return b.withUsage(ctx, scope, out), nil
}

// ListPool returns the metadata of a pool's keys, by priority, then age.
func (b *Broker) ListPool(ctx context.Context, pool PoolRef) ([]KeyMeta, error) {
	if _, err := b.checkPool(pool); err != nil {
		return nil, err
	}
	all, err := b.ListKeys(ctx, pool.Owner())
	if err != nil {
		return nil, err
	}
	out := make([]KeyMeta, 0, len(all))
	for _, m := range all {
		if m.Provider == pool.Provider {
			out = append(out, m)
		}
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
	// Origin is the change that wrote the version (zero for a version
	// written around keybroker).
	Origin VersionOrigin
}

// VersionOrigin is who wrote a key's version, and its masked value.
type VersionOrigin struct {
	Actor     string
	MaskedKey string
}

// Versions returns a key's version history, newest first, each with the
// change that wrote it.
func (b *Broker) Versions(ctx context.Context, ref KeyRef) ([]VersionInfo, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if _, err := b.keyProvider(ref); err != nil {
		return nil, err
	}
	md, err := b.writer.Metadata(ctx, ref.VaultPath())
	if err != nil {
		return nil, fmt.Errorf("versions of %s: %w", ref, fromVault(err))
	}
	origins, err := b.store.VersionOrigins(ctx, ref)
	if err != nil {
		return nil, fromStore(err)
	}
	out := make([]VersionInfo, 0, len(md.Versions))
	for i := len(md.Versions) - 1; i >= 0; i-- {
		v := md.Versions[i]
		out = append(out, VersionInfo{
			Version: v.Version, CreatedAt: v.CreatedTime, DeletedAt: v.DeletionTime,
			Destroyed: v.Destroyed, Current: v.Version == md.CurrentVersion, Origin: origins[v.Version],
		})
	}
	return out, nil
}

// Audit returns up to limit audit events of a scope's trail, newest
// first, with ids below before (0: from the newest).
func (b *Broker) Audit(ctx context.Context, scope Scope, before int64, limit int) ([]AuditEvent, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if err := scope.Check(); err != nil {
		return nil, err
	}
	evs, err := b.store.ListAudit(ctx, scope, before, limit)
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

// refuseEchoedMask refuses a credential whose secret field is a masked
// preview — its own, or the current key's: a page or script echoing the
// mask back would otherwise replace a working key with its preview.
func (b *Broker) refuseEchoedMask(ctx context.Context, p *providers.Provider, ref KeyRef, c providers.Credential) error {
	const why = "the value is a masked preview (%s), not a key: send the full key"
	if p.Credential.EchoesMask(c) {
		return refuse(ErrInvalidKey, why, "its own")
	}
	var masks []string
	for _, f := range p.Credential.Fields {
		if v := c.Field(f.Name); f.Secret && strings.Contains(v, "...") {
			masks = append(masks, v)
		}
	}
	if len(masks) == 0 {
		return nil
	}
	rec, err := b.store.GetKey(ctx, ref)
	if err != nil {
		return nil
	}
	current := slices.Collect(maps.Values(rec.Masked))
	if rec.MaskedKey != "" {
		current = append(current, rec.MaskedKey)
	}
	for _, m := range masks {
		if slices.Contains(current, m) {
			return refuse(ErrInvalidKey, why, "the current key's")
		}
	}
	return nil
}

// QueryAudit returns a page of a scope's trail, or of the global one, with
// the query's filters.
func (b *Broker) QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	if q.Scope != nil {
		if err := q.Scope.Check(); err != nil {
			return nil, err
		}
	}
	for what, v := range map[string]string{"action": q.Action, "outcome": q.Outcome, "actor": q.Actor} {
		if len(v) > 128 || strings.ContainsFunc(v, unicode.IsControl) {
			return nil, refuse(ErrInvalidRequest, "%s must be at most 128 characters, without control characters", what)
		}
	}
	evs, err := b.store.QueryAudit(ctx, q)
	if err != nil {
		return nil, fromStore(err)
	}
	return evs, nil
}
