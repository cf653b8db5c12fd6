package handlers

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/ids"
)

// opening is what a route reads and checks before its own work, in this
// order: what its path names, whether the caller may do action there (or,
// for resolver routes, whether the caller is a resolver), If-Match, its
// true/false query parameter, and its JSON body.
type opening struct {
	// action is what the caller must be allowed to do on the scope the
	// path names (the zero Scope on routes that name none).
	action auth.Action
	// resolver: only resolver tokens call the route; the workspace it
	// concerns is in the body (checked by the handler), not in the path.
	resolver bool
	// ifMatch: the route honours If-Match (a key version).
	ifMatch bool
	// query names the route's optional true/false query parameter
	// ("verify", "destroy"); "" when it has none.
	query string
	// body, when not nil, receives the strictly decoded JSON body.
	body any
}

// scopeRequest is what open read of a request.
type scopeRequest struct {
	// principal is the caller.
	principal auth.Principal
	// scope is the workspace, organization or hosted scope the path names:
	// /v1/workspaces/:ws..., /v1/organizations/:org..., /v1/hosted...; the
	// zero Scope on routes that name none.
	scope broker.Scope
	// provider is :provider of pool and key routes ("" elsewhere), keyID
	// :key of key routes (the v1 shorthand routes name key "default").
	provider, keyID string
	// expected is the If-Match version (0 when absent), flag the value of
	// the query parameter.
	expected int
	flag     bool
}

// pool is the pool a pool or key route names.
func (r scopeRequest) pool() broker.PoolRef { return r.scope.Pool(r.provider) }

// key is the key a key route names.
func (r scopeRequest) key() broker.KeyRef { return r.scope.Key(r.provider, r.keyID) }

// open is the opening every handler of a scope, a pool, a key, an
// operator-wide resource or a resolver route shares: it reads and checks
// what o asks for and, when something is wrong, answers the error itself
// (400 with the documented code, 403 with the denial recorded) and returns
// false, so the handler only returns.
func (s *server) open(c *gin.Context, o opening) (scopeRequest, bool) {
	var r scopeRequest
	r.principal, _ = principalOf(c)
	if o.resolver {
		if r.principal.Role != auth.RoleResolver {
			s.authorize(c, auth.ActionResolve, broker.Scope{}, "") // records the denial and answers 403
			return scopeRequest{}, false
		}
	} else {
		var err error
		if r.scope, r.provider, r.keyID, err = pathNames(c); err != nil {
			renderError(c, s.log, domainError(err))
			return scopeRequest{}, false
		}
		if !s.authorize(c, o.action, r.scope, r.provider) {
			return scopeRequest{}, false
		}
	}
	if o.ifMatch {
		var herr *Error
		if r.expected, herr = ifMatch(c); herr != nil {
			renderError(c, s.log, herr)
			return scopeRequest{}, false
		}
	}
	if o.query != "" {
		var ok bool
		if r.flag, ok = s.boolQuery(c, o.query); !ok {
			return scopeRequest{}, false
		}
	}
	if o.body != nil {
		if derr := decodeJSON(c, o.body); derr != nil {
			renderError(c, s.log, derr)
			return scopeRequest{}, false
		}
	}
	return r, true
}

// pathNames reads the scope, :provider and :key a route's path names, each
// checked (broker.ErrInvalidID when one is not an id).
func pathNames(c *gin.Context) (scope broker.Scope, provider, keyID string, err error) {
	path := c.FullPath()
	switch {
	case strings.HasPrefix(path, "/v1/hosted"):
		scope = broker.HostedScope()
	case strings.HasPrefix(path, "/v1/organizations/"):
		scope = broker.OrganizationScope(c.Param("org"))
	case strings.HasPrefix(path, "/v1/workspaces/"):
		scope = broker.WorkspaceScope(c.Param("ws"))
	default:
		return broker.Scope{}, "", "", nil // an operator-wide route
	}
	if err := scope.Check(); err != nil {
		return broker.Scope{}, "", "", err
	}
	if !strings.Contains(path, ":provider") {
		return scope, "", "", nil
	}
	provider, keyID = c.Param("provider"), broker.DefaultKeyID
	if strings.Contains(path, ":key") {
		keyID = c.Param("key")
	}
	if !ids.Valid(provider) || !ids.Valid(keyID) {
		return broker.Scope{}, "", "", broker.ErrInvalidID
	}
	return scope, provider, keyID, nil
}

// ifMatch parses an If-Match header holding a KV version ("3" or 3); 0
// when absent.
func ifMatch(c *gin.Context) (int, *Error) {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(strings.Trim(h, `"`))
	if err != nil || v <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: "invalid_if_match", Message: `If-Match must be a key version, e.g. "3"`}
	}
	return v, nil
}
