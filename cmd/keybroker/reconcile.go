package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/store"
)

func newReconcileCommand() *cobra.Command {
	var cfg serverConfig
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Repair what Vault and PostgreSQL disagree on, once (serve also does it periodically)",
		Long: `Repair what Vault and PostgreSQL disagree on: changes left pending by a
writer that died between its steps (Vault is the truth), rows of keys deleted
in Vault directly, and keys written in Vault directly (adopted when the reader
identity is configured, else reported). Takes the same Vault and database
settings as serve; needs the writer identity, and the reader for adoption.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.VaultToken = os.Getenv("VAULT_TOKEN")
			cfg.Pepper = os.Getenv("KEYBROKER_FINGERPRINT_PEPPER")
			if cfg.DatabaseURL == "" {
				return errors.New("no database: set DATABASE_URL or --database-url")
			}
			if len(cfg.Pepper) < 16 {
				return errors.New("KEYBROKER_FINGERPRINT_PEPPER must be set (the same as serve's)")
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx := cmd.Context()
			st, err := store.Open(ctx, cfg.DatabaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			bcfg := broker.Config{Store: st, Pepper: []byte(cfg.Pepper), Logger: logger}
			writer, err := cfg.vaultClient("writer", cfg.Writer, logger, nil)
			if err != nil {
				return err
			}
			writer.Start(ctx)
			if err := writer.WaitForToken(ctx); err != nil {
				return err
			}
			bcfg.Writer = writer.KV(cfg.KVMount)
			if cfg.Mode == "all" {
				reader, err := cfg.vaultClient("reader", cfg.Reader, logger, nil)
				if err != nil {
					return err
				}
				reader.Start(ctx)
				if err := reader.WaitForToken(ctx); err != nil {
					return err
				}
				bcfg.Reader = reader.KV(cfg.KVMount)
			}
			b, err := broker.New(bcfg)
			if err != nil {
				return err
			}
			rep, err := b.Reconcile(ctx, 0)
			fmt.Fprintf(cmd.OutOrStdout(), "completed %d, aborted %d, repaired %d, unrepaired %d, failed %d\n",
				rep.Completed, rep.Aborted, rep.Repaired, len(rep.Unrepaired), rep.Failed)
			for _, u := range rep.Unrepaired {
				fmt.Fprintln(cmd.OutOrStdout(), "unrepaired:", u)
			}
			return err
		},
	}
	cfg.bindFlags(cmd)
	return cmd
}
