// Package store owns keybroker's PostgreSQL data: key metadata (never the
// key itself), the append-only audit trail and API token hashes, the key
// lifecycle's records (expiry warnings sent, rotations step by step,
// revocations at the providers, lifecycle settings, usage by version and
// caller: lifecycle.go, usage.go); the SQL
// migrations that create them, embedded in the binary; and the
// LISTEN/NOTIFY channel replicas use to evict cached keys.
//
// It speaks pgx/v5 and hands the rest of keybroker plain Go values and the
// domain's sentinel errors, never pgx types.
package store
