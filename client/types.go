package client

import (
	"fmt"
	"log/slog"
	"time"
)

// The JSON shapes of keybroker's HTTP API (v1), shared by the server
// (package handlers) and this client. None of them carries a key except
// ResolveResponse, which only resolver tokens receive.

// Provider is a supported provider.
type Provider struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	FormatHint  string `json:"formatHint"`
	// Kind is the provider's credential kind ("api_key"); Fields its
	// fields, from which a form is built.
	Kind   string            `json:"kind"`
	Fields []CredentialField `json:"fields"`
	// Choices, for a kind with several ways of signing in (Azure's API
	// key or Entra client credentials), says them: a credential gives
	// the fields of exactly one (CredentialField.Choice).
	Choices *CredentialChoices `json:"choices,omitempty"`
	// AdminOf, on an admin provider, is the provider whose keys it
	// manages.
	AdminOf string `json:"adminOf,omitempty"`
	// Rotation and Revocation say what keybroker can do with the
	// provider's keys through its admin API (docs/lifecycle.md): Rotation
	// "admin_api" (created, verified, swapped in, the old deleted) or
	// absent (expiry warnings only); Revocation "delete",
	// "deactivate" or absent.
	Rotation   string `json:"rotation,omitempty"`
	Revocation string `json:"revocation,omitempty"`
}

// CredentialChoices are a credential kind's ways of signing in.
type CredentialChoices struct {
	// Label asks the question ("How keybroker signs in to AWS").
	Label   string             `json:"label"`
	Options []CredentialChoice `json:"options"`
}

// CredentialChoice is one way of signing in.
type CredentialChoice struct {
	// ID is what CredentialField.Choice names; Label says it in words.
	ID    string `json:"id"`
	Label string `json:"label"`
	// Required are the fields this way needs.
	Required []string `json:"required"`
}

// CredentialField is one field of a provider's credential kind.
type CredentialField struct {
	// Name is the field's name in "credential" ("apiKey").
	Name string `json:"name"`
	// Secret fields are never shown again after a write (only a masked
	// preview); Required ones must be given.
	Secret   bool `json:"secret"`
	Required bool `json:"required"`
	// Hint says what a value looks like.
	Hint string `json:"hint"`
	// Type is "map" for a field written as an object of strings; absent
	// for a string.
	Type string `json:"type,omitempty"`
	// Label is the field's name in words, for a form.
	Label string `json:"label"`
	// Choice, when set, is the way of signing in (Provider.Choices) the
	// field belongs to.
	Choice string `json:"choice,omitempty"`
	// File says the value is a document picked from disk (a
	// service-account key file).
	File bool `json:"file,omitempty"`
	// MapLabels, for a map field, are the words of its names and its
	// values ("Model", "Deployment").
	MapLabels []string `json:"mapLabels,omitempty"`
}

// ProviderList answers GET /v1/providers.
type ProviderList struct {
	Providers []Provider `json:"providers"`
	// AdminProviders are the admin APIs whose credentials a scope may
	// hold to rotate and revoke keys at a provider (docs/lifecycle.md):
	// written like keys (their pools), never resolved nor proxied.
	// AdminOf names the provider whose keys each manages.
	AdminProviders []Provider `json:"adminProviders,omitempty"`
}

// WhoAmI answers GET /v1/whoami: the caller's token id, role and
// workspaces (admin and reader tokens).
type WhoAmI struct {
	TokenID       string   `json:"tokenId"`
	Role          string   `json:"role"`
	Workspaces    []string `json:"workspaces"`
	Organizations []string `json:"organizations"`
	// Description is the token's description, when it has one.
	Description string `json:"description,omitempty"`
	// Person is who the caller is when it is a person (a platform's user
	// acting through a signed assertion); absent for a token. Role is then
	// the broadest role the person holds, and ScopedRoles says which role
	// in which scope.
	Person      *WhoAmIPerson `json:"person,omitempty"`
	ScopedRoles *ScopedRoles  `json:"scopedRoles,omitempty"`
}

