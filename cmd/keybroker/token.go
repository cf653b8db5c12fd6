package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
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
	var databaseURL string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API bearer tokens (needs DATABASE_URL)",
	}
	envFlags{cmd.PersistentFlags()}.String(&databaseURL, "database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	withService := func(ctx context.Context, fn func(*auth.Service) error) error {
		if databaseURL == "" {
			return errors.New("no database: set DATABASE_URL or --database-url")
		}
		st, err := store.Open(ctx, databaseURL)
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(auth.NewService(st, -1))
	}

	var role, description string
	var workspaces []string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token; prints the token alone on stdout (once), details on stderr",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			return withService(cmd.Context(), func(s *auth.Service) error {
				token, rec, err := s.Create(cmd.Context(), auth.CreateRequest{
					Role: r, Workspaces: workspaces, TTL: ttl, Description: description, CreatedBy: cliActor(),
				})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				expires := "never"
				if rec.ExpiresAt != nil {
					expires = rec.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s: role %s, workspaces [%s], expires %s. The token is shown once; store it now.\n",
					rec.ID, rec.Role, strings.Join(rec.Workspaces, ","), expires)
				return nil
			})
		},
	}
	create.Flags().StringVar(&role, "role", "", "operator, admin, reader or resolver (required)")
	create.Flags().StringSliceVar(&workspaces, "workspace", nil, "workspace the admin or reader token may use (repeat for more)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 720h (default: no expiry)")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids and roles; never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withService(cmd.Context(), func(s *auth.Service) error {
				recs, err := s.List(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tROLE\tWORKSPACES\tCREATED\tEXPIRES\tSTATE\tDESCRIPTION")
				now := time.Now()
				for _, r := range recs {
					state, expires := "active", "never"
					if r.ExpiresAt != nil {
						expires = r.ExpiresAt.Format(time.RFC3339)
						if !now.Before(*r.ExpiresAt) {
							state = "expired"
						}
					}
					if r.RevokedAt != nil {
						state = "revoked"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, strings.Join(r.Workspaces, ","),
						r.CreatedAt.Format(time.RFC3339), expires, state, r.Description)
				}
				return w.Flush()
			})
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token; it is refused from the next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withService(cmd.Context(), func(s *auth.Service) error {
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
	token, _, err := auth.NewService(st, -1).Create(ctx, req)
	return token, err
}
