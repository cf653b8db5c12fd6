package broker

import "time"

// The records the broker keeps in its metadata store, in its own words;
// package store maps them onto PostgreSQL rows.

// Pending operations of a Change.
const (
	OpSet      = "set"
	OpDelete   = "delete"
	OpRollback = "rollback"
)

// Write statuses of a KeyRecord (stored as provider_keys.state).
const (
	// WritePending: a change is in flight (Vault may or may not have it).
	WritePending = "pending"
	// WriteComplete: the row describes what Vault holds.
	WriteComplete = "active"
)

// Admin states of a key (KeyRecord.Disabled, the API's "state").
const (
	KeyActive   = "active"
	KeyDisabled = "disabled"
)

// KeyFacts are what keybroker knows of a key whatever it is asked: the
// part its record (KeyRecord) and its answer (KeyMeta) share, written once.
// Never the key itself.
type KeyFacts struct {
	// ScopeKind, ScopeID (a workspace id, an organization id, "" for hosted),
	// Provider and KeyID name the key.
	ScopeKind ScopeKind
	ScopeID   string
	Provider  string
	KeyID     string
	// Name, Priority and Models are the pool member's settings: free
	// text; lower priority serves first; a key with Models serves only
	// those models.
	Name     string
	Priority int
	Models   []string
	// Version is the current KV version, MaskedKey and Fingerprint the
	// preview (of its first secret field) and HMAC of its key.
	Version     int
	MaskedKey   string
	Fingerprint string
	// CredentialView is the credential's kind, non-secret fields and the
	// preview of each secret field.
	CredentialView
	CreatedAt time.Time
	CreatedBy string
	UpdatedAt time.Time
	UpdatedBy string
	// HealthReason, HealthChangedAt and CooldownUntil are what the
	// providers said of the key (see health.go).
	HealthReason    string
	HealthChangedAt time.Time
	CooldownUntil   time.Time
	// ExpiresAt is when the key stops working (zero: not known); past it
	// the key is not served (lifecycle.go). ProviderKeyID names the key at
	// its provider (an OpenAI service account id, an Anthropic API key
	// id), for rotation and revocation there; "" when unknown.
	ExpiresAt     time.Time
	ProviderKeyID string
}

// CredentialView is what the metadata keeps of a credential: its kind,
// its non-secret fields (a map field as an object of strings) and the
// masked preview of each secret field. Never a secret value.
type CredentialView struct {
	Kind   string
	Fields map[string]any
	Masked map[string]string
}

// Ref names the key.
func (f KeyFacts) Ref() KeyRef {
	return KeyRef{ScopeKind: f.ScopeKind, ScopeID: f.ScopeID, Provider: f.Provider, KeyID: f.KeyID}
}

// KeyRecord is the metadata of one key as the metadata store keeps it.
// Version 0 means no version has been confirmed yet (a first write is in
// flight).
type KeyRecord struct {
	KeyFacts
	// WriteStatus is the write lifecycle: WritePending while a change is
	// in flight, else WriteComplete. (A key's state, active or disabled,
	// is Disabled.)
	WriteStatus string
	// Disabled: an admin set the key aside; it never serves.
	Disabled bool
	// Failing and Cooldowns are what the providers said of the key beside
	// KeyFacts' health (see health.go).
	Failing   bool
	Cooldowns int
	// Pending is the change in flight, nil when the record is active.
	Pending *PendingChange
}

// PendingChange is a change begun and not yet completed or aborted.
type PendingChange struct {
	ID          string
	Op          string
	Since       time.Time
	By          string
	MaskedKey   string
	Fingerprint string
	View        CredentialView
}

// Change is a write about to be made in Vault.
type Change struct {
	ID          string // a UUID that names this change
	Op          string // OpSet, OpDelete, OpRollback
	By          string // who asked
	MaskedKey   string // of the key being written (set, rollback)
	Fingerprint string
	View        CredentialView // of the key being written (set, rollback)
	// Create: the key must not exist yet (ErrConflict when it does).
	Create bool
	// MaxPool > 0 refuses a key new to its pool when the pool already
	// holds that many (ErrPoolFull).
	MaxPool int
	// Member settles the settings of a key new to its pool (ignored for an
	// existing key).
	Member MemberSettings
}

// MemberSettings are a key's settings as a member of its pool.
type MemberSettings struct {
	Name     string
	Priority int
	Disabled bool
	Models   []string
	// ResetHealth (an update only): an admin set the key active, which
	// returns a failing or cooling key to its pool.
	ResetHealth bool
	// ExpiresAt (zero: none) and ProviderKeyID ("": unknown): see
	// KeyFacts.
	ExpiresAt     time.Time
	ProviderKeyID string
}

// Written is a version that Vault confirmed.
type Written struct {
	Version     int
	MaskedKey   string
	Fingerprint string
	View        CredentialView
	By          string
}

// AuditEvent is one entry of the append-only audit trail. It never holds
// key material: at most the masked preview and the fingerprint.
type AuditEvent struct {
	ID         int64
	OccurredAt time.Time
	// ScopeKind and ScopeID name whose trail the event is in; both "" for an
	// operator-wide event (a token of no workspace).
	ScopeKind   ScopeKind
	ScopeID     string
	Provider    string
	KeyID       string
	Action      string
	Actor       string
	RemoteAddr  string
	Outcome     string
	Version     *int
	MaskedKey   *string
	Fingerprint *string
	Detail      string
	// RequestID is keybroker's own id of the request; ClientRequestID the
	// caller's X-Request-Id, kept beside it (never in its place: a caller
	// could otherwise forge the id an investigation follows).
	RequestID       string
	ClientRequestID string
	// Count is how many events the row stands for (aggregated denials);
	// 0 or 1 is one.
	Count int
}

// Invalidation says that a key, or the membership of its pool, changed on
// some replica: its cached answer is forgotten and its pool re-read. An
// empty Provider means every pool of the scope (a purge).
type Invalidation struct {
	ScopeKind ScopeKind
	ScopeID   string
	Provider  string
	KeyID     string
}

// AuditQuery selects a page of a trail: a scope's (Scope set) or the
// global one (nil), newest first, ids below Before (0: from the newest),
// at most Limit, and, when set, only events of that Action, Outcome and
// Actor.
type AuditQuery struct {
	Scope                  *Scope
	Before                 int64
	Limit                  int
	Action, Outcome, Actor string
}

// ProxyCallQuery selects a page of proxied calls, newest first: of one
// Workspace (empty: every workspace), ids below Before (0: from the
// newest), at most Limit, and when set only of Provider and with At in
// [Since, Until).
type ProxyCallQuery struct {
	Workspace, Provider string
	Since, Until        time.Time
	Before              int64
	Limit               int
}

// ProxyCall is one call through the credential proxy, for the platform's
// billing and audits: which key served (scope, key id, version), what the
// provider answered, how long it took, whether it was BYOK and whether it
// was retried with another key. Never the key, the token or a body.
type ProxyCall struct {
	// ID is the record's place in PostgreSQL (0 until it is stored).
	ID         int64
	At         time.Time
	Workspace  string
	Provider   string
	Scope      string
	KeyID      string
	KeyVersion int
	Status     int
	Duration   time.Duration
	BYOK       bool
	Retried    bool
	BytesOut   int64
	// Caller is the calling token's id; RequestID keybroker's request id.
	Caller    string
	RequestID string
}
