package app

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/keybroker/keybroker/handlers"
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
	// DatabaseURL is PostgreSQL's connection string. Required.
	DatabaseURL string

	// VaultAddr, VaultNamespace and VaultCACert say how to reach Vault.
	VaultAddr      string
	VaultNamespace string
	VaultCACert    string
	// VaultAuth is how both identities log in: approle, kubernetes,
	// token-file, or token (static VaultToken, development only).
	// Default: token.
	VaultAuth string
	// AuthNamespace is the namespace of the auth method when it is not
	// VaultNamespace.
	AuthNamespace string
	// AppRoleMount is the AppRole auth mount. Default: approle.
	AppRoleMount string
	// AppRoleWrapped: the secret id files hold response-wrapping tokens.
	AppRoleWrapped bool
	// KubernetesMount is the Kubernetes auth mount. Default: kubernetes.
	KubernetesMount string
	// KubernetesJWT is the service-account token file, re-read at every
	// login.
	KubernetesJWT string
	// Writer and Reader are how each of the two identities logs in.
	Writer, Reader Identity
	// KVMount is the KV v2 mount of the keys. Default: byok.
	KVMount string

	// CacheTTL, NegativeCacheTTL and StaleIfError tune the resolve cache
	// (see broker.Config; zero takes the broker's defaults).
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
	StaleIfError     time.Duration
	// ReconcileEvery is how often one replica reconciles Vault and
	// PostgreSQL. 0: never.
	ReconcileEvery time.Duration
	// AccessLog is all or errors. Default: all.
	AccessLog string
	// PprofAddr, when set, serves Go's profiler on this loopback address.
	PprofAddr string
	// TrustedProxies may set X-Forwarded-For (IPs or CIDRs). Default:
	// none, so the client address in audit events cannot be forged.
	TrustedProxies []string

	// VaultToken is the static token of VaultAuth "token" (environment
	// only).
	VaultToken string
	// Pepper keys the fingerprints (environment only). Required, 16+
	// characters, unless Mode is resolver.
	Pepper string
}

// Identity is how one of keybroker's two Vault identities (writer, reader)
// logs in; which fields count depends on Config.VaultAuth.
type Identity struct {
	RoleName       string // AppRole role name (checked against wrapping tokens)
	RoleID         string // AppRole
	SecretIDFile   string // AppRole: file holding the secret id (or its wrapping token)
	KubernetesRole string // Kubernetes
	TokenFile      string // token-file: the Vault Agent/Proxy sink
}

// withDefaults fills the zero values that have defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = string(handlers.ModeAll)
	}
	if c.VaultAuth == "" {
		c.VaultAuth = VaultAuthToken
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
	case handlers.ModeAll, handlers.ModeAdmin, handlers.ModeResolver:
		return m, nil
	}
	return "", fmt.Errorf("unknown --mode %q (all, admin, resolver)", c.Mode)
}

// needsWriter and needsReader say which identities a mode holds.
func needsWriter(m handlers.Mode) bool { return m != handlers.ModeResolver }
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
	if c.CacheTTL < 0 || c.NegativeCacheTTL < 0 || c.StaleIfError < 0 || c.ReconcileEvery < 0 {
		return errors.New("durations must not be negative")
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return fmt.Errorf("--trusted-proxies: %q is neither an IP address nor a CIDR", p)
		}
	}
	if c.PprofAddr != "" {
		if err := checkLoopback(c.PprofAddr); err != nil {
			return fmt.Errorf("--pprof-addr %q: %w", c.PprofAddr, err)
		}
	}
	return nil
}

// checkLoopback accepts host:port addresses on loopback only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("only a loopback address is allowed")
	}
	return nil
}
