// Package assertion owns the verification of platform assertions: the short
// JWTs that a registered platform's backend signs to call keybroker for one
// of its signed-in users. It owns the platform Registration (the issuer, the
// JWKS it signs with, the workspaces and organizations it may speak for and
// whether it may ever grant admin) and its validation, the JWKS cache (from
// a URL, refreshed on a TTL and at once on an unknown key id but at most once
// per RefreshMinInterval per platform; or from a file, re-read when it
// changes), the checks of the claims, the in-memory replay cache of `jti`,
// and the clamping of the asserted roles to the registration.
//
// The verified Assertion names the platform and the person; Assertion.Actor
// is the audit actor built from both. What an Assertion may do is decided by
// the caller (package auth's roles): this package only says who and with
// which roles, within what the registration allows.
//
// # The assertion
//
// A compact JWS signed with an asymmetric key (RS256, RS384, RS512, PS256,
// ES256, ES384 or EdDSA; `none` and HMAC are refused) whose header `kid`
// names a key of the platform's JWKS, with the claims
//
//	iss   the platform's registered issuer (exact match)
//	aud   must contain keybroker's audience
//	exp   required; at most MaxLifetime (5 min) after iat and after now
//	iat   required; not in the future beyond ClockSkew (30 s)
//	nbf   optional; not in the future beyond ClockSkew
//	sub   required: the platform's id of the end user
//	jti   required: unique; a second use within its lifetime is refused
//	name, email   optional, for the audit trail
//	keybroker     {"workspaces": {"ws1": "admin"}, "organizations": {"acme": "reader"}}
//
// RolesClaim ("keybroker") is the claim of the roles: an object named after
// keybroker, so that the roles of this audience never mix with the
// platform's own claims. A workspace or organization the registration does
// not list is dropped (Assertion.Dropped says which); an "admin" role from a
// platform whose registration does not allow admin refuses the whole
// assertion (ErrNotAllowed), see Verify.
//
// # Replays across replicas
//
// The replay cache is in memory, per process: a replay to the same
// replica is refused without I/O. With Config.Uses (keybroker's admin
// replicas pass the store's assertion_uses table), an assertion that
// passed it is then recorded where every replica sees it, one INSERT of
// the platform and the jti's SHA-256 keyed by both, so that a replay to
// another replica within the assertion's lifetime is refused there too.
// That is one write per assertion (a platform signs one per call); when
// it fails the assertion is refused (ErrUsesUnavailable), never accepted
// unrecorded.
//
// Errors are the sentinels of errors.go, wrapped with a reason; no error
// quotes the token or a claim of it.
package assertion
