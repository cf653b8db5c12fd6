package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Manage the audit trail (retention)"}
	var db databaseSetting
	var olderThan string
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete audit events older than --older-than (as the tables' owner)",
		Long: `Delete the audit events older than --older-than (e.g. 400d, 9600h), and record
the prune itself in the trail. The trail is append-only for keybroker's runtime
role: only the role that owns the tables (the one that runs keybroker migrate)
can lift the trigger that guards it, for the prune's own transaction. Run it
from a scheduled job with the owner's DATABASE_URL; serve never prunes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			age, err := parseAge(olderThan)
			if err != nil {
				return err
			}
			st, err := db.open(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.PruneAudit(cmd.Context(), age, cliActor())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d audit events older than %s\n", n, olderThan)
			return nil
		},
	}
	databaseFlags(flagsOf(prune), &db)
	prune.Flags().StringVar(&olderThan, "older-than", "", "age of the events to delete: a duration (9600h) or days (400d); at least 1d (required)")
	_ = prune.MarkFlagRequired("older-than")
	cmd.AddCommand(prune)
	return cmd
}

// parseAge reads "400d" or a Go duration; at least a day, so that a typo
// cannot empty the trail.
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("--older-than %q: days must be a whole number (400d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("--older-than %q: use days (400d) or a duration (9600h)", s)
		}
	}
	if d < 24*time.Hour {
		return 0, fmt.Errorf("--older-than %q: at least one day (1d)", s)
	}
	return d, nil
}
