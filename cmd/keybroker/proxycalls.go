package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/store"
)

func newProxyCallsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "proxy-calls", Short: "The records of calls through the credential proxy: list them (billing), prune them (retention)"}
	cmd.AddCommand(newProxyCallsListCommand(), newPruneCommand("Delete records of proxied calls older than --older-than (as the tables' owner)",
		`Delete the records of calls through the credential proxy older than
--older-than (e.g. 90d, 2160h), and record the prune in the audit trail. The
runtime role may only add them (the platform bills by them): only the role that
owns the tables (the one that runs keybroker migrate) deletes them. Run it from
a scheduled job with the owner's DATABASE_URL; serve never prunes.`,
		"proxied calls", (*store.Store).PruneProxyCalls))
	return cmd
}

func newProxyCallsListCommand() *cobra.Command {
	var api apiFlags
	var workspace, provider, since, until string
	var limit int
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List calls through the credential proxy, newest first, over the HTTP API (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
		Long: `List the calls made through the credential proxy, newest first: which key
served each (scope, key id, version), the provider's status, the duration, the
bytes sent back, and whether it was BYOK (the platform does not bill it).

--workspace lists one workspace's calls (its readers and admins, or an
operator); without it, every workspace's (operators only). --since and --until
take RFC 3339 times (2026-12-01T00:00:00Z) or an age (24h, 7d). --all follows
every page; with --json the calls are printed one JSON object per line, the
shape of GET /v1/proxy-calls, for a billing export.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := client.ProxyCallQuery{Provider: provider, Limit: limit}
			var err error
			if q.Since, err = parseWhen("--since", since); err != nil {
				return err
			}
			if q.Until, err = parseWhen("--until", until); err != nil {
				return err
			}
			c, err := api.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "AT\tWORKSPACE\tPROVIDER\tKEY\tVERSION\tSTATUS\tMS\tBYTES\tBYOK\tRETRIED\tCALLER")
			}
			for {
				var page client.ProxyCallPage
				if workspace != "" {
					page, err = c.ProxyCalls(cmd.Context(), workspace, q)
				} else {
					page, err = c.AllProxyCalls(cmd.Context(), q)
				}
				if err != nil {
					return err
				}
				for _, pc := range page.Calls {
					if asJSON {
						if err := enc.Encode(pc); err != nil {
							return err
						}
						continue
					}
					key := "-"
					if pc.KeyID != "" {
						key = pc.Scope + "/" + pc.KeyID
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%d\t%v\t%v\t%s\n", pc.At.Format(time.RFC3339), pc.Workspace, pc.Provider,
						key, pc.KeyVersion, pc.Status, pc.DurationMs, pc.BytesOut, pc.BYOK, pc.Retried, pc.Caller)
				}
				if !all || page.NextCursor == "" {
					break
				}
				q.Cursor = page.NextCursor
			}
			if !asJSON {
				return tw.Flush()
			}
			return nil
		},
	}
	api.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&workspace, "workspace", "", "one workspace's calls (none: every workspace's, operators only)")
	f.StringVar(&provider, "provider", "", "only calls to this provider")
	f.StringVar(&since, "since", "", "only calls at or after this time (RFC 3339) or this long ago (24h, 7d)")
	f.StringVar(&until, "until", "", "only calls before this time (RFC 3339) or this long ago")
	f.IntVar(&limit, "limit", 100, "calls per page (1-1000)")
	f.BoolVar(&all, "all", false, "follow every page, not only the newest")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per call and line")
	return cmd
}

// parseWhen reads an RFC 3339 time, or an age ("24h", "7d") back from
// now; "" is no bound.
func parseWhen(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	age, err := parseDaysOrDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: an RFC 3339 time (2026-12-01T00:00:00Z) or an age (24h, 7d)", flag, s)
	}
	if age < 0 {
		return time.Time{}, fmt.Errorf("%s %q: an age is not negative", flag, s)
	}
	return time.Now().Add(-age), nil
}
