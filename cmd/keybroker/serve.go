package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// serverConfig is what `keybroker serve` runs with. Every field has an
// environment variable and a flag (see newServeCommand); secrets come from
// the environment only, so that they never show in a process listing.
type serverConfig struct {
	ListenAddr       string
	Mode             string
	DatabaseURL      string
	VaultAddr        string
	VaultNamespace   string
	VaultCACert      string
	VaultAuth        string
	AuthNamespace    string
	AppRoleMount     string
	AppRoleWrapped   bool
	Writer, Reader   identityConfig
	KubernetesMount  string
	KubernetesJWT    string
	KVMount          string
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	StaleIfError     time.Duration
	ReconcileEvery   time.Duration
	PprofAddr        string
	AccessLog        string

	// From the environment only.
	VaultToken string
	Pepper     string
}

func (cfg *serverConfig) bindFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&cfg.ListenAddr, "listen-addr", envOr("KEYBROKER_LISTEN_ADDR", "127.0.0.1:8080"), "HTTP listen address (KEYBROKER_LISTEN_ADDR)")
	f.StringVar(&cfg.Mode, "mode", envOr("KEYBROKER_MODE", "all"), "all, admin (key management, no resolve) or resolver (resolve only) (KEYBROKER_MODE)")
	f.StringVar(&cfg.DatabaseURL, "database-url", envOr("DATABASE_URL", ""), "PostgreSQL connection string (DATABASE_URL)")
	f.StringVar(&cfg.VaultAddr, "vault-addr", envOr("VAULT_ADDR", ""), "Vault address (VAULT_ADDR)")
	f.StringVar(&cfg.VaultNamespace, "vault-namespace", envOr("VAULT_NAMESPACE", ""), "Vault Enterprise namespace (VAULT_NAMESPACE)")
	f.StringVar(&cfg.VaultCACert, "vault-cacert", envOr("VAULT_CACERT", ""), "PEM file of CAs to trust for Vault (VAULT_CACERT)")
	f.StringVar(&cfg.VaultAuth, "vault-auth", envOr("KEYBROKER_VAULT_AUTH", "token"), "Vault auth method: approle, kubernetes, token-file, or token (static VAULT_TOKEN, dev only) (KEYBROKER_VAULT_AUTH)")
	f.StringVar(&cfg.AuthNamespace, "vault-auth-namespace", envOr("KEYBROKER_VAULT_AUTH_NAMESPACE", ""), "Vault Enterprise namespace of the auth method, when not the secrets' (KEYBROKER_VAULT_AUTH_NAMESPACE)")
	f.StringVar(&cfg.AppRoleMount, "approle-mount", envOr("KEYBROKER_APPROLE_MOUNT", "approle"), "AppRole auth mount (KEYBROKER_APPROLE_MOUNT)")
	f.BoolVar(&cfg.AppRoleWrapped, "approle-secret-id-wrapped", envOr("KEYBROKER_APPROLE_SECRET_ID_WRAPPED", "") == "true", "the secret id files hold response-wrapping tokens (KEYBROKER_APPROLE_SECRET_ID_WRAPPED=true)")
	f.StringVar(&cfg.KubernetesMount, "kubernetes-mount", envOr("KEYBROKER_KUBERNETES_MOUNT", "kubernetes"), "Kubernetes auth mount (KEYBROKER_KUBERNETES_MOUNT)")
	f.StringVar(&cfg.KubernetesJWT, "kubernetes-jwt-path", envOr("KEYBROKER_KUBERNETES_JWT_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token"), "service-account token file, re-read at every login (KEYBROKER_KUBERNETES_JWT_PATH)")
	cfg.Writer.bindFlags(cmd, "writer")
	cfg.Reader.bindFlags(cmd, "reader")
	f.StringVar(&cfg.KVMount, "kv-mount", envOr("KEYBROKER_KV_MOUNT", "byok"), "KV v2 mount of the keys (KEYBROKER_KV_MOUNT)")
	f.DurationVar(&cfg.CacheTTL, "cache-ttl", envDuration("KEYBROKER_CACHE_TTL", 30*time.Second), "how long a resolved key is served from memory (KEYBROKER_CACHE_TTL)")
	f.DurationVar(&cfg.ReconcileEvery, "reconcile-interval", envDuration("KEYBROKER_RECONCILE_INTERVAL", 5*time.Minute), "how often one replica reconciles Vault and PostgreSQL; 0 is never (KEYBROKER_RECONCILE_INTERVAL)")
	f.DurationVar(&cfg.StaleIfError, "stale-if-error", envDuration("KEYBROKER_STALE_IF_ERROR", 0), "serve a cached key this long past its TTL while Vault is unreachable; 0 is off (KEYBROKER_STALE_IF_ERROR)")
	f.StringVar(&cfg.AccessLog, "access-log", envOr("KEYBROKER_ACCESS_LOG", "all"), "which requests get an access-log line: all, or errors (answers of 400 and above) (KEYBROKER_ACCESS_LOG)")
	f.StringVar(&cfg.PprofAddr, "pprof-addr", envOr("KEYBROKER_PPROF_ADDR", ""), "serve Go's profiler (/debug/pprof/) on this loopback address; off when empty (KEYBROKER_PPROF_ADDR)")
	f.DurationVar(&cfg.NegativeCacheTTL, "negative-cache-ttl", envDuration("KEYBROKER_NEGATIVE_CACHE_TTL", 5*time.Second), `how long "no key" is remembered (KEYBROKER_NEGATIVE_CACHE_TTL)`)
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "keybroker: ignoring %s=%q: not a duration (e.g. 30s)\n", name, v)
	}
	return def
}

