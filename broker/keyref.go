package broker

import (
	"errors"

	"github.com/keybroker/keybroker/ids"
)

// ScopeKind says whose pool a key belongs to.
type ScopeKind string

const (
	// ScopeWorkspace: a workspace's own keys (BYOK).
	ScopeWorkspace ScopeKind = "workspace"
	// ScopeOrganization: an organization's keys, which its workspaces
	// inherit (BYOK: the customer's own).
	ScopeOrganization ScopeKind = "organization"
	// ScopeHosted: the platform's own keys, billed to the workspace.
	ScopeHosted ScopeKind = "hosted"
)

// DefaultKeyID names the key the v1 routes manage: a v1 pool held only it.
const DefaultKeyID = "default"

// Scope names one owner of pools: a workspace, an organization, or the
// platform (hosted, whose ID is "").
type Scope struct {
	Kind ScopeKind
	ID   string
}

// WorkspaceScope is workspace ws.
func WorkspaceScope(ws string) Scope { return Scope{Kind: ScopeWorkspace, ID: ws} }

// OrganizationScope is organization org.
func OrganizationScope(org string) Scope { return Scope{Kind: ScopeOrganization, ID: org} }

// HostedScope is the platform's hosted keys.
func HostedScope() Scope { return Scope{Kind: ScopeHosted} }

// Key names key keyID of the scope's pool for provider.
func (s Scope) Key(provider, keyID string) KeyRef {
	return KeyRef{ScopeKind: s.Kind, ScopeID: s.ID, Provider: provider, KeyID: keyID}
}

// Pool names the scope's pool for provider.
func (s Scope) Pool(provider string) PoolRef {
	return PoolRef{ScopeKind: s.Kind, ScopeID: s.ID, Provider: provider}
}

// BYOK says whether the scope's keys are the customer's own (not billed).
func (s Scope) BYOK() bool { return s.Kind != ScopeHosted }

// String names the scope in errors and logs: "workspace ws1",
// "organization acme", "hosted".
func (s Scope) String() string {
	if s.Kind == ScopeHosted {
		return "hosted"
	}
	return string(s.Kind) + " " + s.ID
}

// Check validates the scope: a known kind, and an id that follows the id
// rule (none for hosted).
func (s Scope) Check() error {
	switch s.Kind {
	case ScopeWorkspace, ScopeOrganization:
		if !ids.Valid(s.ID) {
			return errors.Join(ErrInvalidID, errors.New(ids.Message(string(s.Kind))))
		}
		return nil
	case ScopeHosted:
		if s.ID != "" {
			return errors.Join(ErrInvalidID, errors.New("the hosted scope has no id"))
		}
		return nil
	}
	return errors.Join(ErrInvalidID, errors.New("unknown scope "+string(s.Kind)+": use workspace, organization or hosted"))
}

// vaultDir is the scope's folder in the mount.
func (s Scope) vaultDir() string {
	switch s.Kind {
	case ScopeHosted:
		return "hosted/"
	case ScopeOrganization:
		return "organizations/" + s.ID + "/"
	}
	return "workspaces/" + s.ID + "/"
}

// ProvidersDir is the folder of the scope's pools in the mount: one
// sub-folder per provider (for listing).
func (s Scope) ProvidersDir() string { return s.vaultDir() + "providers/" }

// PoolRef names one pool: a scope's keys for one provider.
type PoolRef struct {
	ScopeKind ScopeKind
	ScopeID   string
	Provider  string
}

// Owner is the pool's scope.
func (p PoolRef) Owner() Scope { return Scope{Kind: p.ScopeKind, ID: p.ScopeID} }

// Key names key keyID of the pool.
func (p PoolRef) Key(keyID string) KeyRef {
	return KeyRef{ScopeKind: p.ScopeKind, ScopeID: p.ScopeID, Provider: p.Provider, KeyID: keyID}
}

// KeysDir is the pool's folder in the mount: one secret per key.
func (p PoolRef) KeysDir() string { return p.Owner().ProvidersDir() + p.Provider + "/keys/" }

func (p PoolRef) String() string { return p.Owner().String() + "/" + p.Provider }

// KeyRef names one key: its scope, provider and key id. It is the one
// place the layout of keys in Vault is spelled (VaultPath, and the folders
// above) and the one source of cache keys, so that the two never disagree.
type KeyRef struct {
	ScopeKind ScopeKind
	// ScopeID is the workspace or organization id; empty for hosted.
	ScopeID  string
	Provider string
	KeyID    string
}

// WorkspaceKey is key keyID of a workspace's pool for provider.
func WorkspaceKey(workspace, provider, keyID string) KeyRef {
	return KeyRef{ScopeKind: ScopeWorkspace, ScopeID: workspace, Provider: provider, KeyID: keyID}
}

// OrganizationKey is key keyID of an organization's pool for provider.
func OrganizationKey(org, provider, keyID string) KeyRef {
	return KeyRef{ScopeKind: ScopeOrganization, ScopeID: org, Provider: provider, KeyID: keyID}
}

// HostedKey is key keyID of the platform's hosted pool for provider.
func HostedKey(provider, keyID string) KeyRef {
	return KeyRef{ScopeKind: ScopeHosted, Provider: provider, KeyID: keyID}
}

// Owner is the key's scope.
func (r KeyRef) Owner() Scope { return Scope{Kind: r.ScopeKind, ID: r.ScopeID} }

// Pool is the key's pool.
func (r KeyRef) Pool() PoolRef {
	return PoolRef{ScopeKind: r.ScopeKind, ScopeID: r.ScopeID, Provider: r.Provider}
}

// CacheKey names a cache entry: the Vault path, which is unique per key.
type CacheKey string

// CacheKey is the ref's cache entry. Resolve computes it once per pool
// member (when the pool is loaded), never per request.
func (r KeyRef) CacheKey() CacheKey { return CacheKey(r.VaultPath()) }

// VaultPath is the secret path of the key inside the KV v2 mount; its
// field ValueField holds the key:
// <scope>/providers/<provider>/keys/<keyId>, where <scope> is
// workspaces/<ws>, organizations/<org> or hosted. The policies in package
// policies match it.
func (r KeyRef) VaultPath() string {
	return r.Owner().vaultDir() + "providers/" + r.Provider + "/keys/" + r.KeyID
}

// LegacyVaultPath is where keybroker v1 kept the one key of a workspace or
// hosted pool (<scope>/providers/<provider>); "" for keys v1 could not
// have (organizations, and key ids other than DefaultKeyID). `keybroker
// vault migrate-layout` moves such secrets to VaultPath; until it has,
// resolve reads them there.
func (r KeyRef) LegacyVaultPath() string {
	if r.KeyID != DefaultKeyID || r.ScopeKind == ScopeOrganization {
		return ""
	}
	return r.Owner().vaultDir() + "providers/" + r.Provider
}

// String names the key in errors and logs: "workspace ws1/openai/default",
// "hosted/openai/main".
func (r KeyRef) String() string { return r.Pool().String() + "/" + r.KeyID }
