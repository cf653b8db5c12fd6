package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keybroker/keybroker/ids"
)

// Settings are a workspace's choices about where its calls' keys may come
// from when it has none of its own.
type Settings struct {
	// Organization is the organization the workspace belongs to ("":
	// none). Only an operator sets it.
	Organization string
	// Inherit: the workspace uses its organization's keys when it has none.
	Inherit bool
	// HostedFallback: the workspace falls back to the platform's hosted
	// keys (billed) when no key of its own, or inherited, can serve. False
	// fails closed: resolve answers no_key instead of billing.
	HostedFallback bool
	UpdatedAt      time.Time
	UpdatedBy      string
	// LinkKeyID and LinkSignature sign Organization (LinkSigner): stored,
	// never shown.
	LinkKeyID     string
	LinkSignature []byte
	// LinkGeneration counts the row's changes (it only grows): a link is
	// signed with it, so an old link's signature cannot be replayed after
	// an unlink.
	LinkGeneration int64
}

// LinkSigner signs and verifies organization links: a link gives the
// workspace's resolver tokens the organization's keys, so it is a grant,
// and the key that signs it is one the database does not hold.
type LinkSigner interface {
	SignLink(workspace, organization string, generation int64) (keyID string, signature []byte, err error)
	VerifyLink(workspace, organization string, generation int64, keyID string, signature []byte) bool
}

// DefaultSettings are a workspace's settings until someone changes them.
func DefaultSettings() Settings { return Settings{Inherit: true, HostedFallback: true} }

// SettingsStore is what the broker needs to know every workspace's
// settings: all of them at start (and after the invalidation listener
// reconnects), one when a change is announced. Resolve never queries it.
type SettingsStore interface {
	AllWorkspaceSettings(ctx context.Context) (map[string]Settings, error)
	WorkspaceSettings(ctx context.Context, workspace string) (Settings, error)
	// UpdateWorkspaceSettings locks a workspace's settings, lets change
	// decide the next ones from the current, and stores, audits and
	// announces them, in one transaction.
	UpdateWorkspaceSettings(ctx context.Context, workspace string, change func(cur Settings) (Settings, AuditEvent, error)) (Settings, error)
	LinkedWorkspaces(ctx context.Context, org string) ([]LinkedWorkspace, error)
	// ListScopes lists the workspaces and organizations that have keys or
	// settings (kind "": both), whose id contains query, after the cursor.
	ListScopes(ctx context.Context, kind, query string, after Scope, limit int) ([]Scope, error)
}

// ListScopes returns up to limit workspaces and organizations keybroker
// knows of (kind ScopeWorkspace, ScopeOrganization, or "" for both) whose
// id contains query, sorted by kind then id, after the cursor scope.
func (b *Broker) ListScopes(ctx context.Context, kind ScopeKind, query string, after Scope, limit int) ([]Scope, error) {
	if b.settingsStore == nil {
		return nil, fmt.Errorf("list scopes: %w: no settings store", ErrNotConfigured)
	}
	if kind != "" && kind != ScopeWorkspace && kind != ScopeOrganization {
		return nil, refuse(ErrInvalidRequest, "kind must be workspace or organization")
	}
	if len(query) > 63 {
		return nil, refuse(ErrInvalidRequest, "the search must be at most 63 characters")
	}
	out, err := b.settingsStore.ListScopes(ctx, string(kind), query, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list scopes: %w", fromStore(err))
	}
	return out, nil
}

// LinkedWorkspace is a workspace linked to an organization, with its
// settings.
type LinkedWorkspace struct {
	Workspace string
	Settings  Settings
}

// LinkedWorkspaces lists the workspaces linked to organization org: who
// inherits its keys.
func (b *Broker) LinkedWorkspaces(ctx context.Context, org string) ([]LinkedWorkspace, error) {
	if err := OrganizationScope(org).Check(); err != nil {
		return nil, err
	}
	if b.settingsStore == nil {
		return nil, fmt.Errorf("linked workspaces: %w: no settings store", ErrNotConfigured)
	}
	stored, err := b.settingsStore.LinkedWorkspaces(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("workspaces of organization %s: %w", org, fromStore(err))
	}
	// Only the links resolves follow (signed by keybroker).
	out := stored[:0]
	for _, lw := range stored {
		if b.trusted(lw.Workspace, lw.Settings).Organization == org {
			out = append(out, lw)
		}
	}
	return out, nil
}

