package app

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/providers"
)

// Vault auth methods of Config.VaultAuth.
const (
	VaultAuthAppRole    = "approle"
	VaultAuthKubernetes = "kubernetes"
	VaultAuthTokenFile  = "token-file"
	VaultAuthToken      = "token" // a static VAULT_TOKEN: development only
)

// Config is what a keybroker server runs with. Every field but the secrets
// has a flag and an environment variable (cmd/keybroker); secrets come from
// the environment only, so that they never show in a process listing.
// Zero values take the defaults stated.
type Config struct {
	// Mode selects the API and the identities: all, admin or resolver.
	// Default: all.
	Mode string
	// DatabaseURL is PostgreSQL's connection string, as keybroker's
	// runtime role (see store.GrantRuntime). Required.
	DatabaseURL string
	// DatabasePasswordFile, when set, holds the database password.
	DatabasePasswordFile string

	// VaultAddr, VaultNamespace and VaultCACert say how to reach Vault.
	VaultAddr      string
	VaultNamespace string
	VaultCACert    string
	// VaultAuth is how both identities log in: approle, kubernetes,
	// token-file, or token (static VaultToken, development only: both
	// identities are then one token). Required: there is no default.
	VaultAuth string
	// VaultAllowInsecureTLS lets VAULT_SKIP_VERIFY turn off the
	// verification of Vault's certificate; VaultAllowPlaintext allows an
	// http:// Vault address that is not loopback. Both are refused
	// without them.
	VaultAllowInsecureTLS, VaultAllowPlaintext bool
	// AuthNamespace is the namespace of the auth method when it is not
	// VaultNamespace.
	AuthNamespace string
	// AppRoleMount is the AppRole auth mount. Default: approle.
	AppRoleMount string
	// AppRoleWrapped: the secret id files hold response-wrapping tokens.
	AppRoleWrapped bool
	// KubernetesMount is the Kubernetes auth mount. Default: kubernetes.
	KubernetesMount string
	// Writer and Reader are how each of the two identities logs in.
	Writer, Reader Identity
	// KVMount is the KV v2 mount of the keys. Default: byok.
	KVMount string

	// CacheTTL, NegativeCacheTTL and StaleIfError tune the resolve cache
	// (see broker.Config; zero takes the broker's defaults).
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	StaleIfError     time.Duration
	// CacheMaxEntries, CacheMaxNegative and MaxColdReads bound the cache
	// and the Vault reads of misses (see broker.Config; zero takes the
	// broker's defaults).
	CacheMaxEntries, CacheMaxNegative, MaxColdReads int
	// MaxKeysPerPool bounds each pool (0: broker.DefaultMaxKeysPerPool).
	MaxKeysPerPool int
	// PoolCacheSize bounds the pools a replica holds in memory (0:
	// broker.DefaultPoolCacheSize).
	PoolCacheSize int
	// ReconcileEvery is how often one replica reconciles Vault and
	// PostgreSQL. 0: never.
	ReconcileEvery time.Duration
	// AccessLog is all or errors. Default: all.
	AccessLog string
	// Proxy tunes the credential proxy (modes all and proxy): bodies up
	// to ProxyRetryBodyKiB are kept to retry with another key; request
	// and response bodies are bounded (MiB); ProxyHeaderTimeout bounds the
	// wait for a provider's headers, ProxyTimeout the whole call.
	ProxyRetryBodyKiB, ProxyMaxRequestMiB, ProxyMaxResponseMiB int
	ProxyHeaderTimeout, ProxyTimeout                           time.Duration
	// ProxyAllowEndpoints adds endpoints to providers' rule tables
	// ("openai=POST /v1/audio/transcriptions"); ProxyMaxInFlight* bound
	// the calls in flight (replica, workspace, proxy token) and
	// ProxyRetryBufferMiB the bodies kept for retries (zero: the proxy's
	// defaults).
	ProxyAllowEndpoints                                                      []string
	ProxyMaxInFlight, ProxyMaxInFlightPerWorkspace, ProxyMaxInFlightPerToken int
	ProxyRetryBufferMiB                                                      int
	// ShutdownGrace is how long in-flight requests (a proxied stream
	// above all) get to finish once a shutdown begins. Default:
	// DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// ShutdownDelay is how long a replica told to stop keeps serving with
	// its readiness failing, before the grace begins: the time load
	// balancers take to stop sending it requests. Default: 0.
	ShutdownDelay time.Duration
	// AccessLogOutput, when set, is where the logger's JSON lines go: the
	// access log writes its lines there directly, formatted as the
	// logger's JSONHandler would (handlers.Options.AccessLogOutput). Set
	// by serve; not a setting.
	AccessLogOutput io.Writer
	// PprofAddr, when set, serves Go's profiler on this loopback address.
	PprofAddr string
	// TrustedProxies may set X-Forwarded-For (IPs or CIDRs). Default:
	// none, so the client address in audit events cannot be forged.
	TrustedProxies []string

	// TLSCertFile and TLSKeyFile make the API listener serve TLS (1.2 at
	// least); the files are read again when they change.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile, with TLS, requires every client to present a
	// certificate signed by one of these CAs (mutual TLS).
	TLSClientCAFile string
	// InsecurePlaintext allows plain HTTP on a non-loopback listener: a
	// mesh or proxy in front terminates TLS. Without it such a start is
	// refused.
	InsecurePlaintext bool
	// TokenOutageGrace is how long a token validated against PostgreSQL
	// is still accepted while PostgreSQL is down (auth.Options
	// TrustWithoutStore). Default: 5m; negative: none.
	TokenOutageGrace time.Duration
	// RateLimits bound the requests of a token and the failed
	// authentications of a client address (zero values: auth's defaults).
	RateLimits auth.RateLimits
	// MetricsAddr is the listener of /metrics (Prometheus), apart from the
	// API. Empty: no metrics listener (the serve command's default is
	// 127.0.0.1:9464).
	MetricsAddr string

	// VaultToken is the static token of VaultAuth "token" (environment
	// only).
	VaultToken string
	// Pepper keys the fingerprints (environment only). Required, 16+
	// characters, unless Mode is resolver; a resolver that has it takes
	// reports of the other replicas' resolutions too.
	Pepper string
	// AdminTokenKeys sign and verify the rows of operator, admin and
	// reader tokens and the organization links of workspaces
	// (KEYBROKER_ADMIN_TOKEN_KEYS, a keyring: "id:secret,...", the first
	// signs; environment only). Required in every mode: resolver and proxy
	// replicas verify the links they follow (their database role can
	// write neither tokens nor links, so the key gives them nothing more).
	AdminTokenKeys string
	// ResolverKeys sign and verify the rows of resolver tokens, proxy
	// tokens and resolution ids (KEYBROKER_RESOLVER_KEYS, a keyring;
	// environment only). Required in modes resolver, proxy and all;
	// refused in mode admin, which must never hold what makes a
	// key-reading token.
	ResolverKeys string

	// ProviderBaseURLs replaces providers' API base URLs, by provider id
	// (a stand-in, an egress proxy); KEYBROKER_PROVIDER_<ID>_BASE_URL in
	// the environment does the same per provider.
	ProviderBaseURLs map[string]string
	// OIDCIssuer, OIDCClientID, OIDCRedirectURL and OIDCRoleMap turn on
	// people's sign-in with their identity provider (docs/identity.md):
	// all four, or none. OIDCClientSecret comes from the environment only.
	OIDCIssuer, OIDCClientID, OIDCClientSecret, OIDCRedirectURL, OIDCRoleMap string
	// OIDCCLIClientID is the public client (no secret) of `keybroker
	// login` at the same provider; "" and the CLI does not sign in. It
	// needs the four settings above.
	OIDCCLIClientID string
	// OIDCCLIDeviceGrant accepts the CLI's device authorization grant:
	// ID tokens without a nonce (a device code a person was lured into
	// entering opens a session for whoever polls it; off by default).
	OIDCCLIDeviceGrant bool
	// PlatformsFile registers the platforms that may act for their users
	// with signed assertions (docs/platforms.md); "" accepts none.
	// AssertionAudience is the audience their assertions must name.
	PlatformsFile, AssertionAudience string
	// ExposeLongLivedCredentials are the providers (ids) whose long-lived
	// credential resolve hands out instead of a short-lived one minted
	// from it (docs/credentials.md). Default: none.
	ExposeLongLivedCredentials []string
	// MaxMintsInFlight bounds the short-lived credentials minted at once
	// on this replica (0: broker.DefaultMaxMintsInFlight); past it,
	// resolve answers 503 credential_mint_busy. The token services'
	// addresses come from KEYBROKER_PROVIDER_<ID>_<NAME>_URL.
	MaxMintsInFlight int
	// ProviderCheckTimeout bounds one key check with a provider.
	ProviderCheckTimeout time.Duration
	// HealthProbeEvery re-tests failing keys this often on one replica
	// of those that read keys (modes all, resolver, proxy); 0 is off
	// (`serve` defaults to 10 minutes).
	HealthProbeEvery time.Duration
	// HealthProbeConcurrency bounds the keys tested at once by the prober.
	HealthProbeConcurrency int
	// ExpiryWarning is the window before a key's expiresAt in which it is
	// "expiring" (docs/lifecycle.md); RotationGrace how long an old key
	// lives at the provider after a rotation; LifecycleEvery how often
	// the expiry warnings are sent (every admin replica) and rotations
	// resumed, revocations retried and schedules run (one replica of mode
	// all at a time); 0 is never.
	ExpiryWarning  time.Duration
	RotationGrace  time.Duration
	LifecycleEvery time.Duration
	// RotationClaim is how long a replica holds a running rotation
	// between two steps: after a crash, another replica resumes it that
	// much later.
	RotationClaim time.Duration
	// EventsWebhookURL receives key health changes (or, with
	// EventsWebhookAudit, every audit event) signed with
	// EventsWebhookSecret (environment only).
	EventsWebhookURL    string
	EventsWebhookSecret string
	EventsWebhookAudit  bool
	// EventsWebhookAllowPlaintext allows an http:// webhook URL whose
	// host is not loopback (refused otherwise).
	EventsWebhookAllowPlaintext bool
	// WatchStreamsPerToken and WatchStreamsPerReplica cap the watch
	// streams (GET /v1/resolve/watch) one token may hold open on this
	// replica, and this replica in all; past either, 429. Zero:
	// watch.DefaultPerToken (8), watch.DefaultPerReplica (1,000).
	WatchStreamsPerToken, WatchStreamsPerReplica int
}

