package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/app"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/store"
)

// devKVMount is the KV v2 mount `keybroker dev` enables: serve's default
// --kv-mount (docs/reference/flags.md).
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

	out := os.Stdout
	fmt.Fprintf(out, "keybroker dev: everything runs on loopback; Ctrl-C stops it and removes the data folders.\n\n")
	fmt.Fprintf(out, "  keybroker      http://%s  (try: curl http://%s/readyz)\n", ln.Addr(), ln.Addr())
	fmt.Fprintf(out, "  KEYBROKER_ADDR=http://%s\n", ln.Addr())
	fmt.Fprintf(out, "  KEYBROKER_TOKEN=%s  (operator token: manages keys and tokens, cannot resolve)\n", operatorToken)
	fmt.Fprintf(out, "  KEYBROKER_RESOLVER_TOKEN=%s  (resolver token: POST /v1/resolve, and proxy tokens for /proxy/{provider}/...)\n", resolverToken)
	fmt.Fprintf(out, "  VAULT_ADDR=%s\n", vs.Addr)
	fmt.Fprintf(out, "  VAULT_TOKEN=%s  (dev root token, for you; keybroker logs in with AppRole)\n", vs.RootToken)
	fmt.Fprintf(out, "  KV v2 mount    %s (bootstrapped: policies keybroker-writer, keybroker-reader)\n", devKVMount)
	fmt.Fprintf(out, "  DATABASE_URL=%s  (owner: migrate, token)\n", pg.URL)
	fmt.Fprintf(out, "  runtime role   %s (this mode-all replica serves as it: adds and revokes tokens, never deletes one; INSERT and SELECT only on audit_events and proxy_calls)\n", devRuntimeRole)
	fmt.Fprintf(out, "  resolver role  %s (for a separate --mode=resolver or proxy replica: reads metadata and tokens, writes only health and usage)\n", devResolverRole)
	fmt.Fprintf(out, "                 DATABASE_URL=%s\n", resolverURL)
	fmt.Fprintf(out, "  signing keys   KEYBROKER_ADMIN_TOKEN_KEYS=%s\n", adminKeys)
	fmt.Fprintf(out, "                 KEYBROKER_RESOLVER_KEYS=%s  (keybroker token create needs them; an admin replica never gets this one)\n", resolverKeys)
	fmt.Fprintf(out, "  reconcile      DATABASE_URL=%s VAULT_ADDR=%s KEYBROKER_VAULT_AUTH=approle KEYBROKER_KV_MOUNT=%s \\\n"+
		"                   KEYBROKER_WRITER_ROLE_ID=%s KEYBROKER_WRITER_SECRET_ID_FILE=%s \\\n"+
		"                   KEYBROKER_READER_ROLE_ID=%s KEYBROKER_READER_SECRET_ID_FILE=%s \\\n"+
		"                   KEYBROKER_FINGERPRINT_PEPPER=%s keybroker reconcile\n",
		runtimeURL, vs.Addr, devKVMount, writer.RoleID, writer.SecretIDFile, reader.RoleID, reader.SecretIDFile, pepper)
	fmt.Fprintf(out, "  vault pid %d, folder %s\n", vs.Pid(), vs.Dir)
	fmt.Fprintf(out, "  postgres pid %d, folder %s\n", pg.Pid(), pg.Dir)

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
		// Mode all holds both: it is the one replica of a dev run.
		AdminTokenKeys: adminKeys,
		ResolverKeys:   resolverKeys,
	}, logger)
	if err != nil {
		return err
	}
	hosted, err := a.SeedDevHostedKeys(startCtx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  hosted keys    FAKE ones (key id %s) for %s: workspaces without a key fall back to them; no provider accepts them\n\n",
		app.DevHostedKeyID, strings.Join(hosted, ", "))
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