// settingsMirror is this replica's copy of the settings that differ from
// the defaults, read by resolve without touching PostgreSQL.
type settingsMirror struct {
	mu     sync.RWMutex
	loaded bool
	byWS   map[string]Settings
}

// get returns ws's settings, and false when the mirror is not loaded yet.
func (m *settingsMirror) get(ws string) (Settings, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.loaded {
		return Settings{}, false
	}
	if s, ok := m.byWS[ws]; ok {
		return s, true
	}
	return DefaultSettings(), true
}

func (m *settingsMirror) set(ws string, s Settings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byWS == nil {
		m.byWS = make(map[string]Settings)
	}
	if s.Organization == "" && s.Inherit && s.HostedFallback {
		delete(m.byWS, ws)
		return
	}
	m.byWS[ws] = s
}

// trusted returns s as resolves may follow it: an organization link
// without a valid signature is dropped (the workspace inherits nothing)
// and reported once per workspace and organization.
func (b *Broker) trusted(ws string, s Settings) Settings {
	if s.Organization == "" || b.links == nil || b.links.VerifyLink(ws, s.Organization, s.LinkGeneration, s.LinkKeyID, s.LinkSignature) {
		return s
	}
	key := ws + "\x00" + s.Organization
	if _, seen := b.unsignedLinks.LoadOrStore(key, true); !seen {
		b.log.Warn("not following an organization link keybroker did not sign (written outside keybroker, or signed with a retired key): the workspace inherits nothing until an operator links it again",
			"workspace", ws, "organization", s.Organization)
	}
	s.Organization = ""
	return s
}

// ErrSettingsNotLoaded: this replica has not read the workspaces'
// settings yet (PostgreSQL unreachable since start); a resolve that would
// fall back to a hosted key cannot know whether that is allowed (503).
var ErrSettingsNotLoaded = errors.Join(ErrUnavailable, errors.New("workspace settings not loaded yet"))

// LoadSettings reads every workspace's settings into this replica's
// mirror: at start, and after the invalidation listener reconnected (a
// change may have been missed).
func (b *Broker) LoadSettings(ctx context.Context) error {
	if b.settingsStore == nil {
		return nil
	}
	all, err := b.settingsStore.AllWorkspaceSettings(ctx)
	if err != nil {
		return fmt.Errorf("load workspace settings: %w", fromStore(err))
	}
	b.settings.mu.Lock()
	b.settings.byWS = make(map[string]Settings, len(all))
	for ws, s := range all {
		s = b.trusted(ws, s)
		if !(s.Organization == "" && s.Inherit && s.HostedFallback) {
			b.settings.byWS[ws] = s
		}
	}
	b.settings.loaded = true
	b.settings.mu.Unlock()
	return nil
}

// SettingsLoaded reports whether the mirror holds every workspace's settings.
func (b *Broker) SettingsLoaded() bool {
	b.settings.mu.RLock()
	defer b.settings.mu.RUnlock()
	return b.settings.loaded
}

// MirroredSettings returns a workspace's settings as this replica's
// resolves read them (from memory, no query), and false until the
// settings are loaded.
func (b *Broker) MirroredSettings(workspace string) (Settings, bool) {
	return b.settings.get(workspace)
}

// SettingsChanged re-reads one workspace's settings (a change announced
// by a replica, this one included).
func (b *Broker) SettingsChanged(ctx context.Context, workspace string) error {
	if b.settingsStore == nil {
		return nil
	}
	s, err := b.settingsStore.WorkspaceSettings(ctx, workspace)
	if err != nil {
		return fmt.Errorf("reload the settings of %s: %w", workspace, fromStore(err))
	}
	b.settings.set(workspace, b.trusted(workspace, s))
	return nil
}