// Identity is how one of keybroker's two Vault identities (writer, reader)
// logs in; which fields count depends on Config.VaultAuth.
type Identity struct {
	RoleName       string // AppRole role name (checked against wrapping tokens)
	RoleID         string // AppRole
	SecretIDFile   string // AppRole: file holding the secret id (or its wrapping token)
	KubernetesRole string // Kubernetes
	// KubernetesJWT is the service-account token file of this identity,
	// re-read at every login. Default: the pod's projected token. A
	// server holding both identities needs two different files (two
	// projected tokens with the audiences the two Vault roles require).
	KubernetesJWT string
	TokenFile     string // token-file: the Vault Agent/Proxy sink
}

// DefaultKubernetesJWT is where Kubernetes projects a pod's service-account
// token.
const DefaultKubernetesJWT = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// withDefaults fills the zero values that have defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = string(handlers.ModeAll)
	}
	for _, id := range []*Identity{&c.Writer, &c.Reader} {
		if id.KubernetesJWT == "" {
			id.KubernetesJWT = DefaultKubernetesJWT
		}
	}
	if c.AppRoleMount == "" {
		c.AppRoleMount = "approle"
	}
	if c.KubernetesMount == "" {
		c.KubernetesMount = "kubernetes"
	}
	if c.KVMount == "" {
		c.KVMount = "byok"
	}
	return c
}

