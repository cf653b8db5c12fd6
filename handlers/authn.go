package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// Authenticator is what the handlers need of package auth.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
	// Recall says what the replica knows of a token without a lookup
	// (its principal when it was validated recently).
	Recall(token string) (auth.Principal, auth.Remembered)
	// IssuerActive says whether the token that minted a proxy token is
	// still valid (its principal if so).
	IssuerActive(ctx context.Context, id string) (auth.Principal, error)
	RecordDenial(ctx context.Context, p auth.Principal, scope broker.Scope, provider, route, remoteAddr, requestID string) error
	// The token routes (operators).
	Create(ctx context.Context, req auth.CreateRequest) (string, auth.TokenRecord, error)
	List(ctx context.Context) ([]auth.TokenRecord, error)
	Revoke(ctx context.Context, id, by, remoteAddr, requestID string) error
	// Names maps actor subjects to their tokens' descriptions.
	Names(ctx context.Context, subjects []string) (map[string]string, error)
	// Proxy tokens ended one by one.
	RevokeProxyToken(ctx context.Context, req auth.ProxyTokenRevocation) error
	ProxyTokenRevoked(id string) bool
}

var _ Authenticator = (*auth.Service)(nil)

var errUnauthenticated = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated",
	Message: "missing, unknown, revoked or expired bearer token"}

// authenticate requires a valid bearer token and stores its principal.
// With a limiter, failed authentications are bounded per client address
// (a lookup of a token never seen waits for, or is refused by, the
// address's budget) and each token has a request rate.
func (s *server) authenticate(c *gin.Context) {
	scheme, token, ok := strings.Cut(c.GetHeader("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		token = ""
	}
	if token == "" && c.GetHeader("Authorization") == "" && s.signIn != nil {
		if ck, err := c.Cookie(s.signIn.sessionCookie); err == nil && ck != "" {
			s.authenticateSession(c, ck, true)
			return
		}
	}
	token = strings.TrimSpace(token)
	if s.signIn != nil && strings.HasPrefix(token, sessionTokenPrefix) {
		s.authenticateSession(c, token, false)
		return
	}
	s.authenticateToken(c, token, false)
}

// authenticateToken is authenticate of a token found: a keybroker token,
// or with proxyTokens a proxy token too (proxyPrincipal).
//
// The failed-authentication limit stops guessing, not tokens that work:
// only a lookup that could fail (a keybroker token this replica never
// validated) reserves a failure of the address before it starts, and
// gives it back when the token was good. A token validated before is
// answered from memory, or looked up again without a reservation (its
// hash was a token's: no guess), and a proxy token is checked by its
// signature before anything is read, so neither is ever refused by the
// limit; the failures they turn out to be are charged after the fact.
func (s *server) authenticateToken(c *gin.Context, token string, proxyTokens bool) {
	addr := clientAddr(c)
	var p auth.Principal
	var err error
	charged := false // a reserved failure was kept already
	switch {
	case token == "":
		err = auth.ErrUnauthenticated
	case proxyTokens && strings.HasPrefix(token, proxytoken.Prefix):
		p, err = s.proxyPrincipal(c, token)
	case !proxyTokens && s.assertions != nil && looksLikeJWT(token):
		var refused *Error
		if p, refused = s.assertionPrincipal(c, token); refused != nil {
			if refused.Status == http.StatusUnauthorized && s.limiter != nil {
				// A refused assertion counts as a failed authentication.
				if ok, wait := s.limiter.FailedAuth(addr); !ok {
					refused = rateLimited(wait, "too many failed authentications from this address")
				}
			}
			renderError(c, s.log, refused)
			return
		}
	default:
		var refused *Error
		if p, charged, refused, err = s.tokenPrincipal(c, addr, token); refused != nil {
			renderError(c, s.log, refused)
			return
		}
	}
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		if !charged && s.limiter != nil {
			if ok, wait := s.limiter.FailedAuth(addr); !ok {
				renderError(c, s.log, rateLimited(wait, "too many failed authentications from this address"))
				return
			}
		}
		if token == "" {
			c.Header("WWW-Authenticate", `Bearer realm="keybroker"`)
		} else {
			c.Header("WWW-Authenticate", `Bearer realm="keybroker", error="invalid_token"`)
		}
		renderError(c, s.log, errUnauthenticated)
		return
	case err != nil:
		renderError(c, s.log, unavailable(err))
		return
	}
	st := stateOf(c)
	st.principal, st.authenticated = p, true
	if s.limiter != nil {
		if ok, wait := s.limiter.AllowToken(p.TokenID); !ok {
			renderError(c, s.log, rateLimited(wait, "this token is over its request rate"))
			return
		}
	}
	c.Next()
}

