package handlers

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/client"
)

// Route is one route of keybroker's HTTP API as the router serves it and
// the OpenAPI document (handlers/openapi.json, written by package
// handlers/apidoc) describes it: the route table below is the one list of
// both, so a route cannot be served and left out of the document.
type Route struct {
	// Method and Path in the router's syntax (:name, *rest).
	Method, Path string
	// ID is the operationId; Summary and Description say what it does.
	ID, Summary, Description string
	// Public routes need no bearer token.
	Public bool
	// Params are the query and header parameters; a path parameter is
	// described by the route's own Param of that name, or by the common
	// description of its name (package apidoc).
	Params []Param
	// Body is the request body's type (a value of a package client type);
	// nil: no body. RawBody: any bytes (the credential proxy).
	Body    any
	RawBody bool
	// Answers are the route's answers. For an authenticated /v1 route the
	// document adds the answers every such route may give (400, 401, 403,
	// 404, 413, 429, 500, 503), unless the route says otherwise for that
	// status.
	Answers []Answer
}

// Param is a query, header or path parameter.
type Param struct {
	Name, In, Description string
	Required              bool
	// Integer: the value is a number; otherwise a string, of Format
	// (e.g. date-time) and matching Pattern when set.
	Integer          bool
	Format, Pattern  string
	Enum             []string
	MaxLength        int
	Minimum, Maximum int
}

// Answer is one status a route answers with.
type Answer struct {
	// Status is the HTTP status; 0 stands for any other (OpenAPI's default).
	Status      int
	Description string
	// Body is the answer's type: a value of a package client type,
	// AnyObject, Text, NoBody or nil. Nil is the error body
	// (client.ErrorBody) for a status of 400 and above or the default, and
	// no body below 400.
	Body any
	// ContentType is the body's media type; default application/json.
	ContentType string
	Headers     []Header
}

// Header is a header of an answer.
type Header struct {
	Name, Description string
	Enum              []string
}

// Special answer bodies.
type (
	// AnyObject is a JSON object the document does not detail (the health
	// answers, this document).
	AnyObject struct{}
	// Text is a body of text (the admin page's files).
	Text struct{}
	// NoBody is an answer whose body is not keybroker's (the provider's
	// own answer passed through the proxy).
	NoBody struct{}
)

// poolScopes are the scopes whose pools have the same routes: a route
// whose path starts with "{scope}" is served (and described) once for
// each, its ID suffixed with the scope's name.
var poolScopes = []struct{ prefix, name string }{
	{"/v1/workspaces/:ws", "Workspace"},
	{"/v1/organizations/:org", "Organization"},
	{"/v1/hosted", "Hosted"},
}

const scopePrefix = "{scope}"

// routeGroup says which middleware a route's handler runs behind.
type routeGroup int

const (
	groupPublic routeGroup = iota // no authentication
	groupV1                       // body limit and bearer token
	groupUI                       // the admin page's security headers
	groupProxy                    // proxy or resolver token
)

// route is a table entry: the Route, who serves it, and in which modes.
type route struct {
	Route
	group routeGroup
	// modes that serve the route; nil: every mode.
	modes []Mode
	// needsProxyCalls, needsProxy: served only when Options has them.
	needsProxyCalls, needsProxy bool
	// needsKeys: a public route served only with Keys and Tokens (the
	// admin page's redirects).
	needsKeys bool
	serve     func(*server, *gin.Context)
}

var (
	adminModes    = []Mode{ModeAll, ModeAdmin}
	resolverModes = []Mode{ModeAll, ModeResolver}
	tokenModes    = []Mode{ModeAll, ModeResolver, ModeProxy}
	proxyModes    = []Mode{ModeAll, ModeProxy}
)

// Common answers.
var (
	etagHeader   = Header{Name: "ETag", Description: "the key's KV version, quoted"}
	noKey        = Answer{Status: 404, Description: "no key"}
	casFailed    = Answer{Status: 412, Description: "If-Match is not the current version"}
	conflict     = Answer{Status: 409, Description: "a concurrent write won"}
	ifMatchParam = Param{Name: "If-Match", In: "header", Description: "expected KV version, e.g. \"3\" (check-and-set)"}
	verify       = Param{Name: "verify", In: "query", Description: "true: ask the provider first; a key it refuses is 422 key_verification_failed and nothing is stored", Enum: []string{"true", "false"}}
	destroy      = Param{Name: "destroy", In: "query", Description: "destroy every version in Vault, not only the current one", Enum: []string{"true", "false"}}
	cursor       = Param{Name: "cursor", In: "query", Description: "nextCursor of the previous page"}
	auditQuery   = []Param{cursor,
		{Name: "limit", In: "query", Description: "1 to 200, default 50"},
		{Name: "action", In: "query", Description: "only events of this action, e.g. key.create, key.health, access.denied", MaxLength: 128},
		{Name: "outcome", In: "query", Description: "only events of this outcome, e.g. success, forbidden", MaxLength: 128},
		{Name: "actor", In: "query", Description: "only events of this actor, e.g. token:tok_0123456789abcdef", MaxLength: 128}}
	proxyCallQuery = []Param{cursor,
		{Name: "limit", In: "query", Description: "1 to 1000, default 100"},
		{Name: "provider", In: "query", Description: "only calls to this provider"},
		{Name: "since", In: "query", Description: "only calls made at or after this time (RFC 3339)", Format: "date-time"},
		{Name: "until", In: "query", Description: "only calls made before this time (RFC 3339)", Format: "date-time"}}
	rollbackNeedsReader = Answer{Status: 501, Description: "this server runs with --mode=admin and holds no reader identity, which rollback needs"}
	notResolverOfWS     = Answer{Status: 403, Description: "not a resolver token, or a resolver token limited to other workspaces"}
	proxyRevoked        = Answer{Status: 204, Description: "revoked: the proxy refuses it from now on"}
	uiSummary           = "The admin web page (static, embedded)"
	uiHeadSummary       = "The same headers as GET, no body"
)

