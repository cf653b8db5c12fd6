package handlers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
	"github.com/keybroker/keybroker/internal/runtime/watch"
	"github.com/keybroker/keybroker/providers"
)

// KeyService is what the handlers need of the domain (package broker).
type KeyService interface {
	Providers() *providers.Registry
	ListKeys(ctx context.Context, scope broker.Scope) ([]broker.KeyMeta, error)
	ListPool(ctx context.Context, pool broker.PoolRef) ([]broker.KeyMeta, error)
	GetKey(ctx context.Context, ref broker.KeyRef) (broker.KeyMeta, error)
	AddKey(ctx context.Context, req broker.AddKeyRequest) (broker.SetResult, error)
	PutKey(ctx context.Context, req broker.PutKeyRequest) (broker.SetResult, error)
	UpdateKey(ctx context.Context, req broker.UpdateKeyRequest) (broker.KeyMeta, error)
	DeleteKey(ctx context.Context, req broker.DeleteKeyRequest) error
	Versions(ctx context.Context, ref broker.KeyRef) ([]broker.VersionInfo, error)
	Rollback(ctx context.Context, req broker.RollbackRequest) (broker.SetResult, error)
	PurgeScope(ctx context.Context, actor broker.Actor, scope broker.Scope) (int, error)
	LinkedWorkspaces(ctx context.Context, org string) ([]broker.LinkedWorkspace, error)
	ListScopes(ctx context.Context, kind broker.ScopeKind, query string, after broker.Scope, limit int) ([]broker.Scope, error)
	Audit(ctx context.Context, scope broker.Scope, before int64, limit int) ([]broker.AuditEvent, error)
	AuditAll(ctx context.Context, before int64, limit int) ([]broker.AuditEvent, error)
	QueryAudit(ctx context.Context, q broker.AuditQuery) ([]broker.AuditEvent, error)
	Resolve(ctx context.Context, req broker.ResolveRequest) (broker.Resolution, error)
	// CacheTTL is how long the server caches a key: clients that cache
	// it too keep it no longer.
	CacheTTL() time.Duration
	Report(ctx context.Context, req broker.ReportRequest) (broker.ReportResult, error)
	CheckKey(ctx context.Context, actor broker.Actor, ref broker.KeyRef) (broker.KeyCheck, error)
	GetSettings(ctx context.Context, workspace string) (broker.Settings, error)
	PutSettings(ctx context.Context, req broker.SettingsRequest) (broker.Settings, error)
	Effective(ctx context.Context, workspace string) ([]broker.EffectiveSource, error)
}

var _ KeyService = (*broker.Broker)(nil)

// Mode says which half of the API a server offers.
type Mode string

const (
	// ModeAll serves key management and resolve.
	ModeAll Mode = "all"
	// ModeAdmin serves key management; /v1/resolve does not exist.
	ModeAdmin Mode = "admin"
	// ModeResolver serves /v1/resolve (and /v1/providers) only.
	ModeResolver Mode = "resolver"
	// ModeProxy serves the credential proxy (/proxy/{provider}/...) and
	// POST /v1/proxy-tokens.
	ModeProxy Mode = "proxy"
)

// AccessLog says which requests get an access-log line.
type AccessLog string

const (
	// AccessLogAll logs every request.
	AccessLogAll AccessLog = "all"
	// AccessLogErrors logs only answers of 400 and above: refusals,
	// denials and failures. Successful resolves are counted in the metrics,
	// and every change is in the audit trail.
	AccessLogErrors AccessLog = "errors"
)

// ParseAccessLog checks an access-log setting; empty is AccessLogAll.
func ParseAccessLog(s string) (AccessLog, error) {
	switch a := AccessLog(s); a {
	case "":
		return AccessLogAll, nil
	case AccessLogAll, AccessLogErrors:
		return a, nil
	}
	return "", fmt.Errorf("unknown access log %q (all, errors)", s)
}

// Options are what the router needs from the rest of keybroker.
type Options struct {
	// Logger receives the access log and one line per failed request.
	// Default: slog.Default().
	Logger *slog.Logger
	// Dependencies are checked by /readyz.
	Dependencies []Dependency
	// Keys and Tokens serve the v1 API; without them only the health
	// endpoints and the OpenAPI document are served.
	Keys   KeyService
	Tokens Authenticator
	// Mode selects the routes. Default: ModeAll.
	Mode Mode
	// AccessLog selects the requests that are logged. Default: AccessLogAll.
	AccessLog AccessLog
	// AccessLogOutput, when set, receives the access-log lines directly,
	// formatted by keybroker in the JSON of slog's JSONHandler at a
	// fraction of its cost: set it to what Logger's JSONHandler writes to
	// (attributes added to Logger with With do not reach these lines).
	// Nil: the lines go through Logger.
	AccessLogOutput io.Writer
	// Proxy is the credential proxy (modes all and proxy); ProxyTokens
	// mints and verifies proxy tokens (modes all, resolver and proxy).
	// Nil: the routes answer that this replica does not serve them.
	Proxy       *proxy.Proxy
	ProxyTokens *proxytoken.Signer
	// ProxyCalls reads the records of proxied calls (modes all and
	// admin). Nil: the routes that list them are not served.
	ProxyCalls ProxyCallStore
	// Tracer, when set, gives every request a span (W3C trace context from
	// the caller) and the access log its trace id. Nil: no tracing, no cost.
	Tracer trace.TracerProvider
	// Watch feeds GET /v1/resolve/watch (resolve modes); nil: a hub that
	// nothing publishes to (tests of other routes).
	Watch *watch.Hub
	// WatchHeartbeat is how often an idle watch stream says it is alive.
	// Default: 15 s.
	WatchHeartbeat time.Duration
	// SignIn, when set, signs people in with their identity provider
	// (modes all and admin): /auth/login, /auth/callback, /auth/logout,
	// /auth/cli/session (with a CLI client), and the session cookie (or a
	// CLI session's bearer token) authenticates the API.
	SignIn *SignIn
	// Assertions, when set, verifies platform assertions: a bearer token
	// that is a JWT (not a keybroker token) is checked by it, and the
	// call is the platform's user's (docs/platforms.md).
	// Nil: JWTs are unknown tokens.
	Assertions AssertionVerifier
	// Limiter, when set, rate-limits tokens and failed authentications.
	Limiter *auth.Limiter
	// TrustedProxies may set X-Forwarded-For (CIDRs or IPs). Default: none,
	// so the client address in audit events is the peer's and cannot be
	// forged by a header.
	TrustedProxies []string
}

