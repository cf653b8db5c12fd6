package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/assertion"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/buildinfo"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
	"github.com/keybroker/keybroker/internal/runtime/telemetry"
	"github.com/keybroker/keybroker/internal/runtime/tlsfiles"
	"github.com/keybroker/keybroker/internal/runtime/watch"
	"github.com/keybroker/keybroker/internal/runtime/webhook"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// DefaultShutdownGrace is how long in-flight requests get to finish on
// shutdown unless Config.ShutdownGrace says otherwise.
const DefaultShutdownGrace = 20 * time.Second

// usageFlushEvery is how often each replica writes the resolves it
// counted per key (one batch statement).
const usageFlushEvery = 10 * time.Second

// App is one keybroker server, wired and ready to Run.
type App struct {
	cfg      Config
	mode     handlers.Mode
	log      *slog.Logger
	store    *store.Store
	broker   *broker.Broker
	tokens   *auth.Service
	sessions *session.Service // people's sessions; nil without sign-in
	// assertionUses: platform assertions are accepted, their first uses
	// recorded in Postgres (pruned by pruneAssertionUses).
	assertionUses bool
	identities    []*vault.Client // the reader first when held: readiness asks it
	reconciler    *Reconciler     // nil when the mode holds no writer or ReconcileEvery is 0
	prober        *Prober         // nil when HealthProbeEvery is 0 or the mode reads no key (admin)
	leases        *leases         // the leases of the work one replica at a time does
	lifecycle     *Lifecycle      // nil without a writer identity or with --lifecycle-interval=0
	proxyCalls    *proxy.Recorder // the records of proxied calls (modes all and proxy)
	events        *webhook.Sink   // nil without EventsWebhookURL
	handler       http.Handler
	metrics       http.Handler
	tls           *tlsfiles.Loader // nil: plain HTTP
	metricsAddr   atomic.Value     // string, once the metrics listener is up
	// tracer is the OpenTelemetry provider when traces are on (nil: off);
	// stopTracing flushes it.
	tracer trace.TracerProvider
	// watchers are the replica's GET /v1/resolve/watch streams, fed by
	// the invalidation listener.
	watchers    *watch.Hub
	stopTracing func(context.Context) error
	// stopping is set when a shutdown with a delay begins: readiness
	// fails from then on.
	stopping atomic.Bool
}

