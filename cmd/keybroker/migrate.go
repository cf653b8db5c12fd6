package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newMigrateCommand() *cobra.Command {
	var db databaseSetting
	var runtimeRole, resolverRole string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply keybroker's database migrations (idempotent)",
		Long: `Apply keybroker's database migrations, embedded in the binary.

Safe to run on every deploy and from several replicas at once: migrations run
under a PostgreSQL advisory lock and only the missing ones are applied.

Run it as the owner of keybroker's tables. With --runtime-role it then grants
the role the admin side of keybroker serve (modes admin and all) connects as
exactly what it needs: on the audit trail only INSERT and SELECT, so a
compromised server can neither change nor delete audit rows, nor lift the
triggers that keep them append-only; tokens added and revoked, never deleted,
and never a resolver token's row. With --resolver-role it grants the role of
the execution side (modes resolver and proxy, the pods that face sandboxes)
less again: it reads metadata, settings and tokens and writes only a key's
health, the usage counters, audit rows and records of proxied calls.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := db.open(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if runtimeRole == "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "keybroker: warning: no --runtime-role; serve must not run as the owner of the tables, or it could erase the audit trail")
			}
			if err := st.Migrate(cmd.Context(), runtimeRole); err != nil {
				return err
			}
			if err := st.GrantResolver(cmd.Context(), resolverRole); err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "keybroker: database is up to date")
			return nil
		},
	}
	databaseFlags(flagsOf(cmd), &db)
	flagsOf(cmd).String(&runtimeRole, "runtime-role", "KEYBROKER_RUNTIME_ROLE", "", "PostgreSQL role the admin side (serve --mode=admin or all) connects as, to grant (it must exist)")
	flagsOf(cmd).String(&resolverRole, "resolver-role", "KEYBROKER_RESOLVER_ROLE", "", "PostgreSQL role the execution side (serve --mode=resolver or proxy) connects as, to grant (it must exist; may not be the runtime role)")
	return cmd
}