type server struct {
	log     *slog.Logger
	keys    KeyService
	tokens  Authenticator
	limiter *auth.Limiter
	// signIn signs people in (nil: no sign-in).
	signIn *signInState
	// assertions verifies platform assertions (nil: none accepted).
	assertions AssertionVerifier
	// reports limits each token's reports (the limiter's, or one of its
	// own when the router has none).
	reports *auth.Limiter
	// hub feeds the watch streams; heartbeat paces their keep-alives.
	hub       *watch.Hub
	heartbeat time.Duration
	// ttlSeconds is the server's cache TTL, told to caching clients.
	ttlSeconds int
	// proxy forwards /proxy/ calls; proxyTokens mints and verifies
	// their per-execution tokens.
	proxy       *proxy.Proxy
	proxyTokens *proxytoken.Signer
	proxyCalls  ProxyCallStore
	// health answers /healthz and /readyz.
	health *healthHandler
}

// NewRouter returns keybroker's HTTP handler.
func NewRouter(opts Options) *gin.Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Mode == "" {
		opts.Mode = ModeAll
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Route on the escaped path so that "%2F" in an id stays inside its
	// segment (and is refused as an invalid id) instead of making a new one.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.RemoveExtraSlash = false
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(opts.TrustedProxies); err != nil {
		opts.Logger.Error("ignoring invalid trusted proxies; trusting none", "error", err)
		_ = r.SetTrustedProxies(nil)
	}
	s := &server{log: opts.Logger, keys: opts.Keys, tokens: opts.Tokens, assertions: opts.Assertions, limiter: opts.Limiter, reports: opts.Limiter, hub: opts.Watch, heartbeat: opts.WatchHeartbeat,
		proxy: opts.Proxy, proxyTokens: opts.ProxyTokens, proxyCalls: opts.ProxyCalls}
	if s.hub == nil {
		s.hub = watch.NewHub(0)
	}
	if s.heartbeat <= 0 {
		s.heartbeat = defaultHeartbeat
	}
	if opts.Keys != nil {
		s.ttlSeconds = max(1, int(opts.Keys.CacheTTL().Seconds()))
	}
	if s.reports == nil {
		s.reports = auth.NewLimiter(auth.RateLimits{PerToken: -1, FailedAuthPerAddr: -1}, nil)
	}
	r.Use(requestID())
	if opts.Tracer != nil {
		r.Use(traceRequests(opts.Tracer))
	}
	var lines *accessLineWriter
	if opts.AccessLogOutput != nil {
		lines = &accessLineWriter{out: opts.AccessLogOutput}
	}
	r.Use(recoverPanics(opts.Logger), accessLog(opts.Logger, opts.AccessLog == AccessLogErrors, opts.Tracer != nil, lines))

	s.health = newHealthHandler(opts.Dependencies, opts.Logger)
	var v1 gin.IRoutes
	if opts.Keys != nil && opts.Tokens != nil {
		v1 = r.Group("", limitBody(opts.Logger), s.authenticate)
	}
	ui := r.Group("", uiHeaders)
	for _, rt := range allRoutes() {
		if !rt.served(opts) {
			continue
		}
		serve := rt.serve
		h := func(c *gin.Context) { serve(s, c) }
		switch rt.group {
		case groupV1:
			v1.Handle(rt.Method, rt.Path, h)
		case groupUI:
			ui.Handle(rt.Method, rt.Path, h)
		case groupProxy:
			r.Handle(rt.Method, rt.Path, s.authenticateProxy, h)
		default:
			r.Handle(rt.Method, rt.Path, h)
		}
	}

	if opts.SignIn != nil && v1 != nil && (opts.Mode == ModeAll || opts.Mode == ModeAdmin || opts.Mode == "") {
		s.signIn = newSignInState(opts.SignIn)
		r.GET("/auth/config", s.signInConfig)
		r.GET("/auth/login", uiHeaders, s.signInBegin)
		r.GET("/auth/callback", uiHeaders, s.signInCallback)
		r.POST("/auth/logout", limitBody(opts.Logger), s.authenticate, s.signOut)
		if opts.SignIn.CLI != nil {
			r.POST("/auth/cli/session", limitBody(opts.Logger), s.cliSession)
		}
	}

	r.NoRoute(func(c *gin.Context) {
		renderError(c, opts.Logger, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route"})
	})
	r.NoMethod(func(c *gin.Context) {
		renderError(c, opts.Logger, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed on this route"})
	})
	return r
}
