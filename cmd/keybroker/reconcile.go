package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/internal/app"
)

func newReconcileCommand() *cobra.Command {
	var cfg app.Config
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
			secretsFromEnv(&cfg)
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			rep, err := app.Reconcile(cmd.Context(), cfg, logger)
			if rep == nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "completed %d, aborted %d, repaired %d, unrepaired %d, failed %d\n",
				rep.Completed, rep.Aborted, rep.Repaired, len(rep.Unrepaired), rep.Failed)
			for _, u := range rep.Unrepaired {
				fmt.Fprintln(cmd.OutOrStdout(), "unrepaired:", u)
			}
			return err
		},
	}
	serveFlags(cmd, &cfg)
	return cmd
}
