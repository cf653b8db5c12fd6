package main

import (
	"context"
	"fmt"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/store"
)

// The token commands talk to PostgreSQL directly (DATABASE_URL): they are
// how an operator gets the first token, before any caller of the API exists.

func newTokenCommand() *cobra.Command {
	var db databaseSetting
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API bearer tokens (needs DATABASE_URL)",
	}
	databaseFlags(envFlags{cmd.PersistentFlags()}, &db)
	withService := func(cmd *cobra.Command, fn func(*auth.Service) error) error {
		st, err := db.open(cmd.Context(), cmd)
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(auth.NewService(st, auth.Options{TrustWithoutStore: -1}))
	}

	var role, description string
	var workspaces, organizations []string
	var ttl time.Duration
	var noExpiry bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token; prints the token alone on stdout (once), details on stderr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			return withService(cmd, func(s *auth.Service) error {
				token, rec, err := s.Create(cmd.Context(), auth.CreateRequest{
					Role: r, Workspaces: workspaces, Organizations: organizations, TTL: ttl, NoExpiry: noExpiry, Description: description, CreatedBy: cliActor(),
				})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				expires := "never"
				if rec.ExpiresAt != nil {
					expires = rec.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s: role %s, workspaces [%s], organizations [%s], expires %s. The token is shown once; store it now.\n",
					rec.ID, rec.Role, strings.Join(rec.Workspaces, ","), strings.Join(rec.Organizations, ","), expires)
				if noExpiry {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning: this token never expires; revoke it when it is no longer needed (keybroker token revoke "+rec.ID+")")
				}
				return nil
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "operator, admin, reader or resolver (required)")
	create.Flags().StringSliceVar(&workspaces, "workspace", nil, "workspace the admin or reader token may use, or the resolver token is limited to (repeat for more)")
	create.Flags().StringSliceVar(&organizations, "organization", nil, "organization whose pools the admin or reader token may use (repeat for more); not its workspaces")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 720h (default: 2160h = 90 days; operator tokens 720h = 30 days, which is also their maximum)")
	create.Flags().BoolVar(&noExpiry, "no-expiry", false, "a token that never expires (must be asked for by name)")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids and roles; never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd, func(s *auth.Service) error {
				recs, err := s.List(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tROLE\tSCOPES\tCREATED\tEXPIRES\tSTATE\tDESCRIPTION")
				now := time.Now()
				soon := 0
				for _, r := range recs {
					state, expires := "active", "never"
					if r.ExpiresAt != nil {
						expires = r.ExpiresAt.Format(time.RFC3339)
						switch left := r.ExpiresAt.Sub(now); {
						case left <= 0:
							state = "expired"
						case left <= expiresSoon:
							state = fmt.Sprintf("active, EXPIRES IN %s", humanDuration(left))
							if r.RevokedAt == nil {
								soon++
							}
						}
					} else if r.RevokedAt == nil {
						state = "active, never expires"
					}
					if r.RevokedAt != nil {
						state = "revoked"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, tokenScopes(r),
						r.CreatedAt.Format(time.RFC3339), expires, state, r.Description)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if soon > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d token(s) expire within %s: create their successors now.\n", soon, humanDuration(expiresSoon))
				}
				return nil
			})
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token; it is refused from the next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withService(cmd, func(s *auth.Service) error {
				if err := s.Revoke(cmd.Context(), args[0], cliActor(), "", ""); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "revoked %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// cliActor names the person running the CLI in audit events.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// createToken creates a token in the database at databaseURL (for
// `keybroker dev`).
func createToken(ctx context.Context, databaseURL string, req auth.CreateRequest) (string, error) {
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return "", err
	}
	defer st.Close()
	token, _, err := auth.NewService(st, auth.Options{TrustWithoutStore: -1}).Create(ctx, req)
	return token, err
}

// expiresSoon is how far ahead `token list` warns of expiring tokens.
const expiresSoon = 14 * 24 * time.Hour

// humanDuration says d in days (or hours, under two days).
func humanDuration(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// tokenScopes names what a token reaches: "ws1,org:acme"; "-" for none.
func tokenScopes(r store.TokenRecord) string {
	scopes := slices.Clone(r.Workspaces)
	for _, org := range r.Organizations {
		scopes = append(scopes, "org:"+org)
	}
	if len(scopes) == 0 {
		return "-"
	}
	return strings.Join(scopes, ",")
}
