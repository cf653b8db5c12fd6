package broker

// ScopeKind says whose pool a key belongs to.
type ScopeKind string

const (
	// ScopeWorkspace: a workspace's own keys (BYOK).
	ScopeWorkspace ScopeKind = "workspace"
	// ScopeHosted: the platform's own keys, billed to the workspace.
	ScopeHosted ScopeKind = "hosted"
)

// DefaultKeyID names the one key a v1 pool holds.
const DefaultKeyID = "default"

// KeyRef names one key: its scope, provider and key id. It is the one
// place the layout of keys in Vault is spelled (VaultPath, and the folders
// below) and the one source of cache keys, so that the two never disagree.
type KeyRef struct {
	Scope ScopeKind
	// ScopeID is the workspace id; empty for the hosted scope.
	ScopeID  string
	Provider string
	// KeyID is DefaultKeyID in v1.
	KeyID string
}

// WorkspaceKey is the workspace's key for provider.
func WorkspaceKey(workspace, provider string) KeyRef {
	return KeyRef{Scope: ScopeWorkspace, ScopeID: workspace, Provider: provider, KeyID: DefaultKeyID}
}

// HostedKey is the platform's hosted key for provider.
func HostedKey(provider string) KeyRef {
	return KeyRef{Scope: ScopeHosted, Provider: provider, KeyID: DefaultKeyID}
}

// CacheKey names a cache entry. Ids cannot contain '/', and a hosted key's
// name starts with one, so no two refs share a cache key.
type CacheKey string

// CacheKey is the ref's cache entry.
func (r KeyRef) CacheKey() CacheKey {
	if r.Scope == ScopeHosted {
		return CacheKey("/hosted/" + r.Provider + "/" + r.KeyID)
	}
	return CacheKey(r.ScopeID + "/" + r.Provider + "/" + r.KeyID)
}

// VaultPath is the secret path of the key inside the KV v2 mount; its field
// ValueField holds the key. In v1 a pool holds the one key DefaultKeyID, at
// the pool's own path: workspaces/<ws>/providers/<provider> and
// hosted/providers/<provider>. The policies in package policies match it.
func (r KeyRef) VaultPath() string {
	if r.Scope == ScopeHosted {
		return hostedDir + r.Provider
	}
	return workspacesDir + r.ScopeID + "/providers/" + r.Provider // one allocation
}

// String names the key in errors and logs: "ws1/openai", "hosted/openai".
func (r KeyRef) String() string {
	if r.Scope == ScopeHosted {
		return "hosted/" + r.Provider
	}
	return r.ScopeID + "/" + r.Provider
}

// The folders of the layout, for listing.
const (
	workspacesDir = "workspaces/"
	hostedDir     = "hosted/providers/"
)

// WorkspaceKeysDir is the folder of a workspace's keys in the mount, one
// name per provider (for listing).
func WorkspaceKeysDir(workspace string) string {
	return workspacesDir + workspace + "/providers/"
}
