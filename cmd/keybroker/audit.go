package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/store"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Manage the audit trail (retention)"}
	cmd.AddCommand(newPruneCommand("Delete audit events older than --older-than (as the tables' owner)",
		`Delete the audit events older than --older-than (e.g. 400d, 9600h), and record
the prune itself in the trail. The trail is append-only for keybroker's runtime
role: only the role that owns the tables (the one that runs keybroker migrate)
can lift the trigger that guards it, for the prune's own transaction. Run it
from a scheduled job with the owner's DATABASE_URL; serve never prunes.`,
		"audit events", (*store.Store).PruneAudit))
	return cmd
}

// newPruneCommand is a "prune" command that deletes what prune deletes
// (named what) older than --older-than, with the owner's connection.
func newPruneCommand(short, long, what string, prune func(*store.Store, context.Context, time.Duration, string) (int64, error)) *cobra.Command {
	var db databaseSetting
	var olderThan string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
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
			n, err := prune(st, cmd.Context(), age, cliActor())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d %s older than %s\n", n, what, olderThan)
			return nil
		},
	}
	databaseFlags(flagsOf(cmd), &db)
	cmd.Flags().StringVar(&olderThan, "older-than", "", "age of what to delete: a duration (9600h) or days (400d); at least 1d (required)")
	_ = cmd.MarkFlagRequired("older-than")
	return cmd
}

// parseDaysOrDuration reads whole days ("400d") or a Go duration
// ("9600h").
func parseDaysOrDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, errors.New("days must be a whole number (400d)")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("use days (400d) or a duration (9600h)")
	}
	return d, nil
}

// parseAge reads "400d" or a Go duration; at least a day, so that a typo
// cannot empty the trail.
func parseAge(s string) (time.Duration, error) {
	d, err := parseDaysOrDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--older-than %q: %w", s, err)
	}
	if d < 24*time.Hour {
		return 0, fmt.Errorf("--older-than %q: at least one day (1d)", s)
	}
	return d, nil
}
