package broker

import "errors"

// The domain's errors. Callers (the HTTP handlers) map them to statuses with
// errors.Is; messages never contain key material.
var (
	// ErrInvalidID: a workspace or provider id is malformed (400).
	ErrInvalidID = errors.New("invalid id")
	// ErrUnknownProvider: the provider is not in the registry (400).
	ErrUnknownProvider = errors.New("unknown provider")
	// ErrInvalidKey: the key breaks the provider's format rule (422).
	ErrInvalidKey = errors.New("key rejected")
	// ErrInvalidRequest: the request makes no sense as asked (400).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotFound: the workspace has no key for the provider, or no such
	// version (404).
	ErrNotFound = errors.New("not found")
	// ErrNoKey: neither a BYOK key nor a hosted key exists (404 no_key).
	ErrNoKey = errors.New("no key for this workspace and provider")
	// ErrConflict: a concurrent write won, also after the broker's own
	// retry (409).
	ErrConflict = errors.New("a concurrent write won")
	// ErrPreconditionFailed: the expected version is not current (412).
	ErrPreconditionFailed = errors.New("the key's version is not the expected one")
	// ErrUnavailable: Vault or PostgreSQL cannot serve the request now (503).
	ErrUnavailable = errors.New("a dependency is unavailable")
	// ErrForbidden: Vault refused keybroker's own identity (503 to callers:
	// it is keybroker's misconfiguration, not theirs).
	ErrForbidden = errors.New("vault refused keybroker's identity")
	// ErrNotConfigured: this broker lacks the Vault identity the operation
	// needs (a resolver-only broker asked to write, say).
	ErrNotConfigured = errors.New("operation not available in this mode")
)
