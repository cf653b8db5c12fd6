package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// serverConfig is what `keybroker serve` runs with. Every field has an
// environment variable and a flag (see newServeCommand).
type serverConfig struct {
	ListenAddr     string
	DatabaseURL    string
	VaultAddr      string
	VaultNamespace string
	VaultCACert    string
	// VaultToken comes from VAULT_TOKEN only: a flag would show it in ps.
	VaultToken string
}

func newServeCommand() *cobra.Command {
	var cfg serverConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve keybroker's HTTP API",
		Long: `Serve keybroker's HTTP API.

Every flag can also be set by the environment variable named in its help.
The Vault token is read from VAULT_TOKEN (there is no flag, so that it never
shows in a process listing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.VaultToken = os.Getenv("VAULT_TOKEN")
			logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			ln, err := net.Listen("tcp", cfg.ListenAddr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
			}
			return runServer(cmd.Context(), cfg, ln, logger)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ListenAddr, "listen-addr", envOr("KEYBROKER_LISTEN_ADDR", "127.0.0.1:8080"), "HTTP listen address (KEYBROKER_LISTEN_ADDR)")
	f.StringVar(&cfg.DatabaseURL, "database-url", envOr("DATABASE_URL", ""), "PostgreSQL connection string (DATABASE_URL)")
	f.StringVar(&cfg.VaultAddr, "vault-addr", envOr("VAULT_ADDR", ""), "Vault address (VAULT_ADDR)")
	f.StringVar(&cfg.VaultNamespace, "vault-namespace", envOr("VAULT_NAMESPACE", ""), "Vault Enterprise namespace (VAULT_NAMESPACE)")
	f.StringVar(&cfg.VaultCACert, "vault-cacert", envOr("VAULT_CACERT", ""), "PEM file of CAs to trust for Vault (VAULT_CACERT)")
	return cmd
}

// shutdownGrace is how long in-flight requests get to finish on shutdown.
const shutdownGrace = 20 * time.Second

// runServer serves on ln until ctx is done, then shuts down gracefully.
func runServer(ctx context.Context, cfg serverConfig, ln net.Listener, logger *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	vc, err := vault.New(vault.Config{
		Address:   cfg.VaultAddr,
		Namespace: cfg.VaultNamespace,
		CACert:    cfg.VaultCACert,
		Token:     cfg.VaultToken,
	})
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()

	router := handlers.NewRouter(handlers.Options{
		Logger: logger,
		Dependencies: []handlers.Dependency{
			{Name: "vault", Check: vc.CheckToken},
			{Name: "postgres", Check: st.Ping},
		},
	})
	srv := &http.Server{
		Handler:           router,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("keybroker serving", "addr", ln.Addr().String(), "vault", vc.Address())

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