// routeTable lists every route: the router serves it (in the modes it
// names), the OpenAPI document describes it.
var routeTable = []route{
	{Route: Route{Method: "GET", Path: "/healthz", ID: "healthz", Summary: "Liveness", Public: true, Answers: []Answer{
		{Status: 200, Description: "alive", Body: AnyObject{}},
	}}, serve: func(s *server, c *gin.Context) { s.health.healthz(c) }},
	{Route: Route{Method: "GET", Path: "/readyz", ID: "readyz", Summary: "Readiness: Vault and PostgreSQL reachable, Vault token valid", Public: true, Answers: []Answer{
		{Status: 200, Description: "ready", Body: AnyObject{}},
		{Status: 503, Description: "not ready", Headers: []Header{{Name: "Retry-After", Description: "seconds"}}},
	}}, serve: func(s *server, c *gin.Context) { s.health.readyz(c) }},
	{Route: Route{Method: "GET", Path: "/v1/openapi.json", ID: "openapi", Summary: "This document", Public: true, Answers: []Answer{
		{Status: 200, Description: "OpenAPI 3 document", Body: AnyObject{}},
	}}, serve: func(_ *server, c *gin.Context) { serveOpenAPI(c) }},

	{Route: Route{Method: "GET", Path: "/v1/providers", ID: "listProviders", Summary: "Supported providers", Answers: []Answer{
		{Status: 200, Description: "providers", Body: client.ProviderList{}},
	}}, group: groupV1, serve: (*server).listProviders},
	{Route: Route{Method: "GET", Path: "/v1/whoami", ID: "whoami", Summary: "The caller's token: id, role, workspaces (the admin page shows it)", Answers: []Answer{
		{Status: 200, Description: "the token", Body: client.WhoAmI{}},
	}}, group: groupV1, serve: (*server).whoami},

	// The v1 shorthand: key "default" of the workspace's pool.
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/keys", ID: "listKeys", Summary: "Metadata of every key of the workspace, by provider (reader or admin)", Answers: []Answer{
		{Status: 200, Description: "keys", Body: client.KeyList{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listKeys},
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/keys/:provider", ID: "getKey", Summary: "One key's metadata (reader or admin); ETag is the KV version", Answers: []Answer{
		{Status: 200, Description: "metadata", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		noKey,
	}}, group: groupV1, modes: adminModes, serve: (*server).getKey},
	{Route: Route{Method: "PUT", Path: "/v1/workspaces/:ws/keys/:provider", ID: "setKey", Summary: "Create (201) or rotate (200) the key (admin)", Params: []Param{ifMatchParam, verify}, Body: client.PutKeyRequest{}, Answers: []Answer{
		{Status: 200, Description: "rotated", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		{Status: 201, Description: "created", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		conflict, casFailed,
		{Status: 422, Description: "key_rejected: the key breaks the provider's format rule; key_verification_failed: the provider refused it (with ?verify=true)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).putKey},
	{Route: Route{Method: "DELETE", Path: "/v1/workspaces/:ws/keys/:provider", ID: "deleteKey", Summary: "Remove the key (admin); the workspace falls back to hosted keys", Description: deleteDescription, Params: []Param{ifMatchParam, destroy}, Answers: []Answer{
		{Status: 204, Description: "deleted"}, noKey, casFailed,
	}}, group: groupV1, modes: adminModes, serve: (*server).deleteKey},
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/keys/:provider/versions", ID: "listVersions", Summary: "Version history, newest first (admin)", Answers: []Answer{
		{Status: 200, Description: "versions", Body: client.VersionList{}}, noKey,
	}}, group: groupV1, modes: adminModes, serve: (*server).listVersions},
	{Route: Route{Method: "POST", Path: "/v1/workspaces/:ws/keys/:provider/rollback", ID: "rollback", Summary: "Make an earlier version current (admin)", Body: client.RollbackRequest{}, Answers: []Answer{
		{Status: 200, Description: "rolled back", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		{Status: 404, Description: "no such version"}, conflict, rollbackNeedsReader,
	}}, group: groupV1, modes: adminModes, serve: (*server).rollback},

	// Pools of every scope.
	{Route: Route{Method: "GET", Path: scopePrefix + "/providers/:provider/keys", ID: "listPool", Summary: "The pool: every key's metadata, by priority then age (reader or admin of the scope; hosted: operator)", Answers: []Answer{
		{Status: 200, Description: "keys", Body: client.KeyList{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listPool},
	{Route: Route{Method: "POST", Path: scopePrefix + "/providers/:provider/keys", ID: "addKey", Summary: "Add a key to the pool (admin, operator for hosted): 201; 409 pool_full past the pool size, 409 conflict when the keyId exists", Params: []Param{verify}, Body: client.AddKeyRequest{}, Answers: []Answer{
		{Status: 201, Description: "created", Body: client.KeyMetadata{}, Headers: []Header{etagHeader, {Name: "Location", Description: "the new key's path"}}},
		{Status: 409, Description: "pool_full: the pool holds the most keys it may; conflict: the key id exists, or a concurrent write won"},
		{Status: 422, Description: "key_rejected: the key breaks the provider's format rule; key_verification_failed: the provider refused it (with ?verify=true)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).addKey},
	{Route: Route{Method: "GET", Path: scopePrefix + "/providers/:provider/keys/:key", ID: "getKey", Summary: "One key's metadata (reader or admin; hosted: operator); ETag is the KV version", Answers: []Answer{
		{Status: 200, Description: "metadata", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}}, noKey,
	}}, group: groupV1, modes: adminModes, serve: (*server).getKey},
	{Route: Route{Method: "PUT", Path: scopePrefix + "/providers/:provider/keys/:key", ID: "setKey", Summary: "Create (201) or rotate (200) the key (admin, operator for hosted)", Params: []Param{ifMatchParam, verify}, Body: client.PutKeyRequest{}, Answers: []Answer{
		{Status: 200, Description: "rotated", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		{Status: 201, Description: "created", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		conflict, casFailed,
		{Status: 422, Description: "key_rejected: the key breaks the provider's format rule; key_verification_failed: the provider refused it (with ?verify=true)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).putKey},
	{Route: Route{Method: "PATCH", Path: scopePrefix + "/providers/:provider/keys/:key", ID: "updateKey", Summary: "Change the key's name, priority, state, models, expiresAt or providerKeyId, never the key (admin, operator for hosted)", Body: client.UpdateKeyRequest{}, Answers: []Answer{
		{Status: 200, Description: "the key as it now is", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}}, noKey,
	}}, group: groupV1, modes: adminModes, serve: (*server).patchKey},
	{Route: Route{Method: "DELETE", Path: scopePrefix + "/providers/:provider/keys/:key", ID: "deleteKey", Summary: "Remove the key from the pool (admin, operator for hosted); with revokeAtProvider=true also revoke it at the provider", Description: deleteDescription + " " + revokeDescription, Params: []Param{ifMatchParam, destroy, revokeAtProvider}, Answers: []Answer{
		{Status: 200, Description: "deleted, and (revokeAtProvider=true) what the provider did: done, or pending and retried", Body: client.Revocation{}},
		{Status: 204, Description: "deleted"}, noKey, casFailed,
		{Status: 400, Description: "revokeAtProvider=true for a provider keybroker cannot revoke keys of, a key whose providerKeyId is unknown, or a scope without the admin credential: nothing was deleted"},
		{Status: 501, Description: "revokeAtProvider=true on a server without the reader identity (mode admin): it reads the admin credential"},
	}}, group: groupV1, modes: adminModes, serve: (*server).deleteKey},
	{Route: Route{Method: "POST", Path: scopePrefix + "/providers/:provider/keys/:key/rotate", ID: "rotateKey", Summary: "Rotate the key at its provider with the scope's admin credential (admin, operator for hosted): a new key is created there, verified, put in the pool at this key's priority, this key disabled; it is deleted at the provider and from the pool after the grace period. Answers once the new key serves. Needs --mode=all (it reads the admin credential)", Body: client.RotateRequest{}, Answers: []Answer{
		{Status: 200, Description: "the rotation, in its grace step (or done with a grace of 0)", Body: client.Rotation{}},
		{Status: 400, Description: "the provider's admin API cannot create keys (expiry warnings only), or the scope holds no admin credential for it"},
		noKey,
		{Status: 409, Description: "rotation_running: a rotation of the key is running"},
		{Status: 422, Description: "key_verification_failed: the provider did not accept the new key; the rotation rolled back (the new key deleted there)"},
		{Status: 501, Description: "this server does not hold the reader identity (mode admin)"},
		{Status: 503, Description: "the provider's admin API failed: the rotation stays running and is taken up again", Headers: []Header{retryAfter}},
	}}, group: groupV1, modes: adminModes, serve: (*server).rotateKey},
	{Route: Route{Method: "GET", Path: scopePrefix + "/providers/:provider/keys/:key/rotations", ID: "listRotations", Summary: "The key's rotations at the provider, newest first: step, state, the new key (reader or admin; hosted: operator)", Answers: []Answer{
		{Status: 200, Description: "rotations", Body: client.RotationList{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listRotations},
	{Route: Route{Method: "GET", Path: scopePrefix + "/providers/:provider/keys/:key/usage", ID: "getKeyUsage", Summary: "Where the key is used: per version, resolves and proxied calls by day and by resolver token or proxy caller (reader or admin; hosted: operator), from the counters keybroker keeps", Params: []Param{
		{Name: "since", In: "query", Description: "from this day (RFC 3339 time or date); default: 30 days ago"}}, Answers: []Answer{
		{Status: 200, Description: "usage", Body: client.KeyUsage{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).keyUsage},
	{Route: Route{Method: "GET", Path: scopePrefix + "/lifecycle", ID: "getLifecycle", Summary: "The scope's key lifecycle settings: rotateAfter (reader or admin; hosted: operator)", Answers: []Answer{
		{Status: 200, Description: "settings", Body: client.LifecycleSettings{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).getLifecycle},
	{Route: Route{Method: "PUT", Path: scopePrefix + "/lifecycle", ID: "putLifecycle", Summary: "Set the scope's rotateAfter (\"90d\", \"36h\"; \"\" for no schedule): keys older than it are rotated at the provider where its admin API can (admin; hosted: operator)", Body: client.LifecycleSettings{}, Answers: []Answer{
		{Status: 200, Description: "the settings now", Body: client.LifecycleSettings{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).putLifecycle},
	{Route: Route{Method: "GET", Path: scopePrefix + "/providers/:provider/keys/:key/versions", ID: "listVersions", Summary: "Version history, newest first (admin, operator for hosted)", Answers: []Answer{
		{Status: 200, Description: "versions", Body: client.VersionList{}}, noKey,
	}}, group: groupV1, modes: adminModes, serve: (*server).listVersions},
	{Route: Route{Method: "POST", Path: scopePrefix + "/providers/:provider/keys/:key/rollback", ID: "rollback", Summary: "Make an earlier version current (admin, operator for hosted)", Body: client.RollbackRequest{}, Answers: []Answer{
		{Status: 200, Description: "rolled back", Body: client.KeyMetadata{}, Headers: []Header{etagHeader}},
		{Status: 404, Description: "no such version"}, conflict, rollbackNeedsReader,
	}}, group: groupV1, modes: adminModes, serve: (*server).rollback},
	{Route: Route{Method: "POST", Path: scopePrefix + "/providers/:provider/keys/:key/test", ID: "testKey", Summary: "Ask the provider whether it accepts the key (admin, operator for hosted; its cheapest authenticated call): accepted returns a failing key to its pool, refused marks it failing. Needs --mode=all (it reads the key)", Answers: []Answer{
		{Status: 200, Description: "the provider's verdict", Body: client.KeyCheckResult{}}, noKey,
		{Status: 501, Description: "this server does not hold the reader identity (mode admin) or has no provider checker"},
	}}, group: groupV1, modes: adminModes, serve: (*server).checkKey},
	{Route: Route{Method: "GET", Path: scopePrefix + "/audit", ID: "listAudit", Summary: "The scope's audit trail, newest first, paginated (admin of the scope; hosted: operator)", Params: auditQuery, Answers: []Answer{
		{Status: 200, Description: "events", Body: client.AuditPage{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listAudit},

	{Route: Route{Method: "DELETE", Path: "/v1/workspaces/:ws", ID: "purgeWorkspace", Summary: "Destroy every version of every key of the workspace (operator)", Answers: []Answer{
		{Status: 200, Description: "purged", Body: client.PurgeResult{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).purge},
	{Route: Route{Method: "DELETE", Path: "/v1/organizations/:org", ID: "purgeOrganization", Summary: "Destroy every version of every key of the organization (operator)", Answers: []Answer{
		{Status: 200, Description: "purged", Body: client.PurgeResult{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).purge},
	{Route: Route{Method: "GET", Path: "/v1/organizations/:org/workspaces", ID: "listLinkedWorkspaces", Summary: "The workspaces linked to the organization, and whether each inherits its keys (reader or admin of the organization)", Answers: []Answer{
		{Status: 200, Description: "linked workspaces", Body: client.WorkspaceList{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).linkedWorkspaces},
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/settings", ID: "getSettings", Summary: "A workspace's settings (reader or admin)", Answers: []Answer{
		{Status: 200, Description: "settings", Body: client.Settings{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).getSettings},
	{Route: Route{Method: "PUT", Path: "/v1/workspaces/:ws/settings", ID: "putSettings", Summary: "Change a workspace's settings: inherit and hostedFallback (admin); organization (operator)", Body: client.SettingsRequest{}, Answers: []Answer{
		{Status: 200, Description: "the settings now", Body: client.Settings{}},
		{Status: 403, Description: "the token's role may not do this; only an operator links a workspace to an organization"},
	}}, group: groupV1, modes: adminModes, serve: (*server).putSettings},
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/effective", ID: "getEffective", Summary: "Per provider, where the workspace's calls get their key now: its own, the hosted key (billed), or none (reader or admin)", Answers: []Answer{
		{Status: 200, Description: "the sources", Body: client.EffectiveSources{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).effective},
	{Route: Route{Method: "GET", Path: "/v1/audit", ID: "listGlobalAudit", Summary: "The global audit trail: every event, operator-wide ones included, newest first, paginated (operator)", Params: auditQuery, Answers: []Answer{
		{Status: 200, Description: "events", Body: client.AuditPage{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listGlobalAudit},
	{Route: Route{Method: "GET", Path: "/v1/workspaces/:ws/proxy-calls", ID: "listProxyCalls", Summary: "A workspace's calls through the credential proxy: which key served each, the provider's status, duration, bytes, BYOK; newest first, paginated (reader or admin of the workspace, operator)", Params: proxyCallQuery, Answers: []Answer{
		{Status: 200, Description: "calls", Body: client.ProxyCallPage{}},
	}}, group: groupV1, modes: adminModes, needsProxyCalls: true, serve: (*server).listProxyCalls},
	{Route: Route{Method: "GET", Path: "/v1/proxy-calls", ID: "listAllProxyCalls", Summary: "Every workspace's calls through the credential proxy, newest first, paginated (operator): the billing export", Params: proxyCallQuery, Answers: []Answer{
		{Status: 200, Description: "calls", Body: client.ProxyCallPage{}},
	}}, group: groupV1, modes: adminModes, needsProxyCalls: true, serve: (*server).listAllProxyCalls},
	{Route: Route{Method: "GET", Path: "/v1/scopes", ID: "listScopes", Summary: "The workspaces and organizations the caller may open: an operator's, every one with keys or settings; an admin's or reader's, those its token lists. By kind then id, paginated", Params: []Param{
		{Name: "kind", In: "query", Enum: []string{"workspace", "organization"}},
		{Name: "q", In: "query", Description: "part of the id", MaxLength: 63},
		{Name: "limit", In: "query", Integer: true, Minimum: 1, Maximum: 200},
		{Name: "cursor", In: "query", Description: "a previous page's nextCursor"}}, Answers: []Answer{
		{Status: 200, Description: "scopes", Body: client.ScopeList{}},
		{Status: 400, Description: "bad kind, limit or cursor"},
	}}, group: groupV1, modes: adminModes, serve: (*server).listScopes},
	{Route: Route{Method: "GET", Path: "/v1/tokens", ID: "listTokens", Summary: "Every API token: ids, roles, scopes, expiry, state; never a token (operator)", Answers: []Answer{
		{Status: 200, Description: "tokens, newest first", Body: client.TokenList{}},
	}}, group: groupV1, modes: adminModes, serve: (*server).listTokens},
	{Route: Route{Method: "POST", Path: "/v1/tokens", ID: "createToken", Summary: "Create an operator, admin or reader token (operator); the answer holds it this once, and nothing shows it again. Resolver tokens (which obtain keys) and tokens with no expiry are not minted over the API: the database owner mints them out of band with `keybroker token create`. Every creation is audited with who asked", Body: client.CreateTokenRequest{}, Answers: []Answer{
		{Status: 201, Description: "the token", Body: client.CreatedToken{}, Headers: []Header{{Name: "Cache-Control", Description: "no-store"}}},
		{Status: 403, Description: "the token's role may not do this, or the request asks for a resolver token or a token with no expiry (never over the API)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).createToken},
	{Route: Route{Method: "GET", Path: "/v1/sessions", ID: "listSessions", Summary: "A person's sessions (operator): when each began, was last used and ends, its roles, how it ended; never a session token. 501 where people do not sign in", Params: []Param{
		{Name: "issuer", In: "query", Description: "the person's identity provider (the ID token's iss)"},
		{Name: "subject", In: "query", Description: "the person's subject at it (sub)"}}, Answers: []Answer{
		{Status: 200, Description: "the sessions, newest first", Body: client.SessionList{}},
		{Status: 400, Description: "issuer or subject missing or too long"},
		{Status: 501, Description: "people do not sign in on this replica (no --oidc-issuer)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).listSessions},
	{Route: Route{Method: "POST", Path: "/v1/sessions/end", ID: "endSessions", Summary: "End every open session of a person (operator), on every replica at once: for offboarding, or a stolen cookie. Their next sign-in maps their roles anew", Body: client.EndSessionsRequest{}, Answers: []Answer{
		{Status: 200, Description: "the sessions ended", Body: client.EndSessionsResponse{}},
		{Status: 400, Description: "issuer or subject missing or too long"},
		{Status: 501, Description: "people do not sign in on this replica (no --oidc-issuer)"},
	}}, group: groupV1, modes: adminModes, serve: (*server).endSessions},
	{Route: Route{Method: "DELETE", Path: "/v1/tokens/:id", ID: "revokeToken", Summary: "Revoke an API token (operator): refused from the next request on, on every replica", Params: []Param{
		{Name: "id", In: "path", Description: "token id, tok_ and 16 hex digits"}}, Answers: []Answer{
		{Status: 204, Description: "revoked"},
		{Status: 404, Description: "no such token, or revoked already"},
	}}, group: groupV1, modes: adminModes, serve: (*server).revokeToken},
	{Route: Route{Method: "DELETE", Path: "/v1/proxy-tokens/:id", ID: "revokeProxyTokenByID", Summary: "End the proxy token named by its id (operators), as the records of proxied calls show it, for the longest a proxy token lives", Params: []Param{
		{Name: "id", In: "path", Description: "proxy token id, ptk_ and 16 hex digits", Pattern: "^ptk_[0-9a-f]{16}$"}}, Answers: []Answer{
		proxyRevoked,
		{Status: 400, Description: "invalid_id: not ptk_ and 16 hexadecimal digits"},
		{Status: 403, Description: "not an operator token"},
		{Status: 404, Description: "revoked already"},
	}}, group: groupV1, modes: adminModes, serve: (*server).revokeProxyTokenByID},

	{Route: Route{Method: "POST", Path: "/v1/resolve", ID: "resolve", Summary: "The key to use for (workspace, provider): BYOK first, else hosted (resolver) (resolver tokens only; operators cannot resolve)", Body: client.ResolveRequest{}, Answers: []Answer{
		{Status: 200, Description: "the key; Cache-Control: no-store", Body: client.ResolveResponse{}, Headers: []Header{{Name: "Cache-Control", Description: "no-store"}}},
		notResolverOfWS,
		{Status: 404, Description: "no_key: no scope has a key that could ever serve (none, all disabled or failing, or the fallback is off)"},
		{Status: 429, Description: "rate limited: the token is over its request rate, or the address failed authentication too often; or keys_cooling_down: every key that could serve is cooling down after the provider's 429 or 5xx (Retry-After is the earliest end of a cooldown; reason workspace_keys_cooling_down, organization_keys_cooling_down or hosted_keys_cooling_down)", Headers: []Header{retryAfter}},
		{Status: 502, Description: "credential_mint_failed: the provider's token service did not mint a short-lived credential from the key (the cause is in the server's log)"},
		{Status: 503, Description: "a dependency is unavailable; or credential_mint_busy: this replica is minting as many short-lived credentials as it may at once", Headers: []Header{retryAfter}},
	}}, group: groupV1, modes: resolverModes, serve: (*server).resolve},
	{Route: Route{Method: "POST", Path: "/v1/resolve/report", ID: "reportResolution", Summary: "What the provider answered to a call made with a resolved key (resolver; the resolution must be this token's): rate_limited and server_error cool the key down, unauthorized, forbidden and quota_exceeded mark it failing, ok ends a cooldown early", Body: client.ReportRequest{}, Answers: []Answer{
		{Status: 200, Description: "the key's health now", Body: client.ReportResult{}},
		notResolverOfWS,
		{Status: 404, Description: "unknown_resolution: not a resolution of this token in the last hour"},
	}}, group: groupV1, modes: resolverModes, serve: (*server).report},
	{Route: Route{Method: "GET", Path: "/v1/resolve/watch", ID: "watchResolve", Summary: "A stream of the changes that can alter what this resolver token resolves, for clients that cache keys in their own memory (resolver tokens only)", Answers: []Answer{
		{Status: 200, Description: "A newline-delimited JSON stream (one WatchEvent per line, flushed as it happens) that stays open: a hello first (flush what you hold), then invalidate events for every change that can alter what this token resolves (keys written, rotated, rolled back or deleted; pools, order, health and settings) — for a token limited to some workspaces, only of those workspaces, of the organizations they inherit from and, when one of them may fall back to hosted keys, of the hosted keys, flush when this replica may have missed changes, heartbeats while idle, and revoked when the token is revoked (then the stream ends). A watcher that does not keep up is cut off: reconnect and flush.", Body: client.WatchEvent{}, ContentType: "application/x-ndjson", Headers: []Header{{Name: "Cache-Control", Description: "no-store"}}},
		{Status: 403, Description: "not a resolver token"},
		{Status: 429, Description: "rate limited: the token is over its request rate, or the address failed authentication too often; or too_many_streams: the token holds as many watch streams as it may on this replica (8 by default), or the replica holds as many as it may (1,000 by default)", Headers: []Header{retryAfter}},
	}}, group: groupV1, modes: resolverModes, serve: (*server).watchResolve},
	{Route: Route{Method: "POST", Path: "/v1/proxy-tokens", ID: "mintProxyToken", Summary: "Mint a per-execution token for the credential proxy (resolver): one workspace, some providers, optionally only some models, for at most an hour. It is signed, not stored: any replica verifies it, and revoking the resolver token that minted it ends it", Body: client.ProxyTokenRequest{}, Answers: []Answer{
		{Status: 201, Description: "the proxy token (shown once)", Body: client.ProxyToken{}, Headers: []Header{{Name: "Cache-Control", Description: "no-store"}}},
		{Status: 400, Description: "bad input: malformed JSON, unknown field, invalid id, unknown provider, no provider, too many providers or models, a ttlSeconds outside 1 to 3600"},
		notResolverOfWS,
		{Status: 501, Description: "this replica holds no proxy-token keys"},
	}}, group: groupV1, modes: tokenModes, serve: (*server).mintProxyToken},
	{Route: Route{Method: "POST", Path: "/v1/proxy-tokens/revoke", ID: "revokeProxyToken", Summary: "End a proxy token before its expiry, on every replica (resolver: the token that minted it, presenting the proxy token). Recorded, audited in the workspace's trail, announced to every replica", Body: client.RevokeProxyTokenRequest{}, Answers: []Answer{
		proxyRevoked,
		{Status: 400, Description: "bad input: malformed JSON, unknown field"},
		{Status: 403, Description: "not a resolver token"},
		{Status: 404, Description: "not a proxy token this token minted, expired already, or revoked already"},
		{Status: 501, Description: "this replica holds no proxy-token keys"},
	}}, group: groupV1, modes: tokenModes, serve: (*server).revokeProxyToken},
}

const revokeDescription = "With revokeAtProvider=true the key is also revoked at its provider through the scope's admin credential (OpenAI: its service account deleted; Anthropic: set inactive; docs/lifecycle.md): the revocation is recorded first, the key leaves its pool whatever the provider answers, and a provider that fails is asked again until it confirms; the 200 answer says which."

var revokeAtProvider = Param{Name: "revokeAtProvider", In: "query", Description: "true: also revoke the key at its provider (docs/lifecycle.md)", Enum: []string{"true", "false"}}

const deleteDescription = "A plain delete soft-deletes the current version in Vault: the older versions stay there (readable by Vault's operators and restorable by them). With destroy=true every version and the key's metadata are destroyed for good."

var retryAfter = Header{Name: "Retry-After", Description: "seconds"}

// proxyRoutes is the credential proxy, one route per method it forwards.
func proxyRoutes() []route {
	var out []route
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		id := "proxy" + method[:1] + strings.ToLower(method[1:])
		out = append(out, route{Route: Route{Method: method, Path: "/proxy/:provider/*path", ID: id,
			Summary: "The credential proxy (modes all and proxy): forward the call to the provider with the workspace's resolved key added as the provider expects; the caller's credentials (Authorization, x-api-key, x-goog-api-key, api-key, Cookie, ?key=) are removed. The keybroker token (resolver or proxy token) goes where the provider's SDK puts its key. A 401, 403, 402 or 429 before any byte went back is retried once with the next usable key (the first is reported), for bodies up to the retry limit",
			Params: []Param{
				{Name: "path", In: "path", Description: "the provider's API path, under the prefixes it allows (e.g. v1/chat/completions for OpenAI)"},
				{Name: "X-Keybroker-Workspace", In: "header", Description: "the workspace whose key to use: required with a resolver token; with a proxy token, must be its workspace if sent"},
				{Name: "X-Keybroker-Model", In: "header", Description: "the call's model, when the body does not name it"}},
			RawBody: method != http.MethodGet && method != http.MethodDelete,
			Answers: []Answer{
				{Status: 400, Description: "invalid_request or invalid_id: a resolver token without X-Keybroker-Workspace, or an invalid one; malformed_json: a body that is not one JSON value, or names a member twice"},
				{Status: 401, Description: "missing, unknown, revoked or expired token (a proxy token ends with the resolver token that minted it)"},
				{Status: 403, Description: "forbidden (another workspace), provider_not_allowed; endpoint_not_allowed: not one of the provider's inference endpoints (the message names the rule; operators add endpoints with --proxy-allow-endpoint); path_not_allowed: an unclean path (empty or dot segments, ';', escapes of '/', '.', ';', '%' or '\\\\'); header_not_allowed: an Anthropic beta feature outside the reviewed list; model_not_allowed: a model (nested ones too) outside the token's list, or named twice or escaped"},
				{Status: 404, Description: "unknown_provider, or no_key: no key could ever serve"},
				{Status: 408, Description: "body_timeout: the request body did not arrive within 30 s"},
				{Status: 413, Description: "body_too_large"},
				{Status: 429, Description: "rate limited by keybroker (the proxy token's, its resolver token's or its workspace's rate), too_many_calls (calls in flight per token, workspace or replica, or the retry buffer, are at their bound), keys_cooling_down (every key that could serve cools down: Retry-After is the earliest end), or the provider's own 429", Body: NoBody{}, Headers: []Header{retryAfter}},
				{Status: 502, Description: "upstream_unreachable"},
				{Status: 503, Description: "the key could not be read"},
				{Status: 504, Description: "upstream_timeout: the provider did not answer in time"},
				{Status: 0, Description: "the provider's answer, streamed back as it arrives (server-sent events flow event by event), with X-Keybroker-Key-Id, X-Keybroker-Scope and X-Keybroker-Byok", Body: NoBody{}, Headers: []Header{
					{Name: "X-Keybroker-Key-Id", Description: "the key of the pool that served"},
					{Name: "X-Keybroker-Scope", Description: "the scope whose pool served", Enum: []string{"workspace", "organization", "hosted"}},
					{Name: "X-Keybroker-Byok", Description: "true: the customer's own key (not billed by the platform)", Enum: []string{"true", "false"}}}},
			}}, group: groupProxy, modes: proxyModes, needsProxy: true, serve: (*server).proxyCall})
	}
	return out
}

// uiRoutes is the admin web page: each file with GET and HEAD (monitors
// and link checkers ask with HEAD), and two redirects.
func uiRoutes() []route {
	var out []route
	for _, f := range []struct{ path, file, contentType, summary string }{
		{"/ui/", "index.html", "text/html; charset=utf-8", uiSummary},
		{"/ui/app.js", "app.js", "text/javascript; charset=utf-8", uiSummary},
		{"/ui/style.css", "style.css", "text/css; charset=utf-8", uiSummary},
		{"/ui/favicon.svg", "favicon.svg", "image/svg+xml", "The page's icon (SVG)"},
	} {
		serve := uiFile(f.file, f.contentType)
		id := "ui" + strings.NewReplacer("/", "_", ".", "_").Replace(f.path)
		answer := []Answer{{Status: 200, Description: "the asset", Body: Text{}, ContentType: strings.TrimSuffix(f.contentType, "; charset=utf-8")}}
		out = append(out,
			route{Route: Route{Method: "GET", Path: f.path, ID: id, Summary: f.summary, Public: true, Answers: answer}, group: groupUI, modes: adminModes, serve: serve},
			route{Route: Route{Method: "HEAD", Path: f.path, ID: id + "Head", Summary: uiHeadSummary, Public: true, Answers: answer}, group: groupUI, modes: adminModes, serve: serve})
	}
	// Browsers ask for /favicon.ico whatever the page says.
	out = append(out,
		route{Route: Route{Method: "GET", Path: "/favicon.ico", ID: "faviconIco", Summary: "Redirects to /ui/favicon.svg", Public: true, Answers: []Answer{{Status: 301, Description: "to /ui/favicon.svg"}}},
			group: groupPublic, modes: adminModes, needsKeys: true, serve: redirectTo("/ui/favicon.svg")},
		route{Route: Route{Method: "GET", Path: "/ui", ID: "ui_redirect", Summary: "Redirects to /ui/", Public: true, Answers: []Answer{{Status: 301, Description: "to /ui/"}}},
			group: groupPublic, modes: adminModes, needsKeys: true, serve: redirectTo("/ui/")})
	return out
}

func redirectTo(path string) func(*server, *gin.Context) {
	return func(_ *server, c *gin.Context) { c.Redirect(http.StatusMovedPermanently, path) }
}

// allRoutes is the table with the pool routes expanded for each scope,
// the admin page's and the proxy's routes.
func allRoutes() []route {
	var out []route
	for _, r := range routeTable {
		if !strings.HasPrefix(r.Path, scopePrefix) {
			out = append(out, r)
			continue
		}
		for _, sc := range poolScopes {
			e := r
			e.Path = sc.prefix + strings.TrimPrefix(r.Path, scopePrefix)
			e.ID = r.ID + sc.name
			out = append(out, e)
		}
	}
	out = append(out, uiRoutes()...)
	return append(out, proxyRoutes()...)
}

// Routes lists every route keybroker serves in some mode, as the OpenAPI
// document describes them.
func Routes() []Route {
	all := allRoutes()
	out := make([]Route, len(all))
	for i, r := range all {
		out[i] = r.Route
	}
	return out
}

// served says whether a router with these options serves the route.
func (r route) served(opts Options) bool {
	if r.group != groupPublic || r.needsKeys {
		if opts.Keys == nil || opts.Tokens == nil {
			return false
		}
	}
	if r.needsProxyCalls && opts.ProxyCalls == nil || r.needsProxy && opts.Proxy == nil {
		return false
	}
	if r.modes == nil {
		return true
	}
	for _, m := range r.modes {
		if m == opts.Mode {
			return true
		}
	}
	return false
}