func newServeCommand() *cobra.Command {
	var cfg serverConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve keybroker's HTTP API",
		Long: `Serve keybroker's HTTP API.

Every flag can also be set by the environment variable named in its help.
Secrets are read from the environment only, never from flags:
  VAULT_TOKEN                     static Vault token (with --vault-auth=token, dev only)
  KEYBROKER_FINGERPRINT_PEPPER    secret for key fingerprints (required, 16+ characters)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.VaultToken = os.Getenv("VAULT_TOKEN")
			cfg.Pepper = os.Getenv("KEYBROKER_FINGERPRINT_PEPPER")
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			ln, err := net.Listen("tcp", cfg.ListenAddr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
			}
			return runServer(cmd.Context(), cfg, ln, logger)
		},
	}
	cfg.bindFlags(cmd)
	return cmd
}

// shutdownGrace is how long in-flight requests get to finish on shutdown.
const shutdownGrace = 20 * time.Second

// identityConfig is how one of keybroker's two Vault identities (writer,
// reader) logs in; which fields count depends on --vault-auth.
type identityConfig struct {
	RoleName       string // AppRole role name (checked against wrapping tokens) and Kubernetes role
	RoleID         string // AppRole
	SecretIDFile   string // AppRole: file holding the secret id (or its wrapping token)
	KubernetesRole string // Kubernetes
	TokenFile      string // token-file: the Vault Agent/Proxy sink
}

func (id *identityConfig) bindFlags(cmd *cobra.Command, who string) {
	f, up := cmd.Flags(), strings.ToUpper(who)
	f.StringVar(&id.RoleName, who+"-role-name", envOr("KEYBROKER_"+up+"_ROLE_NAME", "keybroker-"+who), "AppRole role name of the "+who+" identity (KEYBROKER_"+up+"_ROLE_NAME)")
	f.StringVar(&id.RoleID, who+"-role-id", envOr("KEYBROKER_"+up+"_ROLE_ID", ""), "AppRole role id of the "+who+" identity (KEYBROKER_"+up+"_ROLE_ID)")
	f.StringVar(&id.SecretIDFile, who+"-secret-id-file", envOr("KEYBROKER_"+up+"_SECRET_ID_FILE", ""), "file holding the "+who+"'s AppRole secret id (KEYBROKER_"+up+"_SECRET_ID_FILE)")
	f.StringVar(&id.KubernetesRole, who+"-kubernetes-role", envOr("KEYBROKER_"+up+"_KUBERNETES_ROLE", "keybroker-"+who), "Vault Kubernetes role of the "+who+" identity (KEYBROKER_"+up+"_KUBERNETES_ROLE)")
	f.StringVar(&id.TokenFile, who+"-token-file", envOr("KEYBROKER_"+up+"_TOKEN_FILE", ""), "Vault Agent token sink file of the "+who+" identity (KEYBROKER_"+up+"_TOKEN_FILE)")
}

// vaultClient builds the Vault client of one identity.
func (cfg serverConfig) vaultClient(who string, id identityConfig, logger *slog.Logger, metrics *vault.Metrics) (*vault.Client, error) {
	vc := vault.Config{Address: cfg.VaultAddr, Namespace: cfg.VaultNamespace, AuthNamespace: cfg.AuthNamespace,
		CACert: cfg.VaultCACert, Logger: logger.With("identity", who), Metrics: metrics}
	var err error
	switch cfg.VaultAuth {
	case "token":
		if cfg.VaultToken == "" {
			return nil, errors.New("--vault-auth=token needs VAULT_TOKEN")
		}
		vc.Token = cfg.VaultToken
	case "approle":
		vc.Auth, err = vault.AppRole(vault.AppRoleConfig{MountPath: cfg.AppRoleMount, RoleID: id.RoleID, RoleName: id.RoleName,
			SecretIDFile: id.SecretIDFile, Wrapped: cfg.AppRoleWrapped, Logger: logger})
	case "kubernetes":
		vc.Auth, err = vault.Kubernetes(vault.KubernetesConfig{MountPath: cfg.KubernetesMount, Role: id.KubernetesRole, JWTPath: cfg.KubernetesJWT})
	case "token-file":
		vc.Auth, err = vault.TokenFile(id.TokenFile)
	default:
		return nil, fmt.Errorf("unknown --vault-auth %q (approle, kubernetes, token-file, token)", cfg.VaultAuth)
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s identity: %w", who, err)
	}
	return vault.New(vc)
}

// runServer serves on ln until ctx is done, then shuts down gracefully:
// in-flight requests get shutdownGrace to finish.
func runServer(ctx context.Context, cfg serverConfig, ln net.Listener, logger *slog.Logger) error {
	mode := handlers.Mode(cfg.Mode)
	if mode != handlers.ModeAll && mode != handlers.ModeAdmin && mode != handlers.ModeResolver {
		return fmt.Errorf("unknown --mode %q (all, admin, resolver)", cfg.Mode)
	}
	accessLog, err := handlers.ParseAccessLog(cfg.AccessLog)
	if err != nil {
		return fmt.Errorf("--access-log: %w", err)
	}
	if cfg.DatabaseURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	if mode != handlers.ModeResolver && len(cfg.Pepper) < 16 {
		return errors.New("KEYBROKER_FINGERPRINT_PEPPER must be set to a secret of at least 16 characters")
	}
	if cfg.VaultAuth == "token" {
		logger.Warn("using a static Vault token: for development only; production uses approle, kubernetes or token-file")
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()

	if cfg.PprofAddr != "" {
		if err := servePprof(ctx, cfg.PprofAddr, logger); err != nil {
			return err
		}
	}

	// Each mode holds only the Vault identities it needs: admin the writer
	// (which cannot read keys), resolver the reader, all both.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	vaultMetrics := vault.NewMetrics(reg)
	st.RegisterPoolMetrics(reg)
	bcfg := broker.Config{CacheTTL: cfg.CacheTTL, NegativeCacheTTL: cfg.NegativeCacheTTL, StaleIfError: cfg.StaleIfError,
		Logger: logger, Metrics: broker.NewMetrics(reg), AfterVaultWrite: afterVaultWrite}
	var identities []*vault.Client
	if mode != handlers.ModeAdmin {
		reader, err := cfg.vaultClient("reader", cfg.Reader, logger, vaultMetrics)
		if err != nil {
			return err
		}
		vault.RegisterTokenMetrics(reg, "reader", reader)
		reader.Start(ctx)
		identities = append(identities, reader)
		bcfg.Reader = reader.KV(cfg.KVMount)
	}
	if mode != handlers.ModeResolver {
		writer, err := cfg.vaultClient("writer", cfg.Writer, logger, vaultMetrics)
		if err != nil {
			return err
		}
		vault.RegisterTokenMetrics(reg, "writer", writer)
		writer.Start(ctx)
		identities = append(identities, writer)
		bcfg.Writer, bcfg.Store, bcfg.Pepper = writer.KV(cfg.KVMount), st, []byte(cfg.Pepper)
	}
	b, err := broker.New(bcfg)
	if err != nil {
		return err
	}
	if bcfg.Writer != nil && cfg.ReconcileEvery > 0 {
		go reconcileLoop(ctx, b, st, cfg.ReconcileEvery, logger)
	}
	tokens := auth.NewService(st, 0)
	// Push invalidation: a key changed, or a token revoked, through any
	// replica is forgotten here within moments.
	go func() {
		err := st.ListenInvalidations(ctx, store.InvalidationHandler{
			Invalidate: func(inv store.Invalidation) {
				if inv.TokenID != "" {
					tokens.Forget(inv.TokenID)
					return
				}
				b.Invalidate(inv)
			},
			Listening: func() {
				b.FlushCache()
				tokens.ForgetAll()
				logger.Info("listening for invalidations; caches flushed", "channel", store.InvalidationChannel)
			},
		}, logger)
		if err != nil {
			logger.Error("invalidation listener stopped; keys are now invalidated by their TTL only", "error", err)
		}
	}()
	router := handlers.NewRouter(handlers.Options{
		Logger:    logger,
		Mode:      mode,
		AccessLog: accessLog,
		Keys:      b,
		Tokens:    tokens,
		Metrics:   promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Dependencies: []handlers.Dependency{
			{Name: "vault_reachable", Check: identities[0].CheckReachable},
			{Name: "vault_token", Check: func(ctx context.Context) error {
				for _, c := range identities {
					if err := c.CheckToken(ctx); err != nil {
						return err
					}
				}
				return nil
			}},
			{Name: "postgres", Check: st.Ping},
		},
	})
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("keybroker serving", "addr", ln.Addr().String(), "mode", string(mode), "vault", identities[0].Address(),
		"vault_auth", cfg.VaultAuth, "kv_mount", cfg.KVMount)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	logger.Info("keybroker shutting down", "grace", shutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down HTTP server: %w", err)
	}
	return nil
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// afterVaultWrite is nil in production; the fault tests of this package set
// it to crash the process between a Vault write and its metadata commit.
var afterVaultWrite func()

// reconcileLockKey is the PostgreSQL advisory lock that makes one replica
// at a time reconcile.
const reconcileLockKey = 0x6b62726563 // "kbrec"

// pendingGrace leaves in-flight writes alone: only changes pending for
// longer than this are repaired.
const pendingGrace = time.Minute

// reconcileLoop runs the reconciler every interval (jittered) on whichever
// replica takes the lock.
func reconcileLoop(ctx context.Context, b *broker.Broker, st *store.Store, every time.Duration, logger *slog.Logger) {
	for {
		wait := every/2 + time.Duration(mrand.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := st.WithLock(ctx, reconcileLockKey, func(ctx context.Context) error {
			rep, err := b.Reconcile(ctx, pendingGrace)
			logger.Info("reconcile run", "completed", rep.Completed, "aborted", rep.Aborted, "repaired", rep.Repaired,
				"unrepaired", len(rep.Unrepaired), "failed", rep.Failed)
			return err
		})
		if err != nil && !errors.Is(err, store.ErrLocked) && ctx.Err() == nil {
			logger.Warn("reconcile run failed", "error", err)
		}
	}
}