// WhoAmIPerson names a person: their identity provider's issuer and
// subject, their name and email when known, and the platform acting for
// them.
type WhoAmIPerson struct {
	Issuer   string `json:"issuer"`
	Subject  string `json:"subject"`
	Name     string `json:"name,omitempty"`
	Email    string `json:"email,omitempty"`
	Platform string `json:"platform,omitempty"`
	// Actor is how the audit trail names them.
	Actor string `json:"actor"`
}

// ScopedRoles are a person's roles, scope by scope.
type ScopedRoles struct {
	Operator bool `json:"operator"`
	// Workspaces and Organizations map ids to "admin" or "reader".
	Workspaces    map[string]string `json:"workspaces"`
	Organizations map[string]string `json:"organizations"`
	// From says where each role came from, when keybroker knows (a
	// person signed in: the role mapping's rule and what it matched):
	// "operator", "workspace:ID" or "organization:ID" → e.g.
	// "rules[1]: group kb-ws-ws1-admin".
	From map[string]string `json:"from,omitempty"`
}

// KeyMetadata describes a key of a pool, never the key.
type KeyMetadata struct {
	// Scope is "workspace", "organization" or "hosted"; ScopeID the
	// workspace or organization id ("" for hosted).
	Scope   string `json:"scope"`
	ScopeID string `json:"scopeId"`
	// Workspace is ScopeID for a workspace's key (as the v1 answers had
	// it); absent otherwise.
	Workspace string `json:"workspace,omitempty"`
	Provider  string `json:"provider"`
	KeyID     string `json:"keyId"`
	Name      string `json:"name"`
	// Priority: lower serves first; equal priorities take turns.
	Priority int `json:"priority"`
	// State is "active" or "disabled" (a disabled key never serves).
	State string `json:"state"`
	// Models, when not empty, are the only models the key serves.
	Models []string `json:"models"`
	// Health is "healthy", "cooling_down" (until CooldownUntil) or
	// "failing" (a provider refused the key); HealthReason says why.
	Health          string     `json:"health"`
	HealthReason    string     `json:"healthReason,omitempty"`
	HealthChangedAt *time.Time `json:"healthChangedAt,omitempty"`
	CooldownUntil   *time.Time `json:"cooldownUntil,omitempty"`
	// MaskedKey is the masked preview of the credential's first secret
	// field (the API key of an api_key credential).
	MaskedKey string `json:"maskedKey"`
	// Kind is the credential's kind ("api_key"); Fields its non-secret
	// fields (a map field as an object of strings); Masked the masked
	// preview of each secret field, by name.
	Kind        string            `json:"kind,omitempty"`
	Fields      map[string]any    `json:"fields,omitempty"`
	Masked      map[string]string `json:"masked,omitempty"`
	Version     int               `json:"version"`
	Fingerprint string            `json:"fingerprint"`
	CreatedAt   time.Time         `json:"createdAt"`
	CreatedBy   string            `json:"createdBy"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	UpdatedBy   string            `json:"updatedBy"`
	// UpdatedByName is the description of the token that made the last
	// change, when it has one (lists and reads only).
	UpdatedByName string `json:"updatedByName,omitempty"`
	// Resolves and LastUsedAt are the key's usage (counted by every
	// replica, written every few seconds); Idle: unused for 90 days.
	Resolves   int64     `json:"resolves"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	Idle       bool      `json:"idle"`
	// ExpiresAt is when the key stops working (absent: not known); past
	// it the key is not served. Expiry is "valid", "expiring" (within the
	// warning window, 14 days by default) or "expired"; absent without
	// ExpiresAt (docs/lifecycle.md).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Expiry    string     `json:"expiry,omitempty"`
	// ProviderKeyID names the key at its provider (an OpenAI service
	// account id, an Anthropic API key id), for rotation and revocation
	// there.
	ProviderKeyID string `json:"providerKeyId,omitempty"`
}

// KeyList answers GET /v1/workspaces/{ws}/keys.
type KeyList struct {
	Keys []KeyMetadata `json:"keys"`
}

