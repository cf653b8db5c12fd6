package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/app"
	"github.com/keybroker/keybroker/internal/runtime/logbuf"
)

// serveFlags binds the flags of `keybroker serve` (and of reconcile, which
// takes the same Vault and database settings) to cfg.
func serveFlags(cmd *cobra.Command, cfg *app.Config) {
	f := flagsOf(cmd)
	f.String(&cfg.Mode, "mode", "KEYBROKER_MODE", "all", "all, admin (key management, no resolve), resolver (resolve only) or proxy (the credential proxy)")
	databaseFlagsInto(f, &cfg.DatabaseURL, &cfg.DatabasePasswordFile)
	f.String(&cfg.VaultAddr, "vault-addr", "VAULT_ADDR", "", "Vault address")
	f.String(&cfg.VaultNamespace, "vault-namespace", "VAULT_NAMESPACE", "", "Vault Enterprise namespace")
	f.String(&cfg.VaultCACert, "vault-cacert", "VAULT_CACERT", "", "PEM file of CAs to trust for Vault")
	f.String(&cfg.VaultAuth, "vault-auth", "KEYBROKER_VAULT_AUTH", "", "Vault auth method (required): approle, kubernetes, token-file, or token (static VAULT_TOKEN, development only)")
	f.Bool(&cfg.VaultAllowInsecureTLS, "vault-allow-insecure-tls", "KEYBROKER_VAULT_ALLOW_INSECURE_TLS", false, "let VAULT_SKIP_VERIFY turn off verification of Vault's certificate (refused otherwise)")
	f.Bool(&cfg.VaultAllowPlaintext, "vault-allow-plaintext", "KEYBROKER_VAULT_ALLOW_PLAINTEXT", false, "allow an http:// Vault address that is not loopback (refused otherwise)")
	f.String(&cfg.AuthNamespace, "vault-auth-namespace", "KEYBROKER_VAULT_AUTH_NAMESPACE", "", "Vault Enterprise namespace of the auth method, when not the secrets'")
	f.String(&cfg.AppRoleMount, "approle-mount", "KEYBROKER_APPROLE_MOUNT", "approle", "AppRole auth mount")
	f.Bool(&cfg.AppRoleWrapped, "approle-secret-id-wrapped", "KEYBROKER_APPROLE_SECRET_ID_WRAPPED", false, "the secret id files hold response-wrapping tokens")
	f.String(&cfg.KubernetesMount, "kubernetes-mount", "KEYBROKER_KUBERNETES_MOUNT", "kubernetes", "Kubernetes auth mount")
	identityFlags(f, &cfg.Writer, "writer")
	identityFlags(f, &cfg.Reader, "reader")
	f.String(&cfg.KVMount, "kv-mount", "KEYBROKER_KV_MOUNT", "byok", "KV v2 mount of the keys")
	f.Duration(&cfg.CacheTTL, "cache-ttl", "KEYBROKER_CACHE_TTL", 30*time.Second, "how long a resolved key is served from memory")
	f.Duration(&cfg.NegativeCacheTTL, "negative-cache-ttl", "KEYBROKER_NEGATIVE_CACHE_TTL", 5*time.Second, `how long "no key" is remembered`)
	f.Int(&cfg.ProxyRetryBodyKiB, "proxy-retry-body-kib", "KEYBROKER_PROXY_RETRY_BODY_KIB", 1024,
		"the credential proxy keeps request bodies up to this size (KiB) to retry a refused call with the next key")
	f.Int(&cfg.ProxyMaxRequestMiB, "proxy-max-request-mib", "KEYBROKER_PROXY_MAX_REQUEST_MIB", 32, "largest request body the credential proxy forwards (MiB)")
	f.Int(&cfg.ProxyMaxResponseMiB, "proxy-max-response-mib", "KEYBROKER_PROXY_MAX_RESPONSE_MIB", 256, "largest answer the credential proxy streams back (MiB); a larger one is cut")
	f.Duration(&cfg.ProxyHeaderTimeout, "proxy-header-timeout", "KEYBROKER_PROXY_HEADER_TIMEOUT", 2*time.Minute, "how long the credential proxy waits for a provider's response headers")
	f.Duration(&cfg.ProxyTimeout, "proxy-timeout", "KEYBROKER_PROXY_TIMEOUT", 15*time.Minute, "how long one proxied call may take, its streamed answer included")
	f.Strings(&cfg.ProxyAllowEndpoints, "proxy-allow-endpoint", "KEYBROKER_PROXY_ALLOW_ENDPOINTS",
		"add an endpoint the credential proxy forwards to a provider besides its inference endpoints, provider=METHOD /path, repeatable (e.g. openai=POST /v1/audio/transcriptions)")
	f.Int(&cfg.ProxyMaxInFlight, "proxy-max-in-flight", "KEYBROKER_PROXY_MAX_IN_FLIGHT", 512, "calls the credential proxy forwards at once on this replica; past it, 429")
	f.Int(&cfg.ProxyMaxInFlightPerWorkspace, "proxy-max-in-flight-per-workspace", "KEYBROKER_PROXY_MAX_IN_FLIGHT_PER_WORKSPACE", 64, "proxied calls of one workspace in flight at once on this replica; past it, 429")
	f.Int(&cfg.ProxyMaxInFlightPerToken, "proxy-max-in-flight-per-token", "KEYBROKER_PROXY_MAX_IN_FLIGHT_PER_TOKEN", 16, "proxied calls of one proxy token in flight at once on this replica; past it, 429")
	f.Int(&cfg.ProxyRetryBufferMiB, "proxy-retry-buffer-mib", "KEYBROKER_PROXY_RETRY_BUFFER_MIB", 128, "request bodies the credential proxy keeps for retries, all calls together (MiB); a call whose body would pass it gets 429")
	f.Float64(&cfg.RateLimits.PerWorkspace, "rate-limit-per-workspace", "KEYBROKER_RATE_LIMIT_PER_WORKSPACE", 100, "sustained proxied calls per second of one workspace, whatever token makes them (negative: off)")
	f.Int(&cfg.RateLimits.PerWorkspaceBurst, "rate-limit-workspace-burst", "KEYBROKER_RATE_LIMIT_WORKSPACE_BURST", 200, "proxied calls one workspace may make at once above its rate")
	f.Float64(&cfg.RateLimits.MintsPerToken, "rate-limit-mints", "KEYBROKER_RATE_LIMIT_MINTS", 20, "sustained proxy-token mints per second of one resolver token (negative: off)")
	f.Int(&cfg.RateLimits.MintsBurst, "rate-limit-mints-burst", "KEYBROKER_RATE_LIMIT_MINTS_BURST", 100, "proxy tokens one resolver token may mint at once above its rate")
	f.Duration(&cfg.ShutdownGrace, "shutdown-grace", "KEYBROKER_SHUTDOWN_GRACE", app.DefaultShutdownGrace,
		"how long in-flight requests get to finish at shutdown (SIGTERM); a proxied stream longer than it is cut")
	f.Duration(&cfg.ShutdownDelay, "shutdown-delay", "KEYBROKER_SHUTDOWN_DELAY", 0,
		"at shutdown, keep serving this long with /readyz failing, before the grace: the time load balancers take to stop sending requests")
	f.Duration(&cfg.StaleIfError, "stale-if-error", "KEYBROKER_STALE_IF_ERROR", 0, "serve a cached key this long past its TTL while Vault is unreachable; 0 is off")
	f.Int(&cfg.CacheMaxEntries, "cache-max-entries", "KEYBROKER_CACHE_MAX_ENTRIES", 100000, "keys held in memory at most; past it, new keys are served uncached")
	f.Int(&cfg.CacheMaxNegative, "cache-max-negative", "KEYBROKER_CACHE_MAX_NEGATIVE", 10000, `"no key" answers held at most (least recently used go first)`)
	f.Int(&cfg.MaxColdReads, "max-cold-reads", "KEYBROKER_MAX_COLD_READS", 32, "Vault reads of cache misses in flight at once")
	f.Int(&cfg.MaxKeysPerPool, "max-keys-per-pool", "KEYBROKER_MAX_KEYS_PER_POOL", 10, "keys a pool (one scope's keys for one provider) may hold")
	f.Int(&cfg.PoolCacheSize, "pool-cache-size", "KEYBROKER_POOL_CACHE_SIZE", broker.DefaultPoolCacheSize,
		"pools a replica holds in memory: each is read from PostgreSQL when first needed, kept exact by push invalidation, and the least recently used beyond this forgotten (docs/benchmarks.md)")
	f.Duration(&cfg.ReconcileEvery, "reconcile-interval", "KEYBROKER_RECONCILE_INTERVAL", 5*time.Minute, "how often one replica reconciles Vault and PostgreSQL; 0 is never")
	f.String(&cfg.AccessLog, "access-log", "KEYBROKER_ACCESS_LOG", "all", "which requests get an access-log line: all, or errors (answers of 400 and above)")
	f.String(&cfg.PprofAddr, "pprof-addr", "KEYBROKER_PPROF_ADDR", "", "serve Go's profiler (/debug/pprof/) on this loopback address; off when empty")
	f.Duration(&cfg.TokenOutageGrace, "token-outage-grace", "KEYBROKER_TOKEN_OUTAGE_GRACE", 5*time.Minute, "while PostgreSQL is down, accept tokens validated this recently (a token revoked meanwhile works that long); negative: none")
	f.Float64(&cfg.RateLimits.PerToken, "rate-limit-per-token", "KEYBROKER_RATE_LIMIT_PER_TOKEN", 500, "sustained requests per second of one token (negative: off)")
	f.Int(&cfg.RateLimits.PerTokenBurst, "rate-limit-burst", "KEYBROKER_RATE_LIMIT_BURST", 1000, "requests one token may send at once above its rate")
	f.Float64(&cfg.RateLimits.FailedAuthPerAddr, "rate-limit-failed-auth", "KEYBROKER_RATE_LIMIT_FAILED_AUTH", 5, "sustained failed authentications per second from one client address (negative: off)")
	f.Int(&cfg.RateLimits.FailedAuthBurst, "rate-limit-failed-auth-burst", "KEYBROKER_RATE_LIMIT_FAILED_AUTH_BURST", 20, "failed authentications one address may make at once above its rate")
	f.Float64(&cfg.RateLimits.ReportsPerToken, "rate-limit-reports", "KEYBROKER_RATE_LIMIT_REPORTS", 20, "sustained /v1/resolve/report calls per second of one token (negative: off)")
	f.Int(&cfg.RateLimits.ReportsBurst, "rate-limit-reports-burst", "KEYBROKER_RATE_LIMIT_REPORTS_BURST", 100, "reports one token may send at once above its rate")
	f.String(&cfg.TLSCertFile, "tls-cert-file", "KEYBROKER_TLS_CERT_FILE", "", "PEM certificate (chain) of the API listener; with --tls-key-file, serve TLS 1.2+ (re-read when the file changes)")
	f.String(&cfg.TLSKeyFile, "tls-key-file", "KEYBROKER_TLS_KEY_FILE", "", "PEM private key of the API listener")
	f.String(&cfg.TLSClientCAFile, "tls-client-ca-file", "KEYBROKER_TLS_CLIENT_CA_FILE", "", "PEM CAs; when set, every client must present a certificate they signed (mutual TLS)")
	f.Bool(&cfg.InsecurePlaintext, "insecure-plaintext", "KEYBROKER_INSECURE_PLAINTEXT", false, "serve plain HTTP on a non-loopback address: a mesh or proxy in front terminates TLS")
	f.String(&cfg.MetricsAddr, "metrics-addr", "KEYBROKER_METRICS_ADDR", "127.0.0.1:9464", "listener of /metrics (Prometheus), apart from the API; empty: off")
	f.fs.StringToStringVar(&cfg.ProviderBaseURLs, "provider-base-url", nil,
		"replace a provider's API base URL for key checks and the credential proxy, id=url, repeatable: a stand-in or an egress proxy (KEYBROKER_PROVIDER_<ID>_BASE_URL per provider)")
	f.String(&cfg.OIDCIssuer, "oidc-issuer", "KEYBROKER_OIDC_ISSUER", "",
		"sign people in with this OpenID Connect provider (its issuer URL); with --oidc-client-id, --oidc-redirect-url, --oidc-role-map and KEYBROKER_OIDC_CLIENT_SECRET (docs/identity.md)")
	f.String(&cfg.OIDCClientID, "oidc-client-id", "KEYBROKER_OIDC_CLIENT_ID", "", "keybroker's client id at the OpenID Connect provider")
	f.String(&cfg.OIDCRedirectURL, "oidc-redirect-url", "KEYBROKER_OIDC_REDIRECT_URL", "",
		"keybroker's sign-in callback as registered at the provider: https://HOST/auth/callback (http only on loopback)")
	f.String(&cfg.OIDCCLIClientID, "oidc-cli-client-id", "KEYBROKER_OIDC_CLI_CLIENT_ID", "",
		"the public client (no secret, loopback redirect http://127.0.0.1/callback) of keybroker login at the same provider; empty: the CLI does not sign in (docs/identity.md)")
	f.Bool(&cfg.OIDCCLIDeviceGrant, "oidc-cli-device-grant", "KEYBROKER_OIDC_CLI_DEVICE_GRANT", false,
		"accept keybroker login's device authorization grant (ID tokens without a nonce) where the provider offers it; off: the loopback redirect only (docs/identity.md)")
	f.String(&cfg.OIDCRoleMap, "oidc-role-map", "KEYBROKER_OIDC_ROLE_MAP", "", "the role mapping file: which groups or claims give which role (docs/identity.md)")
	f.String(&cfg.PlatformsFile, "platforms-file", "KEYBROKER_PLATFORMS_FILE", "",
		"YAML file of the platforms that may call the admin API for their users with signed assertions (docs/platforms.md); empty: none")
	f.String(&cfg.AssertionAudience, "assertion-audience", "KEYBROKER_ASSERTION_AUDIENCE", "keybroker", "the audience (aud) a platform's assertions must name")
	f.Strings(&cfg.ExposeLongLivedCredentials, "expose-long-lived-credentials", "KEYBROKER_EXPOSE_LONG_LIVED_CREDENTIALS",
		"providers (ids, comma-separated) whose long-lived credential resolve hands out instead of a short-lived one minted from it; none by default (docs/credentials.md)")
	f.Int(&cfg.MaxMintsInFlight, "max-mints-in-flight", "KEYBROKER_MAX_MINTS_IN_FLIGHT", 16,
		"short-lived credentials minted at once on this replica (token services at KEYBROKER_PROVIDER_<ID>_<NAME>_URL); past it, resolve answers 503")
	f.Duration(&cfg.ProviderCheckTimeout, "provider-check-timeout", "KEYBROKER_PROVIDER_CHECK_TIMEOUT", 10*time.Second, "deadline of one key check with its provider")
	f.Duration(&cfg.HealthProbeEvery, "health-probe-interval", "KEYBROKER_HEALTH_PROBE_INTERVAL", 10*time.Minute, "re-test failing keys this often on one replica of those that read keys (modes all, resolver, proxy); 0 is off")
	f.Int(&cfg.HealthProbeConcurrency, "health-probe-concurrency", "KEYBROKER_HEALTH_PROBE_CONCURRENCY", 4, "keys the prober tests at once")
	f.Duration(&cfg.ExpiryWarning, "expiry-warning", "KEYBROKER_EXPIRY_WARNING", 14*24*time.Hour,
		"a key is \"expiring\" this long before its expiresAt (docs/lifecycle.md); the key.expiring events go out 14, 7 and 1 days before")
	f.Duration(&cfg.RotationGrace, "rotation-grace", "KEYBROKER_ROTATION_GRACE", time.Hour,
		"how long a rotated key lives at its provider after its successor serves (calls in flight finish), unless the rotation says otherwise")
	f.Duration(&cfg.RotationClaim, "rotation-claim", "KEYBROKER_ROTATION_CLAIM", 2*time.Minute,
		"how long a replica holds a running rotation between two steps: after a crash, another replica of mode all resumes it that much later")
	f.Duration(&cfg.LifecycleEvery, "lifecycle-interval", "KEYBROKER_LIFECYCLE_INTERVAL", time.Minute,
		"how often expiry warnings are sent (admin replicas) and rotations resumed, revocations at the providers retried and rotateAfter schedules run (one replica of mode all at a time); 0 is never")
	f.String(&cfg.EventsWebhookURL, "events-webhook-url", "KEYBROKER_EVENTS_WEBHOOK_URL", "",
		"POST key health changes (JSON, signed with HMAC-SHA256 by KEYBROKER_EVENTS_WEBHOOK_SECRET) to this URL; empty: off")
	f.Bool(&cfg.EventsWebhookAudit, "events-webhook-audit", "KEYBROKER_EVENTS_WEBHOOK_AUDIT", false,
		"send every audit event to the webhook as it is written (one replica at a time), not only health changes")
	f.Bool(&cfg.EventsWebhookAllowPlaintext, "events-webhook-allow-plaintext", "KEYBROKER_EVENTS_WEBHOOK_ALLOW_PLAINTEXT", false,
		"allow an http:// webhook URL whose host is not loopback (refused otherwise: the events would cross the network in clear)")
	f.Int(&cfg.WatchStreamsPerToken, "watch-streams-per-token", "KEYBROKER_WATCH_STREAMS_PER_TOKEN", 8,
		"watch streams (GET /v1/resolve/watch) one token may hold open on this replica; past it, 429 too_many_streams")
	f.Int(&cfg.WatchStreamsPerReplica, "watch-streams-per-replica", "KEYBROKER_WATCH_STREAMS_PER_REPLICA", 1000,
		"watch streams this replica holds open at most; past it, 429 too_many_streams")
	f.Strings(&cfg.TrustedProxies, "trusted-proxies", "KEYBROKER_TRUSTED_PROXIES", "proxies (IPs or CIDRs) whose X-Forwarded-For names the client in audit events and logs; none by default")
}

