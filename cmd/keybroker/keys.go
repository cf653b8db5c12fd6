package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/keybroker/keybroker/client"
)

// The keys commands are a thin admin CLI over the HTTP API (package
// client), configured by KEYBROKER_ADDR and KEYBROKER_TOKEN.

// apiFlags are how the API commands reach keybroker: the address and TLS
// settings as flags (or variables), the token from KEYBROKER_TOKEN only.
type apiFlags struct {
	cfg client.Config
}

func (a *apiFlags) bind(cmd *cobra.Command) {
	f := envFlags{cmd.PersistentFlags()}
	f.String(&a.cfg.Address, "addr", "KEYBROKER_ADDR", "http://127.0.0.1:8080", "keybroker address")
	f.String(&a.cfg.CACertFile, "cacert", "KEYBROKER_CACERT", "", "PEM file of CAs to trust for keybroker's certificate")
	f.String(&a.cfg.ClientCertFile, "client-cert", "KEYBROKER_CLIENT_CERT", "", "client certificate (PEM) for a keybroker that requires mutual TLS")
	f.String(&a.cfg.ClientKeyFile, "client-key", "KEYBROKER_CLIENT_KEY", "", "client certificate's key (PEM)")
	f.Bool(&a.cfg.AllowInsecureHTTP, "insecure-http", "KEYBROKER_INSECURE_HTTP", false, "allow http:// to a host that is not loopback")
}

func (a *apiFlags) client() (*client.Client, error) {
	cfg := a.cfg
	cfg.Token = os.Getenv("KEYBROKER_TOKEN")
	return client.New(cfg)
}

func newKeysCommand() *cobra.Command {
	var workspace, provider string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage workspace keys over the HTTP API (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
	}
	var api apiFlags
	api.bind(cmd)
	pf := cmd.PersistentFlags()
	pf.StringVar(&workspace, "workspace", "", "workspace id")
	pf.StringVar(&provider, "provider", "", "provider id")
	pf.BoolVar(&asJSON, "json", false, "print JSON")

	// command builds a subcommand that needs --workspace (and, with
	// needProvider, --provider) and an API client.
	command := func(use, short string, needProvider bool, run func(*cobra.Command, *client.Client) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if workspace == "" {
					return errors.New("--workspace is required")
				}
				if needProvider && provider == "" {
					return errors.New("--provider is required")
				}
				c, err := api.client()
				if err != nil {
					return err
				}
				return run(cmd, c)
			}}
	}
	// printMetas prints a list (a JSON array with --json); printMeta one
	// key (a JSON object).
	var printMetas func(w io.Writer, metas []client.KeyMetadata) error
	printMeta := func(w io.Writer, m client.KeyMetadata) error {
		if asJSON {
			return json.NewEncoder(w).Encode(m)
		}
		return printMetas(w, []client.KeyMetadata{m})
	}
	printMetas = func(w io.Writer, metas []client.KeyMetadata) error {
		if asJSON {
			return json.NewEncoder(w).Encode(metas)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROVIDER\tKEY\tVERSION\tUPDATED\tBY\tRESOLVES\tLAST USED")
		for _, m := range metas {
			last := "never"
			if !m.LastUsedAt.IsZero() {
				last = m.LastUsedAt.Format(time.RFC3339)
			}
			if m.Idle {
				last += " (idle: unused for 90 days)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", m.Provider, m.MaskedKey, m.Version, m.UpdatedAt.Format(time.RFC3339), m.UpdatedBy,
				m.Resolves, last)
		}
		return tw.Flush()
	}

	list := command("list", "List a workspace's keys (metadata only)", false, func(cmd *cobra.Command, c *client.Client) error {
		keys, err := c.ListKeys(cmd.Context(), workspace)
		if err != nil {
			return err
		}
		return printMetas(cmd.OutOrStdout(), keys)
	})
	get := command("get", "Show one key's metadata", true, func(cmd *cobra.Command, c *client.Client) error {
		m, err := c.GetKey(cmd.Context(), workspace, provider)
		if err != nil {
			return err
		}
		return printMeta(cmd.OutOrStdout(), m)
	})
	var ifVersion int
	set := command("set", "Create or rotate a key, read from stdin or a prompt (never a flag)", true, func(cmd *cobra.Command, c *client.Client) error {
		key, err := readKey(cmd.InOrStdin(), cmd.ErrOrStderr(), provider)
		if err != nil {
			return err
		}
		m, created, err := c.SetKey(cmd.Context(), workspace, provider, key, ifVersion)
		if err != nil {
			return err
		}
		verb := "rotated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s %s/%s: %s, version %d\n", verb, workspace, provider, m.MaskedKey, m.Version)
		return printMeta(cmd.OutOrStdout(), m)
	})
	set.Flags().IntVar(&ifVersion, "if-version", 0, "write only if this version is current (check-and-set)")
	var destroy bool
	del := command("delete", "Delete a key; calls fall back to the platform's hosted key, if there is one", true, func(cmd *cobra.Command, c *client.Client) error {
		// What is true for the calls depends on whether the platform has a
		// hosted key for the provider, which an admin's token cannot see.
		const after = "calls for it now use the platform's hosted key if one exists (billed to the workspace), else fail with no_key"
		if destroy {
			if err := c.DestroyKey(cmd.Context(), workspace, provider, ifVersion); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s/%s and destroyed every version in Vault; %s\n", workspace, provider, after)
			return nil
		}
		if err := c.DeleteKey(cmd.Context(), workspace, provider, ifVersion); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s/%s; %s. The older versions remain in Vault "+
			"(readable by Vault's operators, restorable with rollback after a new write); --destroy removes them all\n", workspace, provider, after)
		return nil
	})
	del.Long = "Delete a key. A plain delete soft-deletes the current version in Vault; the older versions stay there. --destroy destroys every version, for good."
	del.Flags().IntVar(&ifVersion, "if-version", 0, "delete only if this version is current")
	del.Flags().BoolVar(&destroy, "destroy", false, "destroy every version in Vault, not only the current one")
	versions := command("versions", "List a key's versions", true, func(cmd *cobra.Command, c *client.Client) error {
		vs, err := c.Versions(cmd.Context(), workspace, provider)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(vs)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tCREATED\tSTATE")
		for _, v := range vs {
			state := "available"
			switch {
			case v.Current:
				state = "current"
			case v.Destroyed:
				state = "destroyed"
			case v.DeletedAt != nil:
				state = "deleted"
			}
			if v.Current && v.DeletedAt != nil {
				state = "current, deleted"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.CreatedAt.Format(time.RFC3339), state)
		}
		return tw.Flush()
	})
	var toVersion int
	rollback := command("rollback", "Make an earlier version current", true, func(cmd *cobra.Command, c *client.Client) error {
		if toVersion <= 0 {
			return errors.New("--version is required")
		}
		m, err := c.Rollback(cmd.Context(), workspace, provider, toVersion)
		if err != nil {
			return err
		}
		return printMeta(cmd.OutOrStdout(), m)
	})
	rollback.Flags().IntVar(&toVersion, "version", 0, "the version to make current again")
	cmd.AddCommand(list, get, set, del, versions, rollback)
	return cmd
}

// readKey reads the key from a terminal prompt with echo off, or from the
// first line of stdin when it is not a terminal.
func readKey(in io.Reader, prompt io.Writer, provider string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "API key for %s (not echoed): ", provider)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the key from the terminal: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the key from stdin: %w", err)
	}
	key := strings.TrimRight(line, "\r\n")
	if key == "" {
		return "", errors.New("no key on stdin (pipe it in, or run in a terminal to be prompted)")
	}
	return key, nil
}
