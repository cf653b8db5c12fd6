package main

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// The token commands talk to PostgreSQL directly (DATABASE_URL, as the
// owner): they are how an operator gets the first token, before any caller
// of the API exists, and the only way to mint a resolver token (a token
// that obtains keys) or one with no expiry. They sign the rows they write
// with the keyring of the token's kind, from the environment
// (KEYBROKER_ADMIN_TOKEN_KEYS, KEYBROKER_RESOLVER_KEYS).

// tokenKeysFromEnv reads the signing keyrings the token commands use.
func tokenKeysFromEnv() (auth.RowKeys, error) {
	return rowKeys(os.Getenv("KEYBROKER_ADMIN_TOKEN_KEYS"), os.Getenv("KEYBROKER_RESOLVER_KEYS"))
}

// rowKeys parses the two keyrings.
func rowKeys(adminKeys, resolverKeys string) (auth.RowKeys, error) {
	admin, err := keyring.Parse(adminKeys)
	if err != nil {
		return auth.RowKeys{}, fmt.Errorf("KEYBROKER_ADMIN_TOKEN_KEYS: %w", err)
	}
	resolver, err := keyring.Parse(resolverKeys)
	if err != nil {
		return auth.RowKeys{}, fmt.Errorf("KEYBROKER_RESOLVER_KEYS: %w", err)
	}
	return auth.RowKeys{Admin: admin, Resolver: resolver}, nil
}

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
		keys, err := tokenKeysFromEnv()
		if err != nil {
			return err
		}
		return fn(auth.NewService(st, auth.Options{TrustWithoutStore: -1, Keys: keys}))
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
					Role: r, Workspaces: workspaces, Organizations: organizations, TTL: ttl, NoExpiry: noExpiry, Description: description, CreatedBy: cliActor(), Via: auth.ViaCLI,
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
				fmt.Fprintln(w, "ID\tROLE\tSCOPES\tCREATED\tEXPIRES\tSTATE\tSIGNED\tDESCRIPTION")
				unsigned := 0
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
					signed := signedText(s, r)
					if signed == "NO" && r.RevokedAt == nil {
						unsigned++
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, tokenScopes(r),
						r.CreatedAt.Format(time.RFC3339), expires, state, signed, r.Description)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if unsigned > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d active token row(s) carry no valid signature: keybroker refuses them. A row keybroker v2 wrote "+
						"(or one signed with a retired key) may be signed anew with `keybroker token sign ID`; a row nobody here minted was written "+
						"outside keybroker: revoke it and find out who could.\n", unsigned)
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
	sign := &cobra.Command{
		Use:   "sign TOKEN_ID...",
		Short: "Sign token rows anew with the current key of their kind (after an upgrade from v2 or a key rotation); audited",
		Long: `Sign token rows anew with the current key of their kind.

keybroker accepts a token only when its row carries a signature of the
deployment's keys (KEYBROKER_ADMIN_TOKEN_KEYS for operator, admin and reader
tokens, KEYBROKER_RESOLVER_KEYS for resolver tokens), which the database does
not hold. Rows written by keybroker v2, or signed with a key since retired,
are refused until signed again. Sign only rows you know were minted by
keybroker: "keybroker token list" shows which ones carry no valid signature.
A row that nobody minted was written outside keybroker.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withService(cmd, func(s *auth.Service) error {
				for _, id := range args {
					rec, err := s.Get(cmd.Context(), id)
					if err != nil {
						return err
					}
					if rec.RevokedAt != nil {
						return fmt.Errorf("token %s is revoked: nothing to sign", id)
					}
					if err := s.SignRow(cmd.Context(), rec, cliActor()); err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "signed %s (role %s)\n", id, rec.Role)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke, sign)
	return cmd
}

// cliActor names the person running the CLI in audit events.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
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
func tokenScopes(r auth.TokenRecord) string {
	scopes := slices.Clone(r.Workspaces)
	for _, org := range r.Organizations {
		scopes = append(scopes, "org:"+org)
	}
	if len(scopes) == 0 {
		return "-"
	}
	return strings.Join(scopes, ",")
}

// signedText says whether a row carries a valid signature of the keys in
// the environment ("?" when the keyring of its kind is not set here).
func signedText(s *auth.Service, r auth.TokenRecord) string {
	switch {
	case s.Signed(r):
		return "yes"
	case !s.CanVerify(auth.Role(r.Role)):
		return "?"
	}
	return "NO"
}