// authenticateSession authenticates a person by their session: the page's
// cookie, or (cookie false) the bearer token of `keybroker login`.
func (s *server) authenticateSession(c *gin.Context, token string, cookie bool) {
	p, refused := s.sessionPrincipal(c, token, cookie)
	if refused != nil {
		if refused.Status == http.StatusUnauthorized && s.limiter != nil {
			if ok, wait := s.limiter.FailedAuth(clientAddr(c)); !ok {
				refused = rateLimited(wait, "too many failed authentications from this address")
			}
		}
		renderError(c, s.log, refused)
		return
	}
	st := stateOf(c)
	st.principal, st.authenticated = p, true
	if s.limiter != nil {
		if ok, wait := s.limiter.AllowToken(p.TokenID); !ok {
			renderError(c, s.log, rateLimited(wait, "this session is over its request rate"))
			return
		}
	}
	c.Next()
}

// tokenPrincipal authenticates a keybroker token. charged says that the
// failure it turned out to be was reserved (and kept) already; refused is
// the limit's 429 when the address has no failure left for a lookup.
func (s *server) tokenPrincipal(c *gin.Context, addr, token string) (p auth.Principal, charged bool, refused *Error, err error) {
	ctx := c.Request.Context()
	p, known := s.tokens.Recall(token)
	switch {
	case known == auth.RememberedValid:
		return p, false, nil, nil
	case known == auth.RememberedRefused:
		return auth.Principal{}, false, nil, auth.ErrUnauthenticated
	case known == auth.RememberedStale || s.limiter == nil:
		p, err = s.tokens.Authenticate(ctx, token)
		return p, false, nil, err
	}
	attempt, ok, wait := s.limiter.BeginAuth(ctx, addr)
	if !ok {
		return auth.Principal{}, false, rateLimited(wait, "too many failed authentications from this address"), nil
	}
	defer attempt.Failed() // unless it succeeded first
	p, err = s.tokens.Authenticate(ctx, token)
	if errors.Is(err, auth.ErrUnauthenticated) {
		return p, true, nil, err
	}
	attempt.Succeeded() // a good token, or no answer: not a failed authentication
	return p, false, nil, err
}

func rateLimited(wait time.Duration, why string) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: why + "; retry later", RetryAfter: wait}
}

func principalOf(c *gin.Context) (auth.Principal, bool) {
	st := stateOf(c)
	return st.principal, st.authenticated
}

// authorize answers 403, and records the denial in the audit trail, when
// the caller's role does not allow action on scope.
func (s *server) authorize(c *gin.Context, action auth.Action, scope broker.Scope, provider string) bool {
	p, _ := principalOf(c)
	if p.Allowed(action, scope) {
		return true
	}
	route := c.Request.Method + " " + c.FullPath()
	if err := s.tokens.RecordDenial(c.Request.Context(), p, scope, provider, route, clientAddr(c), requestIDOf(c)); err != nil {
		s.log.WarnContext(c.Request.Context(), "could not record a denied request in the audit trail", "error", err, "request_id", requestIDOf(c))
	}
	msg := "this token's role (" + string(p.Role) + ") may not do this here"
	switch {
	case action == auth.ActionResolve && p.Role != auth.RoleResolver:
		msg = "only resolver tokens resolve keys; this token's role is " + string(p.Role)
	case action == auth.ActionResolve:
		msg = "this resolver token is limited to other workspaces"
	case scope.Kind == broker.ScopeHosted:
		msg = "only an operator manages the platform's hosted keys"
	case action == auth.ActionManageTokens:
		msg = "only an operator lists, creates and revokes tokens"
	case action == auth.ActionLinkOrganization:
		msg = "only an operator links a workspace to an organization (or changes or removes the link)"
	}
	renderError(c, s.log, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: msg})
	return false
}
