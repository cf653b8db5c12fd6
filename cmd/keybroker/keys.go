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

func newKeysCommand() *cobra.Command {
	var addr, workspace, provider string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage workspace keys over the HTTP API (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&addr, "addr", envOr("KEYBROKER_ADDR", "http://127.0.0.1:8080"), "keybroker address (KEYBROKER_ADDR)")
	pf.StringVar(&workspace, "workspace", "", "workspace id")
	pf.StringVar(&provider, "provider", "", "provider id")
	pf.BoolVar(&asJSON, "json", false, "print JSON")

	newClient := func() (*client.Client, error) {
		return client.New(client.Config{Address: addr, Token: os.Getenv("KEYBROKER_TOKEN")})
	}
	need := func(names ...string) error {
		for _, n := range names {
			if (n == "workspace" && workspace == "") || (n == "provider" && provider == "") {
				return fmt.Errorf("--%s is required", n)
			}
		}
		return nil
	}
	printMeta := func(w io.Writer, metas ...client.KeyMetadata) error {
		if asJSON {
			return json.NewEncoder(w).Encode(metas)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROVIDER\tKEY\tVERSION\tUPDATED\tBY")
		for _, m := range metas {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.Provider, m.MaskedKey, m.Version, m.UpdatedAt.Format(time.RFC3339), m.UpdatedBy)
		}
		return tw.Flush()
	}

	list := &cobra.Command{Use: "list", Short: "List a workspace's keys (metadata only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace"); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			keys, err := c.ListKeys(cmd.Context(), workspace)
			if err != nil {
				return err
			}
			return printMeta(cmd.OutOrStdout(), keys...)
		}}
	get := &cobra.Command{Use: "get", Short: "Show one key's metadata", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace", "provider"); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			m, err := c.GetKey(cmd.Context(), workspace, provider)
			if err != nil {
				return err
			}
			return printMeta(cmd.OutOrStdout(), m)
		}}
	var ifVersion int
	set := &cobra.Command{Use: "set", Short: "Create or rotate a key, read from stdin or a prompt (never a flag)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace", "provider"); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
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
		}}
	set.Flags().IntVar(&ifVersion, "if-version", 0, "write only if this version is current (check-and-set)")
	del := &cobra.Command{Use: "delete", Short: "Delete a key; the workspace falls back to the platform's hosted key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace", "provider"); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			if err := c.DeleteKey(cmd.Context(), workspace, provider, ifVersion); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s/%s; calls now use the hosted key (billed)\n", workspace, provider)
			return nil
		}}
	del.Flags().IntVar(&ifVersion, "if-version", 0, "delete only if this version is current")
	versions := &cobra.Command{Use: "versions", Short: "List a key's versions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace", "provider"); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
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
		}}
	var toVersion int
	rollback := &cobra.Command{Use: "rollback", Short: "Make an earlier version current", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need("workspace", "provider"); err != nil {
				return err
			}
			if toVersion <= 0 {
				return errors.New("--version is required")
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			m, err := c.Rollback(cmd.Context(), workspace, provider, toVersion)
			if err != nil {
				return err
			}
			return printMeta(cmd.OutOrStdout(), m)
		}}
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
