package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/store"
)

func newMigrateCommand() *cobra.Command {
	var databaseURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply keybroker's database migrations (idempotent)",
		Long: `Apply keybroker's database migrations, embedded in the binary.

Safe to run on every deploy and from several replicas at once: migrations run
under a PostgreSQL advisory lock and only the missing ones are applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if databaseURL == "" {
				return errors.New("no database: set DATABASE_URL or --database-url")
			}
			st, err := store.Open(cmd.Context(), databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "keybroker: database is up to date")
			return nil
		},
	}
	flagsOf(cmd).String(&databaseURL, "database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	return cmd
}
