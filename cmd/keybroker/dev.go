package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/app"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/oidcdev"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/store"
)

// devKVMount is the KV v2 mount `keybroker dev` enables: the default
// --kv-mount of serve and of `keybroker vault bootstrap` (docs/operations.md).
const devKVMount = "byok"

func newDevCommand() *cobra.Command {
	var listenAddr string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run keybroker locally with its own Vault dev server and PostgreSQL",
		Long: `Run keybroker locally with everything it needs: a Vault dev server (in
memory, on a free loopback port) and a throwaway PostgreSQL cluster (data in a
temporary folder). Prints the addresses and credentials, serves until Ctrl-C,
then stops both servers and removes their folders.

For development only: the Vault server is a dev server with a root token.
The database migrations are applied before serving.
Vault comes from scripts/tools.sh (make tools); PostgreSQL from Debian.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), listenAddr)
		},
	}
	flagsOf(cmd).String(&listenAddr, "listen-addr", "KEYBROKER_LISTEN_ADDR", "127.0.0.1:8080", "HTTP listen address")
	return cmd
}

func runDev(ctx context.Context, listenAddr string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := app.CheckLoopback(listenAddr); err != nil {
		return fmt.Errorf("keybroker dev listens on loopback only (plain HTTP, a dev Vault with a root token); %q is not a loopback address", listenAddr)
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listenAddr, err)
	}
	defer ln.Close()

	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	logger.Info("starting PostgreSQL")
	pg, err := devenv.StartPostgres(startCtx, devenv.PostgresOptions{})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()
	// As in production: migrations run as the owner (the cluster's
	// superuser here), serve as a runtime role that cannot touch the audit
	// trail.
	runtimeURL, err := devenv.EnsureLoginRole(startCtx, pg.URL, devRuntimeRole, randomSecret())
	if err != nil {
		return err
	}
	resolverURL, err := devenv.EnsureLoginRole(startCtx, pg.URL, devResolverRole, randomSecret())
	if err != nil {
		return err
	}
	if err := migrate(startCtx, pg.URL, devRuntimeRole, devResolverRole); err != nil {
		return err
	}
	// The signing keys of token rows, proxy tokens and resolution ids, as
	// production has them: the database never holds them.
	adminKeys, err := keyring.Generate("dev")
	if err != nil {
		return err
	}
	resolverKeys, err := keyring.Generate("dev")
	if err != nil {
		return err
	}
	keys, err := rowKeys(adminKeys, resolverKeys)
	if err != nil {
		return err
	}
	operatorToken, err := createToken(startCtx, pg.URL, keys, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, Description: "keybroker dev", CreatedBy: "keybroker dev"})
	if err != nil {
		return err
	}
	resolverToken, err := createToken(startCtx, pg.URL, keys, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Description: "keybroker dev", CreatedBy: "keybroker dev"})
	if err != nil {
		return err
	}
	logger.Info("starting Vault dev server")
	vs, err := devenv.StartVault(startCtx)
	if err != nil {
		return fmt.Errorf("start Vault: %w", err)
	}
	defer vs.Stop()
	// Vault is set up as in production: `keybroker vault bootstrap`, then
	// keybroker logs in with the writer and reader AppRole identities.
	writer, reader, err := app.BootstrapDevVault(startCtx, vs.Addr, vs.RootToken, vs.Dir, devKVMount)
	if err != nil {
		return err
	}
	// Vault's own OpenID provider, so that people's sign-in can be tried
	// at once: two people and a role mapping of their groups.
	idp, roleMap, people, err := startDevIdentityProvider(startCtx, vs, ln.Addr().String())
	if err != nil {
		return err
	}
	defer idp.Close()
	pepper := randomSecret() // a dev run's fingerprints live as long as its database
	go func() {
		select {
		case <-vs.Exited():
			logger.Error("the Vault dev server has exited; /readyz answers 503 until keybroker dev is restarted", "pid", vs.Pid())
		case <-ctx.Done():
		}
	}()
	go func() {
		select {
		case <-pg.Exited():
			logger.Error("PostgreSQL has exited; /readyz answers 503 until keybroker dev is restarted", "pid", pg.Pid())
		case <-ctx.Done():
		}
	}()

	a, err := app.New(ctx, app.Config{
		DatabaseURL: runtimeURL,
		MetricsAddr: "127.0.0.1:0",
		VaultAddr:   vs.Addr,
		VaultAuth:   app.VaultAuthAppRole,
		Writer:      writer,
		Reader:      reader,
		KVMount:     devKVMount,
		Pepper:      pepper,
		// Failing keys are re-tested, as serve's default does.
		HealthProbeEvery: 10 * time.Minute,
		// Expiry warnings, rotations and revocations, as serve's default.
		LifecycleEvery: time.Minute,
		// Mode all holds both: it is the one replica of a dev run.
		AdminTokenKeys: adminKeys,
		ResolverKeys:   resolverKeys,
		// People sign in with the dev Vault's OpenID provider.
		OIDCIssuer: idp.Issuer, OIDCClientID: idp.ClientID, OIDCClientSecret: idp.ClientSecret,
		OIDCRedirectURL: "http://" + ln.Addr().String() + "/auth/callback", OIDCRoleMap: roleMap, OIDCCLIClientID: idp.PublicClientID, OIDCCLIDeviceGrant: true,
	}, logger)
	if err != nil {
		return err
	}
	hosted, err := a.SeedDevHostedKeys(startCtx)
	if err != nil {
		return err
	}
	// One write, once everything is up, so that no log line lands inside
	// the block a person copies.
	_, _ = io.WriteString(os.Stdout, devBanner(devInfo{
		Addr: ln.Addr().String(), OperatorToken: operatorToken, ResolverToken: resolverToken,
		VaultAddr: vs.Addr, VaultToken: vs.RootToken, DatabaseURL: pg.URL, RuntimeURL: runtimeURL, ResolverURL: resolverURL,
		AdminKeys: adminKeys, ResolverKeys: resolverKeys, Writer: writer, Reader: reader, Pepper: pepper,
		VaultPid: vs.Pid(), VaultDir: vs.Dir, PostgresPid: pg.Pid(), PostgresDir: pg.Dir, Hosted: hosted, People: people,
	}))
	return a.Run(ctx, ln)
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// devRuntimeRole is the role `keybroker dev` serves as; devResolverRole
// the one a resolver or proxy replica beside it would.
const (
	devRuntimeRole  = "keybroker_runtime"
	devResolverRole = "keybroker_resolver"
)

func migrate(ctx context.Context, databaseURL, runtimeRole, resolverRole string) error {
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx, runtimeRole); err != nil {
		return err
	}
	return st.GrantResolver(ctx, resolverRole)
}

// createToken creates a token in the database at databaseURL (for
// `keybroker dev`).
func createToken(ctx context.Context, databaseURL string, keys auth.RowKeys, req auth.CreateRequest) (string, error) {
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return "", err
	}
	defer st.Close()
	token, _, err := auth.NewService(st, auth.Options{TrustWithoutStore: -1, Keys: keys}).Create(ctx, req)
	return token, err
}

// devInfo is what `keybroker dev` tells the person who started it.
type devInfo struct {
	Addr                         string
	OperatorToken, ResolverToken string
	VaultAddr, VaultToken        string
	DatabaseURL                  string // the owner's
	RuntimeURL, ResolverURL      string
	AdminKeys, ResolverKeys      string
	Writer, Reader               app.Identity
	Pepper                       string
	VaultPid, PostgresPid        int
	VaultDir, PostgresDir        string
	Hosted                       []string
	People                       []oidcdev.User // who may sign in with the dev OpenID provider
}

// devBanner is what `keybroker dev` prints on stdout once it is ready: a
// block of `export NAME=value` lines, one after the other, that pastes into
// any POSIX shell (or zsh) as it is — what the README's tour, the CLI and
// `keybroker token create` use — and every explanation a `#` comment
// around it, so that pasting the whole output sets variables and runs
// nothing (the reconcile command to copy is commented out too).
func devBanner(d devInfo) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	export := func(name, value string) { line("export %s=%s", name, shellQuote(value)) }
	line("# keybroker dev is ready; everything runs on loopback. Ctrl-C stops it and removes the data folders.")
	line("# KEYBROKER_TOKEN is an operator token (manages keys and tokens, cannot resolve); KEYBROKER_RESOLVER_TOKEN a resolver token")
	line("# (POST /v1/resolve, and proxy tokens for /proxy/{provider}/...). VAULT_TOKEN is the Vault dev server's root token, for you:")
	line("# keybroker logs in with AppRole (KV v2 mount %s, policies keybroker-writer and keybroker-reader). DATABASE_URL is", devKVMount)
	line("# PostgreSQL's owner: with the signing keys, what keybroker migrate and keybroker token create need (an admin replica")
	line("# never gets KEYBROKER_RESOLVER_KEYS). Paste the export lines into another shell, then try: curl \"$KEYBROKER_ADDR/readyz\"")
	export("KEYBROKER_ADDR", "http://"+d.Addr)
	export("KEYBROKER_TOKEN", d.OperatorToken)
	export("KEYBROKER_RESOLVER_TOKEN", d.ResolverToken)
	export("VAULT_ADDR", d.VaultAddr)
	export("VAULT_TOKEN", d.VaultToken)
	export("DATABASE_URL", d.DatabaseURL)
	export("KEYBROKER_ADMIN_TOKEN_KEYS", d.AdminKeys)
	export("KEYBROKER_RESOLVER_KEYS", d.ResolverKeys)
	line("#")
	line("# This replica (mode all) serves as the role %s: it adds and revokes tokens, never deletes one; INSERT and SELECT only on audit_events and proxy_calls.", devRuntimeRole)
	line("# A separate --mode=resolver or proxy replica would serve as %s (reads metadata and tokens, writes only health and usage):", devResolverRole)
	line("#   DATABASE_URL=%s", shellQuote(d.ResolverURL))
	line("# To reconcile Vault and PostgreSQL once, as the runtime role, run this line without its leading '#':")
	line("#   DATABASE_URL=%s VAULT_ADDR=%s KEYBROKER_VAULT_AUTH=approle KEYBROKER_KV_MOUNT=%s KEYBROKER_WRITER_ROLE_ID=%s KEYBROKER_WRITER_SECRET_ID_FILE=%s KEYBROKER_READER_ROLE_ID=%s KEYBROKER_READER_SECRET_ID_FILE=%s KEYBROKER_FINGERPRINT_PEPPER=%s keybroker reconcile",
		shellQuote(d.RuntimeURL), shellQuote(d.VaultAddr), devKVMount, shellQuote(d.Writer.RoleID), shellQuote(d.Writer.SecretIDFile),
		shellQuote(d.Reader.RoleID), shellQuote(d.Reader.SecretIDFile), shellQuote(d.Pepper))
	line("# Hosted keys: FAKE ones (key id %s) for %s; workspaces without a key fall back to them, and no provider accepts them.",
		app.DevHostedKeyID, strings.Join(d.Hosted, ", "))
	line("# Calls to providers (key tests, the credential proxy) go to their real APIs; KEYBROKER_PROVIDER_<ID>_BASE_URL in make dev's environment sends them elsewhere.")
	if len(d.People) > 0 {
		line("# Sign in as a person at http://%s/auth/login, or with KEYBROKER_ADDR=http://%s keybroker login (Vault's own OpenID provider; the groups map to roles):", d.Addr, d.Addr)
		for _, p := range d.People {
			line("#   %s / %s (%s)", p.Name, p.Password, strings.Join(p.Groups, ", "))
		}
	}
	line("# vault pid %d, folder %s", d.VaultPid, d.VaultDir)
	line("# postgres pid %d, folder %s", d.PostgresPid, d.PostgresDir)
	return b.String()
}