// New wires a server from cfg. It contacts nothing: PostgreSQL is opened
// lazily and the Vault identities log in when Run starts, so that a server
// comes up (and reports itself unready) while a dependency is down.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mode, _ := cfg.mode()
	accessLog, _ := handlers.ParseAccessLog(cfg.AccessLog)
	if cfg.VaultAuth == VaultAuthToken {
		logger.Warn("using a static Vault token (--vault-auth=token): for development only; both identities are then one token, " +
			"so the writer/reader split does not hold. Production uses approle, kubernetes or token-file")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, store.PasswordFile(cfg.DatabasePasswordFile))
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, mode: mode, log: logger, store: st}
	if a.tracer, a.stopTracing, err = telemetry.Setup(ctx, string(mode)); err != nil {
		st.Close()
		return nil, err
	}
	if cfg.TLSCertFile != "" {
		if a.tls, err = tlsfiles.New(tlsfiles.Config{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
			ClientCAFile: cfg.TLSClientCAFile, Logger: logger}); err != nil {
			st.Close()
			return nil, err
		}
	}
	if err := a.wire(accessLog); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) wire(accessLog handlers.AccessLog) error {
	cfg, logger := a.cfg, a.log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
	vaultMetrics := vault.NewMetrics(reg)
	a.store.RegisterPoolMetrics(reg)

	rowKeys, err := cfg.rowKeys()
	if err != nil {
		return err
	}
	// Resolution ids are signed with the resolver keys (their own
	// subkey), not the fingerprint pepper: an admin replica can forge none.
	resolutionKeys := rowKeys.Resolver.Derive("resolution ids").Secrets()
	bcfg := broker.Config{CacheTTL: cfg.CacheTTL, NegativeCacheTTL: cfg.NegativeCacheTTL, StaleIfError: cfg.StaleIfError,
		MaxEntries: cfg.CacheMaxEntries, MaxNegativeEntries: cfg.CacheMaxNegative, MaxColdReads: cfg.MaxColdReads,
		Logger: logger, Metrics: broker.NewMetrics(reg), Settings: a.store, Usage: a.store, Pools: a.store,
		MaxKeysPerPool: cfg.MaxKeysPerPool, PoolCacheSize: cfg.PoolCacheSize, Health: a.store, Pepper: []byte(cfg.Pepper),
		ExpiryWarning: cfg.ExpiryWarning, RotationGrace: cfg.RotationGrace, RotationClaim: cfg.RotationClaim}
	if links := auth.NewLinkSigner(rowKeys.Admin); links != nil {
		bcfg.Links = links
	}
	if rows := auth.NewLifecycleSigner(rowKeys.Admin); rows != nil {
		bcfg.LifecycleRows = rows
	}
	if len(resolutionKeys) > 0 {
		bcfg.ResolutionKey, bcfg.PreviousResolutionKeys = resolutionKeys[0], resolutionKeys[1:]
	}
	// The one base-URL option: --provider-base-url and
	// KEYBROKER_PROVIDER_<ID>_BASE_URL, for key checks and the proxy alike.
	baseURLs := providers.BaseURLsFromEnv(providers.DefaultRegistry(), os.Getenv, cfg.ProviderBaseURLs)
	// The token services of derived credentials:
	// KEYBROKER_PROVIDER_<ID>_<NAME>_URL.
	if bcfg.MintEndpoints, err = providers.MintEndpointsFromEnv(providers.DefaultRegistry(), os.Environ()); err != nil {
		return err
	}
	bcfg.ExposeLongLived, bcfg.MaxMintsInFlight = cfg.ExposeLongLivedCredentials, cfg.MaxMintsInFlight
	var checker *providers.Checker
	checker, err = providers.NewChecker(providers.CheckerConfig{BaseURLs: baseURLs, Timeout: cfg.ProviderCheckTimeout, MintEndpoints: bcfg.MintEndpoints})
	if err != nil {
		return err
	}
	bcfg.Checker = checker
	if cfg.EventsWebhookURL != "" {
		if a.events, err = webhook.New(webhook.Config{URL: cfg.EventsWebhookURL, Secret: []byte(cfg.EventsWebhookSecret),
			AllowPlaintext: cfg.EventsWebhookAllowPlaintext, Logger: logger, Registerer: reg}); err != nil {
			return err
		}
		if !cfg.EventsWebhookAudit {
			bcfg.Events = a.events // else the audit stream carries them
		}
	}
	// hold builds one identity's client, with its token metrics.
	hold := func(who string, id Identity) (*vault.KV, error) {
		c, err := cfg.vaultClient(who, id, logger, vaultMetrics)
		if err != nil {
			return nil, err
		}
		vault.RegisterTokenMetrics(reg, who, c)
		a.identities = append(a.identities, c)
		return c.KV(cfg.KVMount), nil
	}
	if needsReader(a.mode) {
		reader, err := hold("reader", cfg.Reader)
		if err != nil {
			return err
		}
		bcfg.Reader = reader
	}
	if needsWriter(a.mode) {
		writer, err := hold("writer", cfg.Writer)
		if err != nil {
			return err
		}
		bcfg.Writer, bcfg.Store = writer, a.store
	}
	b, err := broker.New(bcfg)
	if err != nil {
		return err
	}
	a.broker = b
	registerPoolCacheMetrics(reg, b)
	a.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	a.tokens = auth.NewService(a.store, auth.Options{TrustWithoutStore: cfg.TokenOutageGrace, Logger: logger, Keys: rowKeys})
	a.leases = newLeases(a.store, reg, logger)
	if bcfg.Writer != nil && cfg.ReconcileEvery > 0 {
		a.reconciler = &Reconciler{Broker: b, Lease: a.leases.lease(store.LeaseReconciler, false), Every: cfg.ReconcileEvery, Logger: logger}
	}
	if bcfg.Writer != nil && cfg.LifecycleEvery > 0 {
		a.lifecycle = &Lifecycle{Broker: b, Lease: a.leases.lease(store.LeaseLifecycle, false), Every: cfg.LifecycleEvery,
			Rotations: true, Logger: logger}
	}
	if cfg.HealthProbeEvery > 0 && bcfg.Reader != nil {
		// Every replica that reads keys (modes all, resolver, proxy) may
		// probe, one at a time (the prober's lease); an admin replica
		// reads no key.
		a.prober = &Prober{Broker: b, Lease: a.leases.lease(store.LeaseProber, false), Every: cfg.HealthProbeEvery,
			Concurrency: cfg.HealthProbeConcurrency, Logger: logger}
	}
	// Proxy tokens are signed with the resolver keys, which only the
	// replicas that mint and check them hold (never an admin replica).
	var signer *proxytoken.Signer
	if !rowKeys.Resolver.Empty() {
		if signer, err = proxytoken.NewRingSigner(rowKeys.Resolver, nil); err != nil {
			return err
		}
	}
	var fwd *proxy.Proxy
	if a.mode == handlers.ModeAll || a.mode == handlers.ModeProxy {
		a.proxyCalls = proxy.NewRecorder(a.store, time.Second, logger)
		if fwd, err = proxy.New(proxy.Config{Keys: b, Providers: b.Providers(), BaseURLs: baseURLs,
			Recorder: a.proxyCalls, RetryBodyLimit: int64(cfg.ProxyRetryBodyKiB) << 10,
			MaxRequestBytes: int64(cfg.ProxyMaxRequestMiB) << 20, MaxResponseBytes: int64(cfg.ProxyMaxResponseMiB) << 20,
			HeaderTimeout: cfg.ProxyHeaderTimeout, Timeout: cfg.ProxyTimeout, Logger: logger, Registerer: reg,
			AllowEndpoints: cfg.ProxyAllowEndpoints, MaxInFlight: cfg.ProxyMaxInFlight, MaxInFlightPerWorkspace: cfg.ProxyMaxInFlightPerWorkspace,
			MaxInFlightPerToken: cfg.ProxyMaxInFlightPerToken, RetryBufferBytes: int64(cfg.ProxyRetryBufferMiB) << 20}); err != nil {
			return err
		}
	}
	a.watchers = watch.New(watch.Config{PerToken: cfg.WatchStreamsPerToken, PerReplica: cfg.WatchStreamsPerReplica, Registerer: reg})
	signIn, err := a.signIn(cfg, rowKeys.Admin)
	if err != nil {
		return err
	}
	if signIn != nil {
		a.sessions = signIn.Sessions
	}
	var assertions handlers.AssertionVerifier
	if cfg.PlatformsFile != "" && (a.mode == handlers.ModeAll || a.mode == handlers.ModeAdmin) {
		regs, err := assertion.LoadRegistrations(cfg.PlatformsFile)
		if err != nil {
			return err
		}
		// Every admin replica records each assertion's first use in
		// Postgres, so that a replay to another replica is refused.
		v, err := assertion.New(assertion.Config{Audience: cfg.AssertionAudience, Registrations: regs, Uses: a.store})
		if err != nil {
			return err
		}
		assertions = v
		a.assertionUses = true
		logger.Info("platform assertions accepted", "platforms", len(regs), "audience", cfg.AssertionAudience)
	}
	a.handler = handlers.NewRouter(handlers.Options{
		Proxy:           fwd,
		ProxyTokens:     signer,
		ProxyCalls:      a.store,
		Logger:          logger,
		Mode:            a.mode,
		AccessLog:       accessLog,
		AccessLogOutput: cfg.AccessLogOutput,
		Keys:            b,
		Tokens:          a.tokens,
		Assertions:      assertions,
		SignIn:          signIn,
		Limiter:         auth.NewLimiter(cfg.RateLimits, reg),
		TrustedProxies:  cfg.TrustedProxies,
		Dependencies:    a.dependencies(),
		Tracer:          a.tracer,
		Watch:           a.watchers,
	})
	return nil
}

