package handlers

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// defaultProxyTokenTTL is how long a proxy token lives when the request
// does not say.
const defaultProxyTokenTTL = 15 * time.Minute

// mintProxyToken is POST /v1/proxy-tokens: a resolver token mints a
// short-lived token for one sandbox, good for the credential proxy only.
func (s *server) mintProxyToken(c *gin.Context) {
	var req client.ProxyTokenRequest
	if _, ok := s.open(c, opening{resolver: true, body: &req}); !ok {
		return
	}
	if !ids.Regexp.MatchString(req.Workspace) {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_id", Message: "workspace must match " + ids.Rule})
		return
	}
	providers := slices.Compact(slices.Sorted(slices.Values(req.Providers)))
	if len(providers) == 0 || len(providers) > proxytoken.MaxProviders {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "providers must name 1 to 16 providers"})
		return
	}
	for _, id := range providers {
		if p, ok := s.keys.Providers().Lookup(id); !ok || p.IsAdmin() {
			// An admin credential is never proxied (docs/lifecycle.md).
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "unknown_provider", Message: "no such provider: " + quoteID(id)})
			return
		}
	}
	models := slices.Compact(slices.Sorted(slices.Values(req.Models)))
	if len(models) > proxytoken.MaxModels {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "models may name at most 32 models"})
		return
	}
	for _, m := range models {
		if m == "" || len(m) > broker.MaxModelLength {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "a model name must be 1 to 128 characters"})
			return
		}
	}
	ttl := defaultProxyTokenTTL
	if req.TTLSeconds != 0 {
		if req.TTLSeconds < 1 || req.TTLSeconds > int(proxytoken.MaxTTL/time.Second) {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "ttlSeconds must be 1 to 3600"})
			return
		}
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	for _, id := range providers {
		if !s.authorize(c, auth.ActionResolve, broker.WorkspaceScope(req.Workspace), id) {
			return
		}
	}
	if s.proxyTokens == nil {
		renderError(c, s.log, &Error{Status: http.StatusNotImplemented, Code: "not_configured", Message: "this replica mints no proxy tokens"})
		return
	}
	p, _ := principalOf(c)
	// Mints are bounded per resolver token: each proxy token has a
	// request rate of its own (its calls are charged to this token too,
	// see proxyCall), and minting costs a signature.
	if s.limiter != nil {
		if ok, wait := s.limiter.AllowMint(p.TokenID); !ok {
			renderError(c, s.log, rateLimited(wait, "this resolver token mints proxy tokens faster than its rate"))
			return
		}
	}
	expires := time.Now().Add(ttl).Truncate(time.Second)
	tok, err := s.proxyTokens.Mint(proxytoken.Claims{Issuer: p.TokenID, Workspace: req.Workspace, Providers: providers, Models: models, Expires: expires})
	if err != nil {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "could not mint this token"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, client.ProxyToken{Token: tok, ID: proxytoken.ID(tok), Workspace: req.Workspace, Providers: providers, Models: models, ExpiresAt: expires.UTC()})
}

// quoteID shows an id in an error, cut to the id rule's length.
func quoteID(id string) string {
	if len(id) > ids.MaxLen {
		id = id[:ids.MaxLen] + "…"
	}
	return `"` + strings.ToValidUTF8(id, "?") + `"`
}

// callerToken finds the caller's keybroker token on a proxied call: where
// the provider's SDK puts its key (Authorization: Bearer, x-api-key,
// x-goog-api-key, Azure's api-key), so that an unmodified SDK pointed at
// the proxy works.
func callerToken(r *http.Request) string {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if t := strings.TrimSpace(tok); strings.HasPrefix(t, "kbt_") || strings.HasPrefix(t, proxytoken.Prefix) {
			return t
		}
	}
	for _, h := range []string{"X-Api-Key", "X-Goog-Api-Key", "Api-Key"} {
		if t := strings.TrimSpace(r.Header.Get(h)); strings.HasPrefix(t, "kbt_") || strings.HasPrefix(t, proxytoken.Prefix) {
			return t
		}
	}
	return ""
}

// authenticateProxy is authenticate for /proxy/: a resolver token, or a
// proxy token, found where the provider's SDK puts its key.
func (s *server) authenticateProxy(c *gin.Context) {
	s.authenticateToken(c, callerToken(c.Request), true)
}

