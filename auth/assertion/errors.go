package assertion

import "errors"

// The errors of Verify. Each error Verify returns wraps exactly one of
// them, with a reason that quotes neither the token nor its claims. Every
// one means the caller is not authenticated (HTTP 401) except
// ErrKeysUnavailable and ErrUsesUnavailable, which say keybroker could not
// get the platform's keys or record the assertion's use (HTTP 503: the
// assertion may be good).
var (
	// ErrMalformed: not a compact JWS of a JWT, too long, or its claims
	// are not JSON of the expected types.
	ErrMalformed = errors.New("platform assertion: malformed")
	// ErrUnknownIssuer: no registration has the token's `iss`.
	ErrUnknownIssuer = errors.New("platform assertion: unknown issuer")
	// ErrUnknownKey: the header's `kid` is missing or not in the
	// platform's JWKS, even after a refresh.
	ErrUnknownKey = errors.New("platform assertion: unknown signing key")
	// ErrBadSignature: the algorithm is not accepted (none, HMAC, one the
	// key does not sign with) or the signature does not verify.
	ErrBadSignature = errors.New("platform assertion: bad signature")
	// ErrExpired: `exp` (plus the clock skew) has passed.
	ErrExpired = errors.New("platform assertion: expired")
	// ErrBadClaims: a claim is missing or out of bounds (aud, lifetime,
	// iat or nbf in the future, sub, jti, roles, ids).
	ErrBadClaims = errors.New("platform assertion: bad claims")
	// ErrNotAllowed: the assertion grants admin and the platform's
	// registration does not allow it.
	ErrNotAllowed = errors.New("platform assertion: role not allowed for this platform")
	// ErrReplayed: the `jti` was seen before within its lifetime, or the
	// platform's replay cache is full of live assertions.
	ErrReplayed = errors.New("platform assertion: replayed")
	// ErrKeysUnavailable: the platform's JWKS could not be fetched or
	// read, and no usable copy is cached.
	ErrKeysUnavailable = errors.New("platform assertion: the platform's keys are unavailable")
	// ErrUsesUnavailable: the shared record of assertions' uses could not
	// be written (Config.Uses failed); the assertion is refused, as its
	// first use cannot be proved. A retry with a new assertion may pass.
	// The error wraps Uses' error too (for the log: it quotes no token).
	ErrUsesUnavailable = errors.New("platform assertion: the record of uses is unavailable")
)