// dependencies are what /readyz checks.
func (a *App) dependencies() []handlers.Dependency {
	return []handlers.Dependency{
		{Name: "vault_reachable", Check: a.identities[0].CheckReachable},
		{Name: "vault_token", Check: func(ctx context.Context) error {
			for _, c := range a.identities {
				if err := c.CheckToken(ctx); err != nil {
					return err
				}
			}
			return nil
		}},
		{Name: "postgres", Check: a.store.Ping},
		// Until the workspace settings are in memory, a resolve that would
		// fall back to a hosted key answers 503: not ready either.
		{Name: "settings_loaded", Check: func(context.Context) error {
			if !a.broker.SettingsLoaded() {
				return errors.New("the workspace settings are not loaded yet (the invalidation listener has not connected)")
			}
			return nil
		}},
		// Once a shutdown begins, the load balancers must take the
		// replica out (it serves until the delay ends).
		{Name: "serving", Check: func(context.Context) error {
			if a.stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		}},
		// Until the pools are in memory, no resolve can choose a key.
		{Name: "pools_loaded", Check: func(context.Context) error {
			if !a.broker.PoolsLoaded() {
				return errors.New("the key pools are not loaded yet (the invalidation listener has not connected)")
			}
			return nil
		}},
	}
}

// Run logs the identities in, starts the background work (invalidation
// listener, reconciler, denial flushing, the metrics listener, pprof) and
// serves the API on ln until ctx is done; then in-flight requests get
// the shutdown grace to finish (watch streams are ended at once: their
// clients reconnect elsewhere) and the Vault tokens keybroker logged in for are
// revoked. It closes the PostgreSQL pool when it returns. Plain HTTP on a
// listener that is not loopback is refused unless the config says TLS ends
// in front (InsecurePlaintext).
func (a *App) Run(ctx context.Context, ln net.Listener) error {
	defer a.store.Close()
	if err := a.cfg.checkListener(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	// The background work (token renewal, the invalidation listener, ...)
	// outlives the stop signal: it keeps the replica exact while it
	// drains, and ends once the HTTP server is down.
	stop := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if a.cfg.PprofAddr != "" {
		if err := servePprof(ctx, a.cfg.PprofAddr, a.log); err != nil {
			return err
		}
	}
	if a.cfg.MetricsAddr != "" {
		if err := a.serveMetrics(ctx); err != nil {
			return err
		}
	}
	for _, c := range a.identities {
		c.Start(ctx)
	}
	// The work under a lease ends before the pool closes, so that its
	// lease is released (another replica takes it at once) rather than
	// left to expire.
	var leased sync.WaitGroup
	defer func() { cancel(); leased.Wait() }()
	if a.prober != nil {
		leased.Go(func() { a.prober.Run(ctx) })
	}
	if a.events != nil {
		go a.events.Run(ctx)
		if a.cfg.EventsWebhookAudit {
			leased.Go(func() { a.streamAudit(ctx) })
		}
	}
	if a.reconciler != nil {
		leased.Go(func() { a.reconciler.Run(ctx) })
	}
	if a.lifecycle != nil {
		leased.Go(func() { a.lifecycle.Run(ctx) })
	}
	go a.listenInvalidations(ctx)
	if a.assertionUses || a.cfg.OIDCCLIClientID != "" {
		go a.pruneAssertionUses(ctx)
	}
	tokensDone, usageDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(tokensDone); a.tokens.Run(ctx) }()
	go func() { defer close(usageDone); a.broker.RunUsageFlusher(ctx, usageFlushEvery) }()

	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	transport := "plain HTTP (loopback)"
	switch {
	case a.tls != nil:
		srv.TLSConfig = a.tls.TLSConfig()
		ln = tls.NewListener(ln, srv.TLSConfig)
		transport = "TLS"
		if a.tls.ClientAuth() {
			transport = "TLS, client certificates required"
		}
	case a.cfg.InsecurePlaintext:
		transport = "plain HTTP (--insecure-plaintext: TLS must end in front of keybroker)"
		a.log.Warn("serving plain HTTP: resolve answers carry plaintext keys; --insecure-plaintext says a mesh or proxy terminates TLS in front")
	}
	vaultClient := a.identities[0]
	a.log.Info("keybroker serving", "addr", ln.Addr().String(), "transport", transport, "mode", string(a.mode),
		"vault", vaultClient.Address(), "vault_transport", vaultClient.Transport(), "vault_auth", a.cfg.VaultAuth,
		"kv_mount", a.cfg.KVMount, "metrics_addr", a.cfg.MetricsAddr, "traces", map[bool]string{true: "on (OTLP)", false: "off"}[a.tracer != nil])

	// Watch streams never end by themselves: at shutdown they are ended
	// so that they do not hold it for the whole grace.
	srv.RegisterOnShutdown(a.watchers.EndAll)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve HTTP: %w", err)
	case <-stop.Done():
		if d := a.cfg.ShutdownDelay; d > 0 {
			// Readiness fails while the load balancers (Kubernetes'
			// endpoints) take the replica out; it still serves meanwhile.
			a.stopping.Store(true)
			a.log.Info("keybroker stopping: not ready, still serving", "delay", d.String())
			time.Sleep(d)
		}
		grace := cmp.Or(a.cfg.ShutdownGrace, DefaultShutdownGrace)
		a.log.Info("keybroker shutting down", "grace", grace.String())
		shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancelShutdown()
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("shut down HTTP server: %w", err)
		}
	}
	cancel()
	<-tokensDone
	<-usageDone
	a.proxyCalls.Close() // the last records of proxied calls
	a.revokeVaultTokens()
	if err := telemetry.Shutdown(a.stopTracing, 5*time.Second); err != nil {
		a.log.Warn("could not flush the last traces", "error", err)
	}
	return serveErr
}

