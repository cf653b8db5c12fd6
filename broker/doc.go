// Package broker is keybroker's domain: resolving the key of a (workspace,
// provider) with BYOK first and the platform's hosted key as fallback, the
// in-memory cache in front of Vault with its single-flight reads and
// invalidation, the key lifecycle (set, rotate, roll back, delete, purge a
// workspace; expiry and its warnings, rotation and revocation at the
// provider through its admin API, rotateAfter schedules, usage by version
// and caller: expiry.go, rotation.go, revocation.go, schedule.go), key
// health and checks.
//
// What a provider is (the catalogue, credential kinds, format rules,
// masking, the key check) is the providers package's; the broker carries
// credentials as providers.Credential. It talks to Vault through the vault
// package and to metadata through a store interface; it knows nothing of
// HTTP.
package broker
