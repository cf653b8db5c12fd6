package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/internal/app"
)

// serveFlags binds the flags of `keybroker serve` (and of reconcile, which
// takes the same Vault and database settings) to cfg.
func serveFlags(cmd *cobra.Command, cfg *app.Config) {
	f := flagsOf(cmd)
	f.String(&cfg.Mode, "mode", "KEYBROKER_MODE", "all", "all, admin (key management, no resolve) or resolver (resolve only)")
	f.String(&cfg.DatabaseURL, "database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	f.String(&cfg.VaultAddr, "vault-addr", "VAULT_ADDR", "", "Vault address")
	f.String(&cfg.VaultNamespace, "vault-namespace", "VAULT_NAMESPACE", "", "Vault Enterprise namespace")
	f.String(&cfg.VaultCACert, "vault-cacert", "VAULT_CACERT", "", "PEM file of CAs to trust for Vault")
	f.String(&cfg.VaultAuth, "vault-auth", "KEYBROKER_VAULT_AUTH", app.VaultAuthToken, "Vault auth method: approle, kubernetes, token-file, or token (static VAULT_TOKEN, dev only)")
	f.String(&cfg.AuthNamespace, "vault-auth-namespace", "KEYBROKER_VAULT_AUTH_NAMESPACE", "", "Vault Enterprise namespace of the auth method, when not the secrets'")
	f.String(&cfg.AppRoleMount, "approle-mount", "KEYBROKER_APPROLE_MOUNT", "approle", "AppRole auth mount")
	f.Bool(&cfg.AppRoleWrapped, "approle-secret-id-wrapped", "KEYBROKER_APPROLE_SECRET_ID_WRAPPED", false, "the secret id files hold response-wrapping tokens")
	f.String(&cfg.KubernetesMount, "kubernetes-mount", "KEYBROKER_KUBERNETES_MOUNT", "kubernetes", "Kubernetes auth mount")
	f.String(&cfg.KubernetesJWT, "kubernetes-jwt-path", "KEYBROKER_KUBERNETES_JWT_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token", "service-account token file, re-read at every login")
	identityFlags(f, &cfg.Writer, "writer")
	identityFlags(f, &cfg.Reader, "reader")
	f.String(&cfg.KVMount, "kv-mount", "KEYBROKER_KV_MOUNT", "byok", "KV v2 mount of the keys")
	f.Duration(&cfg.CacheTTL, "cache-ttl", "KEYBROKER_CACHE_TTL", 30*time.Second, "how long a resolved key is served from memory")
	f.Duration(&cfg.NegativeCacheTTL, "negative-cache-ttl", "KEYBROKER_NEGATIVE_CACHE_TTL", 5*time.Second, `how long "no key" is remembered`)
	f.Duration(&cfg.StaleIfError, "stale-if-error", "KEYBROKER_STALE_IF_ERROR", 0, "serve a cached key this long past its TTL while Vault is unreachable; 0 is off")
	f.Duration(&cfg.ReconcileEvery, "reconcile-interval", "KEYBROKER_RECONCILE_INTERVAL", 5*time.Minute, "how often one replica reconciles Vault and PostgreSQL; 0 is never")
	f.String(&cfg.AccessLog, "access-log", "KEYBROKER_ACCESS_LOG", "all", "which requests get an access-log line: all, or errors (answers of 400 and above)")
	f.String(&cfg.PprofAddr, "pprof-addr", "KEYBROKER_PPROF_ADDR", "", "serve Go's profiler (/debug/pprof/) on this loopback address; off when empty")
	f.Strings(&cfg.TrustedProxies, "trusted-proxies", "KEYBROKER_TRUSTED_PROXIES", "proxies (IPs or CIDRs) whose X-Forwarded-For names the client in audit events and logs; none by default")
}

func identityFlags(f envFlags, id *app.Identity, who string) {
	up := "KEYBROKER_" + strings.ToUpper(who) + "_"
	f.String(&id.RoleName, who+"-role-name", up+"ROLE_NAME", "keybroker-"+who, "AppRole role name of the "+who+" identity")
	f.String(&id.RoleID, who+"-role-id", up+"ROLE_ID", "", "AppRole role id of the "+who+" identity")
	f.String(&id.SecretIDFile, who+"-secret-id-file", up+"SECRET_ID_FILE", "", "file holding the "+who+"'s AppRole secret id")
	f.String(&id.KubernetesRole, who+"-kubernetes-role", up+"KUBERNETES_ROLE", "keybroker-"+who, "Vault Kubernetes role of the "+who+" identity")
	f.String(&id.TokenFile, who+"-token-file", up+"TOKEN_FILE", "", "Vault Agent token sink file of the "+who+" identity")
}

// secretsFromEnv fills the settings that never come from a flag.
func secretsFromEnv(cfg *app.Config) {
	cfg.VaultToken = os.Getenv("VAULT_TOKEN")
	cfg.Pepper = os.Getenv("KEYBROKER_FINGERPRINT_PEPPER")
}

func newServeCommand() *cobra.Command {
	var cfg app.Config
	var listenAddr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve keybroker's HTTP API",
		Long: `Serve keybroker's HTTP API.

Every flag can also be set by the environment variable named in its help; a
flag on the command line wins, and a variable that does not parse is an error.
Secrets are read from the environment only, never from flags:
  VAULT_TOKEN                     static Vault token (with --vault-auth=token, dev only)
  KEYBROKER_FINGERPRINT_PEPPER    secret for key fingerprints (required, 16+ characters)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secretsFromEnv(&cfg)
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
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
	serveFlags(cmd, &cfg)
	return cmd
}