// mode returns the validated mode.
func (c Config) mode() (handlers.Mode, error) {
	switch m := handlers.Mode(c.Mode); m {
	case handlers.ModeAll, handlers.ModeAdmin, handlers.ModeResolver, handlers.ModeProxy:
		return m, nil
	}
	return "", fmt.Errorf("unknown --mode %q (all, admin, resolver, proxy)", c.Mode)
}

// needsWriter and needsReader say which identities a mode holds.
func needsWriter(m handlers.Mode) bool { return m == handlers.ModeAll || m == handlers.ModeAdmin }
func needsReader(m handlers.Mode) bool { return m != handlers.ModeAdmin }

// Validate checks what can be checked without contacting anything.
func (c Config) Validate() error {
	c = c.withDefaults()
	mode, err := c.mode()
	if err != nil {
		return err
	}
	if _, err := handlers.ParseAccessLog(c.AccessLog); err != nil {
		return fmt.Errorf("--access-log: %w", err)
	}
	if c.DatabaseURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	if needsWriter(mode) && len(c.Pepper) < 16 {
		return errors.New("KEYBROKER_FINGERPRINT_PEPPER must be set to a secret of at least 16 characters")
	}
	switch c.VaultAuth {
	case "":
		return errors.New("no --vault-auth: choose approle, kubernetes or token-file (token, a static VAULT_TOKEN, is for development only and must be named)")
	case VaultAuthKubernetes:
		if mode == handlers.ModeAll && c.Writer.KubernetesJWT == c.Reader.KubernetesJWT {
			return errors.New("--mode=all with Kubernetes auth logs both identities in with one service-account token, so whoever may use it holds both Vault roles: " +
				"run admin and resolver as separate deployments (one service account each), or give the identities two projected tokens " +
				"(--writer-kubernetes-jwt-path, --reader-kubernetes-jwt-path) whose audiences the two Vault roles require")
		}
	}
	if c.CacheTTL < 0 || c.NegativeCacheTTL < 0 || c.StaleIfError < 0 || c.ReconcileEvery < 0 || c.ExpiryWarning < 0 || c.RotationGrace < 0 || c.LifecycleEvery < 0 || c.RotationClaim < 0 || c.ShutdownGrace < 0 || c.ShutdownDelay < 0 {
		return errors.New("durations must not be negative")
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return fmt.Errorf("--trusted-proxies: %q is neither an IP address nor a CIDR", p)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if set := nonEmpty(c.OIDCIssuer, c.OIDCClientID, c.OIDCRedirectURL, c.OIDCRoleMap); set != 0 && set != 4 {
		return errors.New("--oidc-issuer, --oidc-client-id, --oidc-redirect-url and --oidc-role-map go together")
	}
	if c.OIDCCLIClientID != "" && c.OIDCIssuer == "" {
		return errors.New("--oidc-cli-client-id needs --oidc-issuer, --oidc-client-id, --oidc-redirect-url and --oidc-role-map")
	}
	if c.OIDCCLIDeviceGrant && c.OIDCCLIClientID == "" {
		return errors.New("--oidc-cli-device-grant needs --oidc-cli-client-id")
	}
	if c.OIDCCLIClientID != "" && c.OIDCCLIClientID == c.OIDCClientID {
		return errors.New("--oidc-cli-client-id must be another client than --oidc-client-id (a public client, with no secret)")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
	}
	if c.PprofAddr != "" {
		if err := CheckLoopback(c.PprofAddr); err != nil {
			return fmt.Errorf("--pprof-addr %q: %w", c.PprofAddr, err)
		}
	}
	for _, id := range c.ExposeLongLivedCredentials {
		if _, ok := providers.DefaultRegistry().Lookup(id); !ok {
			return fmt.Errorf("--expose-long-lived-credentials: no provider %q (see GET /v1/providers)", id)
		}
	}
	if c.MaxMintsInFlight < 0 {
		return errors.New("--max-mints-in-flight must not be negative")
	}
	if _, err := c.rowKeys(); err != nil {
		return err
	}
	return nil
}

// rowKeys parses the signing keyrings and checks that the mode holds the
// ones it needs, and not the resolver keys in admin mode.
func (c Config) rowKeys() (auth.RowKeys, error) {
	mode, err := c.mode()
	if err != nil {
		return auth.RowKeys{}, err
	}
	admin, err := keyring.Parse(c.AdminTokenKeys)
	if err != nil {
		return auth.RowKeys{}, fmt.Errorf("KEYBROKER_ADMIN_TOKEN_KEYS: %w", err)
	}
	resolver, err := keyring.Parse(c.ResolverKeys)
	if err != nil {
		return auth.RowKeys{}, fmt.Errorf("KEYBROKER_RESOLVER_KEYS: %w", err)
	}
	switch {
	case admin.Empty():
		return auth.RowKeys{}, fmt.Errorf("--mode=%s needs KEYBROKER_ADMIN_TOKEN_KEYS (id:secret, a secret of %d+ bytes): the key that signs operator, admin and reader tokens and organization links (every mode verifies them)", mode, keyring.MinSecretLen)
	case mode == handlers.ModeAdmin && !resolver.Empty():
		return auth.RowKeys{}, errors.New("--mode=admin must not hold KEYBROKER_RESOLVER_KEYS: with it and the admin side's database role, an admin replica could make a token that reads keys. Give it to resolver and proxy replicas only")
	case needsReader(mode) && resolver.Empty():
		return auth.RowKeys{}, fmt.Errorf("--mode=%s needs KEYBROKER_RESOLVER_KEYS (id:secret, a secret of %d+ bytes): the key that signs resolver tokens, proxy tokens and resolution ids", mode, keyring.MinSecretLen)
	}
	return auth.RowKeys{Admin: admin, Resolver: resolver}, nil
}

// CheckLoopback accepts host:port addresses on loopback only (localhost or
// a loopback IP): pprof, and the listener of keybroker dev.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("only a loopback address is allowed")
	}
	return nil
}

// checkListener refuses plain HTTP on a listener other processes can
// reach, unless InsecurePlaintext says TLS ends in front of keybroker.
func (c Config) checkListener(addr net.Addr) error {
	if c.TLSCertFile != "" || c.InsecurePlaintext {
		return nil
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to serve plain HTTP on %s, which is not a loopback address: resolve answers carry "+
		"plaintext keys and every request a bearer token. Set --tls-cert-file and --tls-key-file, or "+
		"--insecure-plaintext when a mesh or proxy terminates TLS in front of keybroker", addr)
}

// nonEmpty counts the values that are set.
func nonEmpty(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}
