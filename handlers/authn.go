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
	"github.com/keybroker/keybroker/internal/proxytoken"
	"github.com/keybroker/keybroker/store"
)

// Authenticator is what the handlers need of package auth.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
	// IssuerActive says whether the token that minted a proxy token is
	// still valid (its principal if so).
	IssuerActive(ctx context.Context, id string) (auth.Principal, error)
	RecordDenial(ctx context.Context, p auth.Principal, scope broker.Scope, provider, route, remoteAddr, requestID string) error
	// The token routes (operators).
	Create(ctx context.Context, req auth.CreateRequest) (string, store.TokenRecord, error)
	List(ctx context.Context) ([]store.TokenRecord, error)
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
// With a limiter, a client address that failed authentication too often
// is refused before any lookup, and each token has a request rate.
func (s *server) authenticate(c *gin.Context) {
	scheme, token, ok := strings.Cut(c.GetHeader("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		token = ""
	}
	s.authenticateToken(c, strings.TrimSpace(token), false)
}

// authenticateToken is authenticate of a token found: a keybroker token,
// or with proxyTokens a proxy token too (proxyPrincipal).
func (s *server) authenticateToken(c *gin.Context, token string, proxyTokens bool) {
	// A lookup reserves a failed authentication before it starts (given
	// back when the token is good): checked and charged in one step.
	var attempt *auth.AuthAttempt
	if s.limiter != nil {
		a, ok, wait := s.limiter.BeginAuth(clientAddr(c))
		if !ok {
			renderError(c, s.log, rateLimited(wait, "too many failed authentications from this address"))
			return
		}
		attempt = a
	}
	if token == "" {
		c.Header("WWW-Authenticate", `Bearer realm="keybroker"`)
		renderError(c, s.log, errUnauthenticated)
		return
	}
	var p auth.Principal
	var err error
	if proxyTokens && strings.HasPrefix(token, proxytoken.Prefix) {
		p, err = s.proxyPrincipal(c, token)
	} else {
		p, err = s.tokens.Authenticate(c.Request.Context(), token)
	}
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		c.Header("WWW-Authenticate", `Bearer realm="keybroker", error="invalid_token"`)
		renderError(c, s.log, errUnauthenticated)
		return
	case err != nil:
		attempt.Succeeded() // not a failed authentication
		renderError(c, s.log, unavailable(err))
		return
	}
	attempt.Succeeded()
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
