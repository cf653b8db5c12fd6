package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/assertion"
)

// AssertionVerifier checks platform assertions (auth/assertion.Verifier).
type AssertionVerifier interface {
	Verify(ctx context.Context, raw string) (assertion.Assertion, error)
}

var _ AssertionVerifier = (*assertion.Verifier)(nil)

// looksLikeJWT says whether a bearer token is a compact JWS (three
// base64url parts), not a keybroker token.
func looksLikeJWT(token string) bool {
	return !strings.HasPrefix(token, "kb") && strings.Count(token, ".") == 2
}

// assertionPrincipal verifies a platform assertion and makes the person
// it speaks for the principal: their roles are the assertion's, within
// the platform's registration; the trail names the platform and the
// person. An assertion is good for one request (its jti is spent).
func (s *server) assertionPrincipal(c *gin.Context, raw string) (auth.Principal, *Error) {
	a, err := s.assertions.Verify(c.Request.Context(), raw)
	switch {
	case errors.Is(err, assertion.ErrKeysUnavailable):
		return auth.Principal{}, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 5 * time.Second,
			Message: "the platform's keys could not be fetched; retry later"}
	case errors.Is(err, assertion.ErrUsesUnavailable):
		// The cause is the database's (no token in it), for the operator.
		s.log.WarnContext(c.Request.Context(), "could not record the use of a platform assertion", "request_id", stateOf(c).id, "error", err)
		return auth.Principal{}, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 5 * time.Second,
			Message: "the use of the platform assertion could not be recorded; retry with a new assertion"}
	case err != nil:
		// The sentinel's words say what was wrong, never the token.
		return auth.Principal{}, &Error{Status: http.StatusUnauthorized, Code: "invalid_assertion", Message: "platform assertion refused: " + assertionReason(err)}
	}
	roles := auth.ScopedRoles{Workspaces: map[string]auth.Role{}, Organizations: map[string]auth.Role{}}
	for id, r := range a.Workspaces {
		roles.Workspaces[id] = auth.Role(r)
	}
	for id, r := range a.Organizations {
		roles.Organizations[id] = auth.Role(r)
	}
	if roles.Empty() {
		return auth.Principal{}, &Error{Status: http.StatusForbidden, Code: "forbidden",
			Message: "the platform assertion gives no role this platform may grant"}
	}
	// The principal's id names the platform's user, the same for each of
	// their assertions (rate limits and refusals add up per person): a
	// hash, since ids end up in logs.
	sum := sha256.Sum256([]byte(a.Platform + "\x00" + a.Issuer + "\x00" + a.Subject))
	p := auth.PersonPrincipal("pas_"+hex.EncodeToString(sum[:8]),
		auth.Person{Issuer: a.Issuer, Subject: a.Subject, Name: a.Name, Email: a.Email, Platform: a.Platform}, roles)
	return p, nil
}

// assertionReason is the sentinel an assertion was refused with.
func assertionReason(err error) string {
	for _, e := range []error{assertion.ErrMalformed, assertion.ErrUnknownIssuer, assertion.ErrUnknownKey, assertion.ErrBadSignature,
		assertion.ErrExpired, assertion.ErrBadClaims, assertion.ErrNotAllowed, assertion.ErrReplayed} {
		if errors.Is(err, e) {
			return strings.TrimPrefix(e.Error(), "platform assertion: ")
		}
	}
	return "it did not verify"
}