// shellQuote gives s as one shell word: as it is when every character is
// plain, else in single quotes (a URL's '?' or '&' would otherwise be a
// glob or a background job).
func shellQuote(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// devRoleMap maps the dev people's groups to roles.
const devRoleMap = `rules:
  - group: kb-operators
    operator: true
  - group: "kb-ws-{ws}-admin"
    admin: {workspace: "{ws}"}
  - group: "kb-ws-{ws}-reader"
    reader: {workspace: "{ws}"}
`

// startDevIdentityProvider configures Vault's OpenID provider on the dev
// Vault with an operator and a workspace admin, and writes the role
// mapping into the Vault's folder.
func startDevIdentityProvider(ctx context.Context, vs *devenv.VaultServer, addr string) (*oidcdev.Provider, string, []oidcdev.User, error) {
	people := []oidcdev.User{
		{Name: "dev-operator", DisplayName: "Dev Operator", Email: "operator@keybroker.dev", Groups: []string{"kb-operators"}, Password: randomSecret()[:20]},
		{Name: "dev-admin", DisplayName: "Dev Admin", Email: "admin@keybroker.dev", Groups: []string{"kb-ws-ws1-admin"}, Password: randomSecret()[:20]},
	}
	idp, err := oidcdev.Start(ctx, vs.Addr, vs.RootToken, oidcdev.Options{
		RedirectURIs: []string{"http://127.0.0.1/auth/callback", "http://" + addr + "/auth/callback"},
		// keybroker login: the device grant (added by the front door)
		// by default, the loopback listener with --flow loopback.
		PublicRedirectURIs: []string{"http://127.0.0.1/callback"}, DeviceGrant: true,
		Users: people, IDTokenTTL: 10 * time.Minute, AccessTokenTTL: 10 * time.Minute,
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("start the OpenID provider: %w", err)
	}
	roleMap := filepath.Join(vs.Dir, "keybroker-roles.yaml")
	if err := os.WriteFile(roleMap, []byte(devRoleMap), 0o600); err != nil {
		_ = idp.Close()
		return nil, "", nil, err
	}
	return idp, roleMap, people, nil
}