// PutKeyRequest is the body of PUT /v1/workspaces/{ws}/keys/{provider}
// and PUT /v1/{scope}/providers/{p}/keys/{keyId}: the key (APIKey, for
// providers of kind api_key) or the credential's fields by name
// (Credential, {"apiKey": "..."} for api_key kinds), not both.
//
// A field of the kind's is a string, or an object of strings for a map
// field (Azure's deployments, Bedrock's modelMap).
type PutKeyRequest struct {
	APIKey     string         `json:"apiKey,omitempty"`
	Credential map[string]any `json:"credential,omitempty"`
}

// AddKeyRequest is the body of POST /v1/{scope}/providers/{p}/keys: a new
// key of the pool. KeyID is generated when absent; Priority defaults to
// 100, State to "active", Models to none (every model).
// APIKey or Credential carries the key, as in SetKeyRequest.
type AddKeyRequest struct {
	APIKey     string         `json:"apiKey,omitempty"`
	Credential map[string]any `json:"credential,omitempty"`
	KeyID      string         `json:"keyId,omitempty"`
	Name       string         `json:"name,omitempty"`
	Priority   *int           `json:"priority,omitempty"`
	State      string         `json:"state,omitempty"`
	Models     []string       `json:"models,omitempty"`
	// ExpiresAt: when the key stops working (RFC 3339); ProviderKeyID:
	// its id at the provider (docs/lifecycle.md).
	ExpiresAt     *time.Time `json:"expiresAt,omitempty"`
	ProviderKeyID string     `json:"providerKeyId,omitempty"`
}

// UpdateKeyRequest is the body of PATCH /v1/{scope}/providers/{p}/keys/{keyId}:
// absent fields stay; "models": [] lets the key serve every model.
type UpdateKeyRequest struct {
	Name     *string   `json:"name,omitempty"`
	Priority *int      `json:"priority,omitempty"`
	State    *string   `json:"state,omitempty"`
	Models   *[]string `json:"models,omitempty"`
	// ExpiresAt is an RFC 3339 time, or "" to remove the expiry;
	// ProviderKeyID the key's id at its provider, or "" to forget it.
	ExpiresAt     *string `json:"expiresAt,omitempty"`
	ProviderKeyID *string `json:"providerKeyId,omitempty"`
}

// WorkspaceList answers GET /v1/organizations/{org}/workspaces: the
// workspaces linked to the organization, and whether each inherits its
// keys.
type WorkspaceList struct {
	Workspaces []LinkedWorkspace `json:"workspaces"`
}

// LinkedWorkspace is a workspace linked to an organization.
type LinkedWorkspace struct {
	Workspace      string `json:"workspace"`
	Inherit        bool   `json:"inherit"`
	HostedFallback bool   `json:"hostedFallback"`
}

