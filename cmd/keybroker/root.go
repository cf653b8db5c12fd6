package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
	root.AddCommand(newServeCommand(), newDevCommand(), newMigrateCommand(), newTokenCommand(), newKeysCommand(), newVaultCommand(), newReconcileCommand(), newWorkspacesCommand(), newAuditCommand(), newVersionCommand())
	root.AddCommand(newDocsCommand(root))
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keybroker's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "keybroker", version)
		},
	}
}
