package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/keybroker/keybroker/providers"
)

// The domain's errors. Callers (the HTTP handlers) map them to statuses with
// errors.Is; messages never contain key material.
var (
	// ErrInvalidID: a workspace or provider id is malformed (400).
	ErrInvalidID = errors.New("invalid id")
	// ErrUnknownProvider: the provider is not in the registry (400).
	ErrUnknownProvider = errors.New("unknown provider")
	// ErrInvalidKey: the key breaks the provider's format rule (422).
	// It is the providers package's, which makes the refusals.
	ErrInvalidKey = providers.ErrInvalidKey
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
	// ErrLinkNotAllowed: the change would link a workspace to an
	// organization (or unlink it), which the caller may not do (403).
	ErrLinkNotAllowed = errors.New("only an operator links a workspace to an organization")
)

// publicError is a refusal whose reason is safe to show to the caller: it
// names ids, versions and format rules, never a key.
type publicError struct {
	kind   error
	reason string
}

func (e *publicError) Error() string { return e.kind.Error() + ": " + e.reason }
func (e *publicError) Unwrap() error { return e.kind }

// refuse returns an error of kind whose reason callers may show.
func refuse(kind error, format string, args ...any) error {
	return &publicError{kind: kind, reason: fmt.Sprintf(format, args...)}
}

// PublicReason returns the caller-safe reason of a refusal made by the
// broker (bad key, bad request), or "" for other errors.
func PublicReason(err error) string {
	var pe *publicError
	if errors.As(err, &pe) {
		return pe.reason
	}
	return providers.PublicReason(err)
}

// ErrPoolFull: the pool already holds the most keys it may
// (Config.MaxKeysPerPool).
var ErrPoolFull = errors.New("the pool is full")

// ErrKeyExists: a create named a key id the pool already has.
var ErrKeyExists = errors.Join(ErrConflict, errors.New("a key with this id already exists"))

// ErrLegacyLayout: the key is still stored where keybroker v1 kept it;
// `keybroker vault migrate-layout` moves it (409).
var ErrLegacyLayout = errors.Join(ErrConflict, errors.New("the key is still in the v1 layout"))

// ErrKeysCoolingDown: every key that could serve the call is cooling down
// after a provider's 429 or 5xx (429 keys_cooling_down with Retry-After, as
// the provider itself would answer; no_key stays for pools where nothing
// could ever serve). A *CoolingDownError carries when to retry.
var ErrKeysCoolingDown = errors.New("every key that could serve is cooling down")

// CoolingDownError is ErrKeysCoolingDown with the earliest end of a
// cooldown among the keys that could serve.
type CoolingDownError struct {
	// RetryAfter is how long until the first of those keys serves again
	// (at least one second).
	RetryAfter time.Duration
	// Reason says which scopes were cooling down, for the answer's message.
	Reason string
}

func (e *CoolingDownError) Error() string {
	return fmt.Sprintf("%s (retry after %s): %s", ErrKeysCoolingDown, e.RetryAfter, e.Reason)
}

func (e *CoolingDownError) Unwrap() error { return ErrKeysCoolingDown }