// KeyVersion is one KV version of a key (metadata only).
type KeyVersion struct {
	Version   int        `json:"version"`
	CreatedAt time.Time  `json:"createdAt"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	Destroyed bool       `json:"destroyed"`
	Current   bool       `json:"current"`
	// CreatedBy is the actor whose change wrote the version (from the
	// audit trail; absent for a version written around keybroker), and
	// CreatedByName its token's description.
	CreatedBy string `json:"createdBy,omitempty"`
	// MaskedKey is the version's masked value, from the same change.
	MaskedKey     string `json:"maskedKey,omitempty"`
	CreatedByName string `json:"createdByName,omitempty"`
}

// VersionList answers GET .../versions, newest first.
type VersionList struct {
	Versions []KeyVersion `json:"versions"`
}

// RollbackRequest is the body of POST .../rollback.
type RollbackRequest struct {
	Version int `json:"version"`
}

// PurgeResult answers DELETE /v1/workspaces/{ws} and DELETE
// /v1/organizations/{org}.
type PurgeResult struct {
	Workspace     string `json:"workspace,omitempty"`
	Organization  string `json:"organization,omitempty"`
	KeysDestroyed int    `json:"keysDestroyed"`
}

// AuditEvent is one entry of a workspace's audit trail.
type AuditEvent struct {
	ID         string    `json:"id"`
	OccurredAt time.Time `json:"occurredAt"`
	// Scope and ScopeID name the trail ("" for operator-wide events);
	// Workspace is ScopeID for a workspace's event.
	Scope     string `json:"scope,omitempty"`
	ScopeID   string `json:"scopeId,omitempty"`
	Workspace string `json:"workspace,omitempty"`
	Provider  string `json:"provider,omitempty"`
	KeyID     string `json:"keyId,omitempty"`
	Action    string `json:"action"`
	Actor     string `json:"actor"`
	// ActorName is the description of the actor's token, when it has one.
	ActorName  string `json:"actorName,omitempty"`
	RemoteAddr string `json:"remoteAddr,omitempty"`
	Outcome    string `json:"outcome"`
	Version    *int   `json:"version,omitempty"`
	MaskedKey  string `json:"maskedKey,omitempty"`
	RequestID  string `json:"requestId,omitempty"`
	// ClientRequestID is the X-Request-Id the caller sent, if any.
	ClientRequestID string `json:"clientRequestId,omitempty"`
	Detail          string `json:"detail,omitempty"`
	// Count is how many events the line stands for: aggregated denials
	// are one line per token, scope and action per interval.
	Count int `json:"count"`
}

// AuditPage answers GET /v1/workspaces/{ws}/audit. NextCursor, when set,
// is the cursor query parameter of the next (older) page.
type AuditPage struct {
	Events     []AuditEvent `json:"events"`
	NextCursor string       `json:"nextCursor,omitempty"`
}

// ResolveRequest is the body of POST /v1/resolve.
type ResolveRequest struct {
	Workspace string `json:"workspace"`
	Provider  string `json:"provider"`
	// Model is the model of the call: keys limited to some models serve
	// only those.
	Model string `json:"model,omitempty"`
}

// ResolveResponse answers POST /v1/resolve. IsBYOK is true when the key is
// the customer's own, the workspace's or its organization's (the platform
// does not bill the call).
//
// For an api_key credential the key is APIKey and Credential is absent.
// For the other kinds APIKey is empty and Credential holds the fields to
// call the provider with (a map field as an object of strings): of a
// short-lived credential minted from the key, which stops working at
// ExpiresAt, or, for kinds that mint nothing (or a provider whose
// long-lived credentials the operator exposes), of the key itself.
type ResolveResponse struct {
	APIKey string `json:"apiKey"`
	// Kind is the credential's kind ("api_key": APIKey is the key).
	Kind       string         `json:"kind,omitempty"`
	Credential map[string]any `json:"credential,omitempty"`
	// ExpiresAt is when a minted credential stops working (RFC 3339);
	// absent for a long-lived one. A client refreshes before it.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	Source    string    `json:"source"`
	IsBYOK    bool      `json:"isBYOK"`
	Version   int       `json:"version"`
	// Scope is where the key lives ("workspace", "organization",
	// "hosted"), KeyID which key of that scope's pool served.
	Scope string `json:"scope"`
	KeyID string `json:"keyId"`
	// Fingerprint identifies the key (an HMAC, never the key).
	Fingerprint string `json:"fingerprint,omitempty"`
	// ResolutionID names this answer in the platform's usage records.
	ResolutionID string `json:"resolutionId"`
	// FallbackReason says why an earlier scope did not serve
	// (no_workspace_key, workspace_keys_unavailable, no_organization_key,
	// organization_keys_unavailable); absent when the workspace's own key
	// did.
	FallbackReason string `json:"fallbackReason,omitempty"`
	// TTLSeconds is how long the server caches the key: a client that
	// caches it too keeps it no longer (and drops it sooner when the watch
	// stream says so).
	TTLSeconds int `json:"ttlSeconds,omitempty"`
	// KeyExpiresAt is the key's own expiresAt (docs/lifecycle.md), when
	// it has one: past it, keybroker no longer serves the key.
	KeyExpiresAt time.Time `json:"keyExpiresAt,omitzero"`
}

// Settings are a workspace's settings (GET and PUT
// /v1/workspaces/{ws}/settings).
type Settings struct {
	// Organization is the organization the workspace belongs to (null:
	// none); only an operator changes it.
	Organization *string `json:"organization"`
	// Inherit: use the organization's keys when the workspace has none.
	Inherit bool `json:"inherit"`
	// HostedFallback: fall back to the platform's hosted keys (billed);
	// false fails closed with 404 no_key (reason hosted_fallback_off).
	HostedFallback bool      `json:"hostedFallback"`
	UpdatedAt      time.Time `json:"updatedAt,omitzero"`
	UpdatedBy      string    `json:"updatedBy,omitempty"`
}

// EffectiveSource says where a workspace's calls for a provider get their
// key now (GET /v1/workspaces/{ws}/effective).
type EffectiveSource struct {
	Provider string `json:"provider"`
	// Scope is "workspace" (its own keys, not billed), "organization"
	// (its organization's, not billed), "hosted" (the platform's keys,
	// billed at hosted rates), or null: calls fail. ScopeID names the
	// workspace or organization.
	Scope      *string `json:"scope"`
	ScopeID    string  `json:"scopeId,omitempty"`
	UsableKeys int     `json:"usableKeys"`
	// Reason says why an earlier scope does not serve, or why none does
	// (the reasons of resolve).
	Reason string `json:"reason,omitempty"`
	// First are the keys that serve first: the active keys of the lowest
	// priority (several take turns).
	First []ServingKey `json:"first,omitempty"`
}

// ServingKey names a key that serves.
type ServingKey struct {
	KeyID string `json:"keyId"`
	Name  string `json:"name,omitempty"`
}

// EffectiveSources answers GET /v1/workspaces/{ws}/effective.
type EffectiveSources struct {
	Providers []EffectiveSource `json:"providers"`
}

// SettingsRequest changes settings: absent (or null) fields stay as they
// are; "organization": "" unlinks the workspace.
type SettingsRequest struct {
	Organization   *string `json:"organization,omitempty"`
	Inherit        *bool   `json:"inherit,omitempty"`
	HostedFallback *bool   `json:"hostedFallback,omitempty"`
}

// String never shows the key.
func (r ResolveResponse) String() string {
	return "ResolveResponse{Source:" + r.Source + " APIKey:<redacted>}"
}

// GoString never shows the key.
func (r ResolveResponse) GoString() string { return r.String() }

// Format makes every verb print String, so that no verb (%d, %x) reaches
// the key or the credential's fields.
func (r ResolveResponse) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(r.String())) }

// LogValue implements slog.LogValuer: where the key came from, never the
// key or a field's value (the typed views, Bedrock, AzureOpenAI and
// Vertex, log their non-secret fields).
func (r ResolveResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", r.Kind), slog.String("source", r.Source), slog.String("scope", r.Scope),
		slog.String("keyId", r.KeyID), slog.Int("version", r.Version), slog.String("resolutionId", r.ResolutionID))
}

// ErrorBody is the shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong, safely.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Reason details some codes: for no_key, hosted_fallback_off,
	// no_hosted_key, hosted_keys_unavailable or no_key_allows_model.
	Reason string `json:"reason,omitempty"`
}

// ReportRequest is the body of POST /v1/resolve/report: what a provider
// answered to a call made with a resolved key.
type ReportRequest struct {
	ResolutionID string `json:"resolutionId"`
	// Outcome is ok, unauthorized, forbidden, quota_exceeded,
	// rate_limited or server_error.
	Outcome string `json:"outcome"`
	// RetryAfterSeconds is the provider's Retry-After (0 to 3600), for
	// rate_limited and server_error.
	RetryAfterSeconds int `json:"retryAfterSeconds,omitempty"`
}

// ReportResult answers POST /v1/resolve/report.
type ReportResult struct {
	Scope    string `json:"scope"`
	ScopeID  string `json:"scopeId"`
	Provider string `json:"provider"`
	KeyID    string `json:"keyId"`
	// Health is the key's health now; Changed whether the report changed
	// it (repeating what is known changes nothing).
	Health  string `json:"health"`
	Changed bool   `json:"changed"`
}

// KeyCheckResult answers POST .../keys/{keyId}/test: what the provider said
// of the key, never the key.
type KeyCheckResult struct {
	// Result is accepted, refused, rate_limited or unreachable.
	Result string `json:"result"`
	// Status is the provider's HTTP status (absent when it did not answer).
	Status    int       `json:"status,omitempty"`
	Detail    string    `json:"detail"`
	Health    string    `json:"health"`
	CheckedAt time.Time `json:"checkedAt"`
}

// TokenInfo describes an API token (GET /v1/tokens): never the token or
// its hash.
type TokenInfo struct {
	ID            string     `json:"id"`
	Role          string     `json:"role"`
	Workspaces    []string   `json:"workspaces"`
	Organizations []string   `json:"organizations"`
	Description   string     `json:"description"`
	CreatedBy     string     `json:"createdBy"`
	CreatedAt     time.Time  `json:"createdAt"`
	ExpiresAt     *time.Time `json:"expiresAt,omitempty"`
	RevokedAt     *time.Time `json:"revokedAt,omitempty"`
	// State is active, expired or revoked.
	State string `json:"state"`
}

// TokenList answers GET /v1/tokens, newest first.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// CreateTokenRequest is the body of POST /v1/tokens (operators).
type CreateTokenRequest struct {
	Role          string   `json:"role"`
	Workspaces    []string `json:"workspaces,omitempty"`
	Organizations []string `json:"organizations,omitempty"`
	// TTLSeconds is the lifetime (0: 90 days, operators 30 days).
	TTLSeconds  int    `json:"ttlSeconds,omitempty"`
	NoExpiry    bool   `json:"noExpiry,omitempty"`
	Description string `json:"description,omitempty"`
}

// CreatedToken answers POST /v1/tokens: the token, shown this once.
type CreatedToken struct {
	Token string `json:"token"`
	TokenInfo
}

// String never shows the token.
func (c CreatedToken) String() string { return "CreatedToken{ID:" + c.ID + " Token:<redacted>}" }

// GoString never shows the token.
func (c CreatedToken) GoString() string { return c.String() }

// ScopeInfo names a workspace or an organization (GET /v1/scopes).
type ScopeInfo struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// ScopeList answers GET /v1/scopes: the scopes the caller may open, by
// kind then id; NextCursor, when set, is the cursor of the next page.
type ScopeList struct {
	Scopes     []ScopeInfo `json:"scopes"`
	NextCursor string      `json:"nextCursor,omitempty"`
}

// ProxyTokenRequest is the body of POST /v1/proxy-tokens: a
// per-execution token for the credential proxy, minted by a resolver
// token, for one workspace and some providers (and, optionally, only some
// models).
type ProxyTokenRequest struct {
	Workspace string   `json:"workspace"`
	Providers []string `json:"providers"`
	Models    []string `json:"models,omitempty"`
	// TTLSeconds is how long it lives: 1 to 3600. Default: 900.
	TTLSeconds int `json:"ttlSeconds,omitempty"`
}

// RevokeProxyTokenRequest is the body of POST /v1/proxy-tokens/revoke: the
// proxy token to end, presented by the resolver token that minted it.
type RevokeProxyTokenRequest struct {
	Token string `json:"token"`
}

// String never shows the token.
func (r RevokeProxyTokenRequest) String() string { return "RevokeProxyTokenRequest{Token:<redacted>}" }

// GoString never shows the token.
func (r RevokeProxyTokenRequest) GoString() string { return r.String() }

// ProxyToken answers POST /v1/proxy-tokens. Token is shown once; ID names
// it in logs and in the records of proxied calls.
type ProxyToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Workspace string    `json:"workspace"`
	Providers []string  `json:"providers"`
	Models    []string  `json:"models,omitempty"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// String never shows the token.
func (t ProxyToken) String() string { return "ProxyToken{ID:" + t.ID + " Token:<redacted>}" }

// GoString never shows the token.
func (t ProxyToken) GoString() string { return t.String() }

// ProxyCall is one call made through the credential proxy, as
// GET /v1/workspaces/{ws}/proxy-calls lists it: which key served it (scope,
// key id and version), what the provider answered, how long it took, how
// many bytes went back, and whether it was BYOK (the platform does not bill
// it) or retried with another key. Caller is the calling token's id (a
// proxy token's ptk_ id), RequestID keybroker's request id.
type ProxyCall struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Workspace  string    `json:"workspace"`
	Provider   string    `json:"provider"`
	Scope      string    `json:"scope,omitempty"`
	KeyID      string    `json:"keyId,omitempty"`
	KeyVersion int       `json:"keyVersion,omitempty"`
	Status     int       `json:"status"`
	DurationMs float64   `json:"durationMs"`
	BytesOut   int64     `json:"bytesOut"`
	BYOK       bool      `json:"byok"`
	Retried    bool      `json:"retried"`
	Caller     string    `json:"caller,omitempty"`
	RequestID  string    `json:"requestId,omitempty"`
}