// proxyPrincipal verifies a proxy token and checks that the resolver
// token that minted it is still valid; its claims go into the request's
// state. Every refusal is auth.ErrUnauthenticated.
func (s *server) proxyPrincipal(c *gin.Context, token string) (auth.Principal, error) {
	if s.proxyTokens == nil {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	claims, err := s.proxyTokens.Verify(token)
	if err != nil {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	id := proxytoken.ID(token)
	if s.tokens.ProxyTokenRevoked(id) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	issuer, err := s.tokens.IssuerActive(c.Request.Context(), claims.Issuer)
	if err != nil {
		return auth.Principal{}, err // revoked (ErrUnauthenticated), or the store is unavailable
	}
	if issuer.Role != auth.RoleResolver || !issuer.Allowed(auth.ActionResolve, broker.WorkspaceScope(claims.Workspace)) {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	stateOf(c).proxyClaims = &claims
	return auth.Principal{TokenID: id, Role: auth.RoleResolver, Workspaces: []string{claims.Workspace}}, nil
}

// revokeProxyToken is POST /v1/proxy-tokens/revoke: the resolver token
// that minted a proxy token ends it before its expiry, on every replica
// (it presents the token: proxy tokens are not stored, and only the token
// names its workspace and issuer).
func (s *server) revokeProxyToken(c *gin.Context) {
	var req client.RevokeProxyTokenRequest
	r, ok := s.open(c, opening{resolver: true, body: &req})
	if !ok {
		return
	}
	p := r.principal
	if s.proxyTokens == nil {
		renderError(c, s.log, &Error{Status: http.StatusNotImplemented, Code: "not_configured", Message: "this replica holds no proxy-token keys"})
		return
	}
	claims, err := s.proxyTokens.Verify(req.Token)
	if errors.Is(err, proxytoken.ErrExpired) {
		renderError(c, s.log, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "the proxy token has expired already"})
		return
	}
	// A token this caller did not mint is, to it, no token at all.
	if err != nil || claims.Issuer != p.TokenID {
		renderError(c, s.log, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such proxy token minted by this token"})
		return
	}
	s.finishProxyTokenRevocation(c, auth.ProxyTokenRevocation{TokenID: proxytoken.ID(req.Token), Workspace: claims.Workspace, Expires: claims.Expires,
		By: p.Subject(), RemoteAddr: clientAddr(c), RequestID: requestIDOf(c)})
}

// revokeProxyTokenByID is DELETE /v1/proxy-tokens/{id}: an operator ends a
// proxy token named by its id (as the records of proxied calls show it),
// for the longest a proxy token lives.
func (s *server) revokeProxyTokenByID(c *gin.Context) {
	if _, ok := s.open(c, opening{action: auth.ActionManageTokens}); !ok {
		return
	}
	id := c.Param("id")
	if !proxytoken.ValidID(id) {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_id", Message: "a proxy token's id is ptk_ and 16 hexadecimal digits"})
		return
	}
	p, _ := principalOf(c)
	s.finishProxyTokenRevocation(c, auth.ProxyTokenRevocation{TokenID: id, Expires: time.Now().Add(proxytoken.MaxTTL + time.Minute),
		By: p.Subject(), RemoteAddr: clientAddr(c), RequestID: requestIDOf(c)})
}

func (s *server) finishProxyTokenRevocation(c *gin.Context, req auth.ProxyTokenRevocation) {
	err := s.tokens.RevokeProxyToken(c.Request.Context(), req)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		renderError(c, s.log, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "the proxy token is revoked already"})
	case err != nil:
		renderError(c, s.log, unavailable(err))
	default:
		c.Status(http.StatusNoContent)
	}
}

// proxyCall is ANY /proxy/{provider}/{path}.
func (s *server) proxyCall(c *gin.Context) {
	provider := c.Param("provider")
	if p, ok := s.keys.Providers().Lookup(provider); !ok || p.IsAdmin() {
		// An admin credential is never proxied (docs/lifecycle.md).
		renderError(c, s.log, &Error{Status: http.StatusNotFound, Code: "unknown_provider", Message: "no such provider"})
		return
	}
	st := stateOf(c)
	p := st.principal
	asked := c.GetHeader("X-Keybroker-Workspace")
	call := proxy.Call{Provider: provider, Caller: p.TokenID, RequestID: st.id}
	if claims := st.proxyClaims; claims != nil {
		if asked != "" && asked != claims.Workspace {
			renderError(c, s.log, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this proxy token is for another workspace"})
			return
		}
		if !slices.Contains(claims.Providers, provider) {
			renderError(c, s.log, &Error{Status: http.StatusForbidden, Code: "provider_not_allowed", Message: "this proxy token may not call this provider"})
			return
		}
		call.Workspace, call.Models, call.Issuer = claims.Workspace, claims.Models, claims.Issuer
	} else {
		if p.Role != auth.RoleResolver {
			s.authorize(c, auth.ActionResolve, broker.Scope{}, provider)
			return
		}
		if asked == "" {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
				Message: "a resolver token names the workspace in X-Keybroker-Workspace (a proxy token carries it)"})
			return
		}
		if !ids.Regexp.MatchString(asked) {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_id", Message: "X-Keybroker-Workspace must match " + ids.Rule})
			return
		}
		if !s.authorize(c, auth.ActionResolve, broker.WorkspaceScope(asked), provider) {
			return
		}
		// A resolver token could resolve the key itself: its word on the
		// model is taken when the call does not name one (a multipart
		// upload, a body too large to keep). A sandbox's is not.
		call.Workspace, call.ModelHint = asked, c.GetHeader("X-Keybroker-Model")
	}
	// A proxied call is charged to the token that made it (authenticate
	// did), to the resolver token that minted it, and to its workspace: a
	// resolver's proxy tokens share its rate, however many it mints.
	if s.limiter != nil {
		if call.Issuer != "" {
			if ok, wait := s.limiter.AllowToken(call.Issuer); !ok {
				renderError(c, s.log, rateLimited(wait, "the resolver token that minted this proxy token is over its request rate"))
				return
			}
		}
		if ok, wait := s.limiter.AllowWorkspace(call.Workspace); !ok {
			renderError(c, s.log, rateLimited(wait, "this workspace's proxied calls are over their rate"))
			return
		}
	}
	// What follows /proxy/{provider}, as the caller escaped it.
	call.Path = strings.TrimPrefix(c.Request.URL.EscapedPath(), "/proxy/"+provider)
	s.proxy.Serve(c.Writer, c.Request, call, func(f proxy.Failure) {
		renderError(c, s.log, &Error{Status: f.Status, Code: f.Code, Message: f.Message, RetryAfter: f.RetryAfter})
	})
}