func identityFlags(f envFlags, id *app.Identity, who string) {
	up := "KEYBROKER_" + strings.ToUpper(who) + "_"
	f.String(&id.RoleName, who+"-role-name", up+"ROLE_NAME", "keybroker-"+who, "AppRole role name of the "+who+" identity")
	f.String(&id.RoleID, who+"-role-id", up+"ROLE_ID", "", "AppRole role id of the "+who+" identity")
	f.String(&id.SecretIDFile, who+"-secret-id-file", up+"SECRET_ID_FILE", "", "file holding the "+who+"'s AppRole secret id")
	f.String(&id.KubernetesRole, who+"-kubernetes-role", up+"KUBERNETES_ROLE", "keybroker-"+who, "Vault Kubernetes role of the "+who+" identity")
	f.String(&id.KubernetesJWT, who+"-kubernetes-jwt-path", up+"KUBERNETES_JWT_PATH", app.DefaultKubernetesJWT, "service-account token file of the "+who+" identity, re-read at every login")
	f.String(&id.TokenFile, who+"-token-file", up+"TOKEN_FILE", "", "Vault Agent token sink file of the "+who+" identity")
}

// secretsFromEnv fills the settings that never come from a flag.
func secretsFromEnv(cfg *app.Config) {
	cfg.VaultToken = os.Getenv("VAULT_TOKEN")
	cfg.Pepper = os.Getenv("KEYBROKER_FINGERPRINT_PEPPER")
	cfg.AdminTokenKeys = os.Getenv("KEYBROKER_ADMIN_TOKEN_KEYS")
	cfg.ResolverKeys = os.Getenv("KEYBROKER_RESOLVER_KEYS")
	cfg.EventsWebhookSecret = os.Getenv("KEYBROKER_EVENTS_WEBHOOK_SECRET")
	cfg.OIDCClientSecret = os.Getenv("KEYBROKER_OIDC_CLIENT_SECRET")
}

