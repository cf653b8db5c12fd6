package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/internal/runtime/buildinfo"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "keybroker",
		Short:         "Vault-backed secrets broker for bring-your-own-key API keys",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags that an environment variable may set take it now, so that
		// a bad value stops the command before it does anything.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd) },
	}
	root.AddCommand(newServeCommand(), newDevCommand(), newMigrateCommand(), newTokenCommand(), newKeysCommand(), newVaultCommand(), newReconcileCommand(), newWorkspacesCommand(), newAuditCommand(), newProxyCallsCommand(), newLoginCommand(), newLogoutCommand(), newWhoAmICommand(), newVersionCommand())
	root.AddCommand(newDocsCommand(root))
	return root
}

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print keybroker's version, the commit it was built from and that commit's date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := buildinfo.Get()
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(bi)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "keybroker", bi)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print it as JSON: version, commit, modified, date, goVersion")
	return cmd
}