// ProxyCallPage answers the proxied-call listings. NextCursor, when set,
// is the cursor query parameter of the next (older) page.
type ProxyCallPage struct {
	Calls      []ProxyCall `json:"calls"`
	NextCursor string      `json:"nextCursor,omitempty"`
}

// ProxyCallQuery filters the proxied-call listings: a page after Cursor
// (a previous page's NextCursor; "" for the newest), at most Limit (0: the
// server's default, 100), and when set only calls to Provider with At in
// [Since, Until).
type ProxyCallQuery struct {
	Cursor       string
	Limit        int
	Provider     string
	Since, Until time.Time
}

// KeyTestResult is the old name of KeyCheckResult.
//
// Deprecated: use KeyCheckResult.
type KeyTestResult = KeyCheckResult

// SetKeyRequest is the old name of PutKeyRequest.
//
// Deprecated: use PutKeyRequest.
type SetKeyRequest = PutKeyRequest

// SessionInfo describes a person's session (GET /v1/sessions), never its
// token.
type SessionInfo struct {
	ID string `json:"id"`
	// Via is "page" (the page's sign-in) or "cli" (keybroker login).
	Via           string     `json:"via"`
	CreatedAt     time.Time  `json:"createdAt"`
	LastSeenAt    time.Time  `json:"lastSeenAt"`
	IdleExpiresAt time.Time  `json:"idleExpiresAt"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	EndedAt       *time.Time `json:"endedAt,omitempty"`
	EndedReason   string     `json:"endedReason,omitempty"`
	// Roles are what the person's sign-in mapped: the operator role, and
	// workspaces and organizations with "admin" or "reader".
	Roles ScopedRoles `json:"roles"`
}

// SessionList answers GET /v1/sessions.
type SessionList struct {
	Sessions []SessionInfo `json:"sessions"`
}

// EndSessionsRequest is the body of POST /v1/sessions/end: the person
// whose open sessions end (offboarding, a stolen cookie).
type EndSessionsRequest struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// EndSessionsResponse names the sessions that ended.
type EndSessionsResponse struct {
	Ended []string `json:"ended"`
}

// RotateRequest is the optional body of POST
// /v1/{scope}/providers/{p}/keys/{keyId}/rotate.
type RotateRequest struct {
	// GraceSeconds is how long the old key lives at the provider after
	// the new one serves: 0 to 604800; absent: the server's default
	// (3600).
	GraceSeconds *int `json:"graceSeconds,omitempty"`
}

// Rotation is a rotation at the provider (docs/lifecycle.md): the step
// it is at (create, verify, store, disable_old, grace, delete_old,
// rollback, done) and its state (running, done, failed, rolled_back).
type Rotation struct {
	ID       string `json:"id"`
	Scope    string `json:"scope"`
	ScopeID  string `json:"scopeId"`
	Provider string `json:"provider"`
	KeyID    string `json:"keyId"`
	// NewKeyID is the key that replaces KeyID in the pool.
	NewKeyID string `json:"newKeyId"`
	// AdminKeyID names the admin credential used (in the pool of the
	// provider's admin provider).
	AdminKeyID string `json:"adminKeyId"`
	// Trigger is "manual" or "schedule".
	Trigger string `json:"trigger"`
	Step    string `json:"step"`
	State   string `json:"state"`
	// NewProviderKeyID and OldProviderKeyID are the keys' ids at the
	// provider (service accounts at OpenAI).
	NewProviderKeyID string `json:"newProviderKeyId,omitempty"`
	OldProviderKeyID string `json:"oldProviderKeyId,omitempty"`
	GraceSeconds     int64  `json:"graceSeconds"`
	// DeleteAfter is when the old key is deleted at the provider.
	DeleteAfter *time.Time `json:"deleteAfter,omitempty"`
	// Error says why it failed or rolled back, or what it could not do
	// at the provider.
	Error     string    `json:"error,omitempty"`
	StartedBy string    `json:"startedBy"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// RotationList answers GET /v1/{scope}/providers/{p}/keys/{keyId}/rotations.
type RotationList struct {
	Rotations []Rotation `json:"rotations"`
}

// Revocation answers DELETE /v1/{scope}/providers/{p}/keys/{keyId}?revokeAtProvider=true:
// the key left its pool; State says what the provider did: "done"
// (Action "deleted" or "deactivated"; AlreadyGone when it no longer had
// the key), "pending" (it failed: LastError; asked again after
// NextAttemptAt) or "failed" (it refused the admin credential; asked
// again, less often, until an admin fixes the credential).
type Revocation struct {
	ID            string    `json:"id"`
	Scope         string    `json:"scope"`
	ScopeID       string    `json:"scopeId"`
	Provider      string    `json:"provider"`
	KeyID         string    `json:"keyId"`
	ProviderKeyID string    `json:"providerKeyId"`
	AdminKeyID    string    `json:"adminKeyId"`
	State         string    `json:"state"`
	Action        string    `json:"action,omitempty"`
	AlreadyGone   bool      `json:"alreadyGone,omitempty"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"lastError,omitempty"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
}

// LifecycleSettings is a scope's key lifecycle settings (GET and PUT
// /v1/{scope}/lifecycle): RotateAfter, "<n>d" or "<n>h" (1 hour to 3650
// days), is the longest a key lives before keybroker rotates it where
// the provider's admin API can ("" or absent: no schedule).
type LifecycleSettings struct {
	RotateAfter string     `json:"rotateAfter"`
	UpdatedAt   *time.Time `json:"updatedAt,omitempty"`
	UpdatedBy   string     `json:"updatedBy,omitempty"`
}

// KeyUsage answers GET /v1/{scope}/providers/{p}/keys/{keyId}/usage: per
// version (newest first), the resolves and the proxied calls since Since
// (default: the last 30 days), by day (UTC, newest first) and by caller
// (the resolver token, or the proxy token's id): what a rotation or a
// revocation of the key will touch. Resolves are flushed from every
// replica's counters every few seconds.
type KeyUsage struct {
	Since    time.Time      `json:"since"`
	Versions []VersionUsage `json:"versions"`
}

// VersionUsage is one version's usage.
type VersionUsage struct {
	Version      int        `json:"version"`
	Resolves     int64      `json:"resolves"`
	ProxiedCalls int64      `json:"proxiedCalls"`
	Days         []DayUsage `json:"days"`
}

// DayUsage is one caller's use of a version on one day.
type DayUsage struct {
	Day          string `json:"day"`
	Caller       string `json:"caller"`
	Resolves     int64  `json:"resolves"`
	ProxiedCalls int64  `json:"proxiedCalls"`
}