// revokeVaultTokens revokes the tokens this process logged in for: a token
// nobody holds any more should not stay valid until its TTL runs out.
func (a *App) revokeVaultTokens() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range a.identities {
		if err := c.Revoke(ctx); err != nil {
			a.log.Warn("could not revoke a Vault token at shutdown; it expires with its TTL", "error", err)
		}
	}
}

// serveMetrics serves /metrics (Prometheus) on its own listener, apart
// from the API: scraping needs no bearer token, and the API's port exposes
// no process internals.
func (a *App) serveMetrics(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", a.cfg.MetricsAddr, err)
	}
	a.metricsAddr.Store(ln.Addr().String())
	a.log.Info("metrics listener", "addr", ln.Addr().String(), "path", "/metrics")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return nil
}

// MetricsAddr is the metrics listener's address once Run has started it
// (with port 0 in the config, the port chosen).
func (a *App) MetricsAddr() string {
	addr, _ := a.metricsAddr.Load().(string)
	return addr
}

// listenInvalidations applies push invalidation: a key changed, or a token
// revoked, through any replica is forgotten here within moments.
func (a *App) listenInvalidations(ctx context.Context) {
	err := a.store.ListenInvalidations(ctx, store.InvalidationHandler{
		Invalidate: func(inv store.Invalidation) {
			// Any database login may NOTIFY: an announcement is a hint to
			// look, never a fact. A revocation ends watch streams and proxy
			// tokens only once PostgreSQL's rows say so.
			if inv.TokenID != "" {
				a.revokeIfRevoked(ctx, inv.TokenID)
				return
			}
			if inv.SessionID != "" {
				// The session is read again before it is trusted: an
				// ended one is refused at once here too.
				if a.sessions != nil {
					a.sessions.Forget(inv.SessionID)
				}
				return
			}
			if inv.ProxyTokenID != "" {
				lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := a.tokens.LoadProxyTokenRevocations(lctx); err != nil {
					a.log.Warn("could not read the revoked proxy tokens announced; the next reconnect reads them", "error", err)
				}
				return
			}
			// Watchers hear of the change after this replica applied it, so
			// that a client's next resolve here gets the new answer.
			defer a.publish(inv)
			if inv.Settings != "" {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := a.broker.SettingsChanged(sctx, inv.Settings); err != nil {
					// The next reconnect reloads every workspace's settings.
					a.log.Warn("could not reload a workspace's settings announced as changed", "workspace", inv.Settings, "error", err)
				}
				return
			}
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := a.broker.Invalidate(ictx, inv.ForBroker()); err != nil {
				// The next reconnect reloads every pool.
				a.log.Warn("could not reload a pool announced as changed", "error", err)
			}
		},
		Listening: func() {
			defer a.watchers.Publish(watch.Event{Type: watch.TypeFlush})
			a.broker.FlushCache()
			a.tokens.ForgetAll()
			if a.sessions != nil {
				a.sessions.ForgetAll()
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := a.tokens.LoadProxyTokenRevocations(sctx); err != nil {
				a.log.Warn("could not load the revoked proxy tokens after reconnecting; keeping the last known ones", "error", err)
			}
			if err := a.broker.Load(sctx); err != nil {
				a.log.Warn("could not reload the workspace settings and key pools after reconnecting; keeping the last known ones", "error", err)
			}
			a.log.Info("listening for invalidations; caches flushed", "channel", store.InvalidationChannel)
		},
	}, a.log)
	if err != nil {
		a.log.Error("invalidation listener stopped; keys are now invalidated by their TTL only", "error", err)
	}
}

// revokeIfRevoked forgets token id and ends its watch streams when its row
// says it is revoked or expired (or is gone): an announcement alone, which
// any database login can forge, ends nothing — not even what this replica
// remembers of the token (a forgotten token would meet the failed-auth
// limiter again).
func (a *App) revokeIfRevoked(ctx context.Context, id string) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	active, err := a.tokens.Active(lctx, id)
	if err != nil {
		a.log.Warn("could not check a token announced as revoked; its watch streams stay open", "token_id", id, "error", err)
		return
	}
	if !active {
		a.tokens.Forget(id)
		a.watchers.Revoke(id)
	}
}