func newServeCommand() *cobra.Command {
	var cfg app.Config
	var listenAddr string
	var logFlush time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve keybroker's HTTP API",
		Long: `Serve keybroker's HTTP API.

Every flag can also be set by the environment variable named in its help; a
flag on the command line wins, and a variable that does not parse is an error.
Secrets are read from the environment only, never from flags:
  VAULT_TOKEN                     static Vault token (with --vault-auth=token, dev only)
  KEYBROKER_FINGERPRINT_PEPPER    secret for key fingerprints (modes admin and all; 16+ characters)
  KEYBROKER_ADMIN_TOKEN_KEYS      keyring "id:secret,..." signing operator, admin and reader
                                  token rows (modes admin and all; the first key signs)
  KEYBROKER_RESOLVER_KEYS         keyring signing resolver token rows, proxy tokens and
                                  resolution ids (modes resolver, proxy and all; never admin)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDatabaseURL(cmd, cfg.DatabaseURL); err != nil {
				return err
			}
			secretsFromEnv(&cfg)
			// Log lines (the access log's above all) are written in batches;
			// warnings and errors at once.
			var out io.Writer = os.Stderr
			buffered := logbuf.New(os.Stderr, logFlush)
			if buffered != nil {
				defer buffered.Close()
				out = buffered
			}
			logger := slog.New(logbuf.Handler(slog.NewJSONHandler(out, nil), buffered))
			cfg.AccessLogOutput = out
			a, err := app.New(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listenAddr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listenAddr, err)
			}
			return a.Run(cmd.Context(), ln)
		},
	}
	flagsOf(cmd).String(&listenAddr, "listen-addr", "KEYBROKER_LISTEN_ADDR", "127.0.0.1:8080", "HTTP listen address")
	flagsOf(cmd).Duration(&logFlush, "log-flush-interval", "KEYBROKER_LOG_FLUSH_INTERVAL", 100*time.Millisecond,
		"write log lines in batches this often (warnings and errors at once, the rest at shutdown); 0 writes each line at once")
	serveFlags(cmd, &cfg)
	return cmd
}
