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

// Key states of a KeyRecord.
const (
	StatePending = "pending"
	StateActive  = "active"
)

// KeyRecord is the metadata of one workspace key. Version 0 means no version
// has been confirmed yet (a first write is in flight).
type KeyRecord struct {
	// Scope, Workspace (the scope's id: a workspace id, an organization
	// id, "" for hosted), Provider and KeyID name the key.
	Scope       ScopeKind
	Workspace   string
	Provider    string
	KeyID       string
	State       string
	Version     int
	MaskedKey   string
	Fingerprint string
	CreatedAt   time.Time
	CreatedBy   string
	UpdatedAt   time.Time
	UpdatedBy   string
	// Pending is the change in flight, nil when the record is active.
	Pending *PendingChange
}

// Ref is the record's key.
func (r KeyRecord) Ref() KeyRef {
	return KeyRef{Scope: r.Scope, ScopeID: r.Workspace, Provider: r.Provider, KeyID: r.KeyID}
}

// PendingChange is a change begun and not yet completed or aborted.
type PendingChange struct {
	ID          string
	Op          string
	Since       time.Time
	By          string
	MaskedKey   string
	Fingerprint string
}

// Change is a write about to be made in Vault.
type Change struct {
	ID          string // a UUID that names this change
	Op          string // OpSet, OpDelete, OpRollback
	By          string // who asked
	MaskedKey   string // of the key being written (set, rollback)
	Fingerprint string
}

// Written is a version that Vault confirmed.
type Written struct {
	Version     int
	MaskedKey   string
	Fingerprint string
	By          string
}

// AuditEvent is one entry of the append-only audit trail. It never holds
// key material: at most the masked preview and the fingerprint.
type AuditEvent struct {
	ID          int64
	OccurredAt  time.Time
	Workspace   string
	Provider    string
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

// Invalidation says that a workspace's key for Provider changed on some
// replica; an empty Provider means every key of the workspace (a purge).
type Invalidation struct {
	Workspace string
	Provider  string
}