// auditStreamRetry is how often a replica standing by tries to take the
// audit stream's lease.
const auditStreamRetry = 10 * time.Second

// streamAudit sends the audit trail to the webhook while this replica
// holds the audit stream's lease (store.LeaseAuditStream), from the event
// after the last one delivered (the cursor in the lease's row), trying to
// take the lease every 10 s. Only the admin side's database role may hold
// it (the resolver role of sandbox-facing pods may not): a resolver or
// proxy replica does not stream.
func (a *App) streamAudit(ctx context.Context) {
	if a.mode != handlers.ModeAll && a.mode != handlers.ModeAdmin {
		a.log.Warn("--events-webhook-audit: the audit stream runs on admin replicas (modes admin and all), whose database role alone "+
			"may hold its lease; this replica does not stream", "mode", string(a.mode))
		return
	}
	lease := a.leases.lease(store.LeaseAuditStream, true)
	cur := store.LeaseCursor{Store: a.store, Lease: store.LeaseAuditStream, Holder: lease.Holder}
	for ctx.Err() == nil {
		err := lease.Run(ctx, func(ctx context.Context) error {
			a.log.Info("streaming the audit trail to the webhook", "holder", lease.Holder)
			return a.events.StreamAudit(ctx, a.store, cur, time.Second)
		})
		if err != nil && !errors.Is(err, store.ErrLease) && ctx.Err() == nil {
			a.log.Warn("audit stream stopped; retrying", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(auditStreamRetry):
		}
	}
}

// buildInfoGauge is keybroker_build_info{version,commit,goversion} 1, the
// Prometheus convention for telling which build a target runs.
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "keybroker_build_info",
		Help:        "Which keybroker build this is: always 1, with the version, commit and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// publish tells the watch streams of a change announced on PostgreSQL.
func (a *App) publish(inv store.Invalidation) {
	if inv.Settings != "" {
		a.watchers.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: string(broker.ScopeWorkspace), ScopeID: inv.Settings, Workspace: inv.Settings})
		return
	}
	b := inv.ForBroker()
	a.watchers.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: string(b.ScopeKind), ScopeID: b.ScopeID, Provider: b.Provider, KeyID: b.KeyID})
}

// Watchers is the replica's watch hub (tests count the streams).
func (a *App) Watchers() *watch.Hub { return a.watchers }
