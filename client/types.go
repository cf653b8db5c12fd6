package client

import "time"

// The JSON shapes of keybroker's HTTP API (v1), shared by the server
// (package handlers) and this client. None of them carries a key except
// ResolveResponse, which only resolver tokens receive.

// Provider is a supported provider.
type Provider struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	FormatHint  string `json:"formatHint"`
}

// ProviderList answers GET /v1/providers.
type ProviderList struct {
	Providers []Provider `json:"providers"`
}

// WhoAmI answers GET /v1/whoami: the caller's token id, role and
// workspaces (admin and reader tokens).
type WhoAmI struct {
	TokenID    string   `json:"tokenId"`
	Role       string   `json:"role"`
	Workspaces []string `json:"workspaces"`
}

// KeyMetadata describes a workspace's key for a provider, never the key.
type KeyMetadata struct {
	Workspace   string    `json:"workspace"`
	Provider    string    `json:"provider"`
	MaskedKey   string    `json:"maskedKey"`
	Version     int       `json:"version"`
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy"`
	UpdatedAt   time.Time `json:"updatedAt"`
	UpdatedBy   string    `json:"updatedBy"`
	// Resolves and LastUsedAt are the key's usage (counted by every
	// replica, written every few seconds); Idle: unused for 90 days.
	Resolves   int64     `json:"resolves"`
	LastUsedAt time.Time `json:"lastUsedAt,omitzero"`
	Idle       bool      `json:"idle"`
}

// KeyList answers GET /v1/workspaces/{ws}/keys.
type KeyList struct {
	Keys []KeyMetadata `json:"keys"`
}

// SetKeyRequest is the body of PUT /v1/workspaces/{ws}/keys/{provider}.
type SetKeyRequest struct {
	APIKey string `json:"apiKey"`
}

// KeyVersion is one KV version of a key (metadata only).
type KeyVersion struct {
	Version   int        `json:"version"`
	CreatedAt time.Time  `json:"createdAt"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	Destroyed bool       `json:"destroyed"`
	Current   bool       `json:"current"`
}

// VersionList answers GET .../versions, newest first.
type VersionList struct {
	Versions []KeyVersion `json:"versions"`
}

// RollbackRequest is the body of POST .../rollback.
type RollbackRequest struct {
	Version int `json:"version"`
}

// PurgeResult answers DELETE /v1/workspaces/{ws}.
type PurgeResult struct {
	Workspace     string `json:"workspace"`
	KeysDestroyed int    `json:"keysDestroyed"`
}

// AuditEvent is one entry of a workspace's audit trail.
type AuditEvent struct {
	ID         string    `json:"id"`
	OccurredAt time.Time `json:"occurredAt"`
	Workspace  string    `json:"workspace"`
	Provider   string    `json:"provider,omitempty"`
	Action     string    `json:"action"`
	Actor      string    `json:"actor"`
	RemoteAddr string    `json:"remoteAddr,omitempty"`
	Outcome    string    `json:"outcome"`
	Version    *int      `json:"version,omitempty"`
	MaskedKey  string    `json:"maskedKey,omitempty"`
	RequestID  string    `json:"requestId,omitempty"`
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
}

// ResolveResponse answers POST /v1/resolve. IsBYOK is true when the key is
// the workspace's own (the platform does not bill the call).
type ResolveResponse struct {
	APIKey  string `json:"apiKey"`
	Source  string `json:"source"`
	IsBYOK  bool   `json:"isBYOK"`
	Version int    `json:"version"`
	// Scope is where the key lives ("workspace", "hosted"), KeyID which
	// key of that scope served.
	Scope string `json:"scope"`
	KeyID string `json:"keyId"`
	// ResolutionID names this answer in the platform's usage records.
	ResolutionID string `json:"resolutionId"`
	// FallbackReason says why an earlier scope did not serve
	// ("no_workspace_key"); absent when the workspace's own key did.
	FallbackReason string `json:"fallbackReason,omitempty"`
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
	// Scope is "workspace" (its own key, not billed), "hosted" (the
	// platform's key, billed at hosted rates), or null: calls fail.
	Scope      *string `json:"scope"`
	UsableKeys int     `json:"usableKeys"`
	// Reason says why an earlier scope does not serve, or why none does:
	// no_workspace_key, hosted_fallback_off, no_hosted_key.
	Reason string `json:"reason,omitempty"`
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

// ErrorBody is the shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong, safely.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Reason details some codes: for no_key, hosted_fallback_off or
	// no_hosted_key.
	Reason string `json:"reason,omitempty"`
}