// GetSettings returns a workspace's settings, from PostgreSQL, as resolves
// follow them (an organization link keybroker did not sign is not one).
func (b *Broker) GetSettings(ctx context.Context, workspace string) (Settings, error) {
	if err := checkWorkspace(workspace); err != nil {
		return Settings{}, err
	}
	if b.settingsStore == nil {
		return Settings{}, fmt.Errorf("settings: %w: no settings store", ErrNotConfigured)
	}
	s, err := b.settingsStore.WorkspaceSettings(ctx, workspace)
	if err != nil {
		return Settings{}, fmt.Errorf("settings of %s: %w", workspace, fromStore(err))
	}
	return b.trusted(workspace, s), nil
}

// SettingsRequest changes a workspace's settings; nil fields stay as they
// are.
type SettingsRequest struct {
	Actor     Actor
	Workspace string
	// Organization: nil leaves it; a pointer to "" unlinks the workspace.
	Organization   *string
	Inherit        *bool
	HostedFallback *bool
	// MayLink says whether the caller may change the organization link
	// (package auth decides: operators). Naming the current organization
	// again is no change and needs no permission.
	MayLink bool
}

// Audit actions of settings.
const ActionSettings = "workspace.settings"

// PutSettings applies req, records it in the audit trail and announces it
// to every replica. Who may change what (the organization link is an
// operator's) is the caller's decision (package auth).
func (b *Broker) PutSettings(ctx context.Context, req SettingsRequest) (Settings, error) {
	if err := checkWorkspace(req.Workspace); err != nil {
		return Settings{}, err
	}
	if b.settingsStore == nil {
		return Settings{}, fmt.Errorf("settings: %w: no settings store", ErrNotConfigured)
	}
	if req.Organization != nil && *req.Organization != "" && !ids.Valid(*req.Organization) {
		return Settings{}, errors.Join(ErrInvalidID, errors.New(ids.Message("organization")))
	}
	// Decided on the current settings under the row's lock: a concurrent
	// write (an operator's unlink) is never undone by one that read the
	// settings before it.
	_, err := b.settingsStore.UpdateWorkspaceSettings(ctx, req.Workspace, func(stored Settings) (Settings, AuditEvent, error) {
		cur := b.trusted(req.Workspace, stored)
		next := cur
		if req.Organization != nil {
			if *req.Organization != cur.Organization && !req.MayLink {
				return Settings{}, AuditEvent{}, ErrLinkNotAllowed
			}
			next.Organization = *req.Organization
		}
		if req.Inherit != nil {
			next.Inherit = *req.Inherit
		}
		if req.HostedFallback != nil {
			next.HostedFallback = *req.HostedFallback
		}
		next.UpdatedBy = req.Actor.Subject
		next.LinkKeyID, next.LinkSignature = "", nil
		next.LinkGeneration = stored.LinkGeneration + 1
		if next.Organization != "" && b.links != nil {
			var err error
			if next.LinkKeyID, next.LinkSignature, err = b.links.SignLink(req.Workspace, next.Organization, next.LinkGeneration); err != nil {
				return Settings{}, AuditEvent{}, fmt.Errorf("sign the organization link: %w", err)
			}
		}
		ev := AuditEvent{ScopeKind: ScopeWorkspace, ScopeID: req.Workspace, Action: ActionSettings, Actor: req.Actor.Subject, RemoteAddr: req.Actor.RemoteAddr,
			RequestID: req.Actor.RequestID, ClientRequestID: req.Actor.ClientRequestID, Outcome: OutcomeSuccess,
			Detail: fmt.Sprintf("organization=%q inherit=%v hostedFallback=%v (was organization=%q inherit=%v hostedFallback=%v)",
				next.Organization, next.Inherit, next.HostedFallback, cur.Organization, cur.Inherit, cur.HostedFallback)}
		return next, ev, nil
	})
	if errors.Is(err, ErrLinkNotAllowed) {
		return Settings{}, fmt.Errorf("settings of %s: %w", req.Workspace, ErrLinkNotAllowed)
	}
	if err != nil {
		return Settings{}, fmt.Errorf("settings of %s: %w", req.Workspace, fromStore(err))
	}
	// The mirror takes what PostgreSQL holds now, not next: a later write
	// (announced and applied already) must not be overwritten by this one.
	if err := b.SettingsChanged(ctx, req.Workspace); err != nil {
		b.log.WarnContext(ctx, "could not re-read settings just written; the announcement applies them", "workspace", req.Workspace, "error", err)
	}
	return b.GetSettings(ctx, req.Workspace)
}
