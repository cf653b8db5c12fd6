package main

import (
	"bufio"
	"context"
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

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
)

// The keys commands are a thin admin CLI over the HTTP API (package
// client), configured by KEYBROKER_ADDR and KEYBROKER_TOKEN.

// apiFlags are how the API commands reach keybroker: the address and TLS
// settings as flags (or variables), the token from KEYBROKER_TOKEN only,
// else the session of keybroker login (login_session.go).
type apiFlags struct {
	cfg client.Config
	cmd *cobra.Command
}

func (a *apiFlags) bind(cmd *cobra.Command) {
	a.cmd = cmd
	f := envFlags{cmd.PersistentFlags()}
	f.String(&a.cfg.Address, "addr", "KEYBROKER_ADDR", "http://127.0.0.1:8080", "keybroker address")
	f.String(&a.cfg.CACertFile, "cacert", "KEYBROKER_CACERT", "", "PEM file of CAs to trust for keybroker's certificate")
	f.String(&a.cfg.ClientCertFile, "client-cert", "KEYBROKER_CLIENT_CERT", "", "client certificate (PEM) for a keybroker that requires mutual TLS")
	f.String(&a.cfg.ClientKeyFile, "client-key", "KEYBROKER_CLIENT_KEY", "", "client certificate's key (PEM)")
	f.Bool(&a.cfg.AllowInsecureHTTP, "insecure-http", "KEYBROKER_INSECURE_HTTP", false, "allow http:// to a host that is not loopback")
}

func (a *apiFlags) client() (*client.Client, error) {
	cfg := a.cfg
	var err error
	if cfg.Token, cfg.Address, err = tokenFor(cfg.Address, a.addressGiven()); err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// addressGiven says whether --addr or KEYBROKER_ADDR named the address
// (else the default, or the session's, is used).
func (a *apiFlags) addressGiven() bool {
	if _, ok := os.LookupEnv("KEYBROKER_ADDR"); ok {
		return true
	}
	f := a.cmd.PersistentFlags().Lookup("addr")
	return f != nil && f.Changed
}

// keyTarget is what the keys commands act on: one scope (--workspace,
// --organization or --hosted), a provider and a key id.
type keyTarget struct {
	workspace, organization string
	hosted                  bool
	provider, keyID         string
}

func (t *keyTarget) scope() (client.Scope, error) {
	n := 0
	for _, set := range []bool{t.workspace != "", t.organization != "", t.hosted} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return client.Scope{}, errors.New("name one scope: --workspace WS, --organization ORG or --hosted")
	case t.workspace != "":
		return client.Workspace(t.workspace), nil
	case t.organization != "":
		return client.Organization(t.organization), nil
	}
	return client.Hosted(), nil
}

func (t *keyTarget) ref() (client.KeyRef, error) {
	sc, err := t.scope()
	if err != nil {
		return client.KeyRef{}, err
	}
	if t.provider == "" {
		return client.KeyRef{}, errors.New("--provider is required")
	}
	return client.KeyRef{Scope: sc, Provider: t.provider, KeyID: t.keyID}, nil
}

// name is how the messages name a key: "workspace ws1/openai/default".
func (t *keyTarget) name(keyID string) string {
	sc, _ := t.scope()
	return sc.String() + "/" + t.provider + "/" + keyID
}

func newKeysCommand() *cobra.Command {
	var target keyTarget
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the keys of a workspace, an organization or the hosted pool over the HTTP API (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
		Long: `Manage keys over the HTTP API. Every command names one scope (--workspace WS,
--organization ORG, or --hosted for the platform's own keys, operators only)
and, but for list, a --provider. A pool (one scope's keys for one provider)
holds up to 10 keys, named by --key (default "default", the key the v1 routes
manage). An API key is read from stdin or a prompt, never from a flag; a
credential of another kind takes its non-secret fields as --field NAME=VALUE
and each secret field from --secret-file NAME=PATH, --secret-stdin NAME or a
prompt, never from a flag value.`,
	}
	var api apiFlags
	api.bind(cmd)
	pf := cmd.PersistentFlags()
	pf.StringVar(&target.workspace, "workspace", "", "workspace id")
	pf.StringVar(&target.organization, "organization", "", "organization id")
	pf.BoolVar(&target.hosted, "hosted", false, "the platform's hosted keys (operators)")
	pf.StringVar(&target.provider, "provider", "", "provider id")
	pf.StringVar(&target.keyID, "key", broker.DefaultKeyID, "key id within the pool")
	pf.BoolVar(&asJSON, "json", false, "print JSON")

	// command builds a subcommand that needs a scope (and, with
	// needProvider, --provider) and an API client.
	command := func(use, short string, needProvider bool, run func(*cobra.Command, *client.Client) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if _, err := target.scope(); err != nil {
					return err
				}
				if needProvider && target.provider == "" {
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
		fmt.Fprintln(tw, "PROVIDER\tKEY ID\tNAME\tPRIORITY\tSTATE\tHEALTH\tEXPIRES\tMODELS\tKEY\tVERSION\tUPDATED\tBY\tRESOLVES\tLAST USED")
		for _, m := range metas {
			last := "never"
			if !m.LastUsedAt.IsZero() {
				last = m.LastUsedAt.Format(time.RFC3339)
			}
			if m.Idle {
				last += " (idle: unused for 90 days)"
			}
			models := "all"
			if len(m.Models) > 0 {
				models = strings.Join(m.Models, ",")
			}
			name := m.Name
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", m.Provider, m.KeyID, name, m.Priority, m.State, healthInWords(m), expiryInWords(m), models,
				m.MaskedKey, m.Version, m.UpdatedAt.Format(time.RFC3339), m.UpdatedBy, m.Resolves, last)
		}
		return tw.Flush()
	}

	list := command("list", "List the keys of a scope, or of one pool with --provider (metadata only)", false, func(cmd *cobra.Command, c *client.Client) error {
		sc, _ := target.scope()
		var keys []client.KeyMetadata
		switch {
		case target.provider != "":
			pool, err := c.Pool(cmd.Context(), sc, target.provider)
			if err != nil {
				return err
			}
			keys = pool
		case target.workspace != "":
			all, err := c.ListKeys(cmd.Context(), target.workspace)
			if err != nil {
				return err
			}
			keys = all
		default:
			providers, err := c.Providers(cmd.Context())
			if err != nil {
				return err
			}
			for _, p := range providers {
				pool, err := c.Pool(cmd.Context(), sc, p.ID)
				if err != nil {
					return err
				}
				keys = append(keys, pool...)
			}
		}
		if keys == nil {
			keys = []client.KeyMetadata{}
		}
		return printMetas(cmd.OutOrStdout(), keys)
	})
	get := command("get", "Show one key's metadata", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		m, err := c.Key(cmd.Context(), ref)
		if err != nil {
			return err
		}
		return printMeta(cmd.OutOrStdout(), m)
	})

	var member struct {
		name, state          string
		priority             int
		models               []string
		expiresAt, accountID string
	}
	memberFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&member.expiresAt, "expires-at", "", `when the key stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z; "" removes it on update): not served after, "expiring" within the warning window`)
		c.Flags().StringVar(&member.accountID, "provider-key-id", "", "the key's id at its provider (an OpenAI service account id, an Anthropic API key id), for rotation and revocation there")
		c.Flags().StringVar(&member.name, "name", "", "a name people recognise (at most 120 characters)")
		c.Flags().IntVar(&member.priority, "priority", broker.DefaultPriority, "lower serves first; equal priorities take turns (0-1000)")
		c.Flags().StringVar(&member.state, "state", "", "active or disabled (a disabled key never serves)")
		c.Flags().StringSliceVar(&member.models, "models", nil, "the only models the key serves (comma-separated; none: every model)")
	}
	var verify bool
	var creds credFlags
	add := command("add", "Add a key to a pool (secrets from stdin, a file or a prompt, never a flag value); --key names it (else an id is generated)", true, func(cmd *cobra.Command, c *client.Client) error {
		sc, _ := target.scope()
		key, cred, err := creds.read(cmd, c, target.provider)
		if err != nil {
			return err
		}
		req := client.AddKeyRequest{APIKey: key, Credential: cred, Name: member.name, State: member.state, Models: member.models,
			ProviderKeyID: member.accountID}
		if member.expiresAt != "" {
			t, err := time.Parse(time.RFC3339, member.expiresAt)
			if err != nil {
				return errors.New("--expires-at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
			}
			req.ExpiresAt = &t
		}
		if cmd.Flags().Changed("key") {
			req.KeyID = target.keyID
		}
		if cmd.Flags().Changed("priority") {
			req.Priority = &member.priority
		}
		add := c.AddKey
		if verify {
			add = c.AddCheckedKey
		}
		m, err := add(cmd.Context(), sc, target.provider, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "added %s: %s, version %d, priority %d\n", target.name(m.KeyID), shown(m, cred), m.Version, m.Priority)
		return printMeta(cmd.OutOrStdout(), m)
	})
	memberFlags(add)
	creds.bind(add)
	checkFlags(add, &verify)
	var ifVersion int
	var atProvider bool
	var grace time.Duration
	rotate := command("rotate", "Rotate a key (or create it with the default settings); secrets from stdin, a file or a prompt, never a flag value. With --at-provider, keybroker makes the new key at the provider itself", true,
		func(cmd *cobra.Command, c *client.Client) error {
			ref, _ := target.ref()
			if atProvider {
				return rotateAtProvider(cmd, c, ref, target.name(ref.KeyID), grace, asJSON)
			}
			key, cred, err := creds.read(cmd, c, target.provider)
			if err != nil {
				return err
			}
			put := c.PutKey
			if verify {
				put = c.PutCheckedKey
			}
			if cred != nil {
				put = func(ctx context.Context, ref client.KeyRef, _ string, ifVersion int) (client.KeyMetadata, bool, error) {
					return c.PutCredential(ctx, ref, cred, ifVersion, verify)
				}
			}
			m, created, err := put(cmd.Context(), ref, key, ifVersion)
			if err != nil {
				return err
			}
			verb := "rotated"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: %s, version %d\n", verb, target.name(ref.KeyID), shown(m, cred), m.Version)
			return printMeta(cmd.OutOrStdout(), m)
		})
	rotate.Aliases = []string{"set"}
	rotate.Flags().IntVar(&ifVersion, "if-version", 0, "write only if this version is current (check-and-set)")
	rotate.Flags().BoolVar(&atProvider, "at-provider", false, "create the new key at the provider with the scope's admin credential, verify it, swap it in and delete the old one after --grace (docs/lifecycle.md); no secret is read")
	rotate.Flags().DurationVar(&grace, "grace", 0, "with --at-provider: how long the old key lives at the provider after the new one serves (default: the server's, 1h)")
	checkFlags(rotate, &verify)
	creds.bind(rotate)
	check := command("check", "Ask the key's provider whether it accepts the key (never shows the key)", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		r, err := c.CheckKey(cmd.Context(), ref)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s); the key is now %s\n", target.name(ref.KeyID), r.Result, r.Detail, r.Health)
		if r.Result == "refused" {
			return fmt.Errorf("%s refused the key", target.provider)
		}
		return nil
	})
	update := command("update", "Change a key's name, priority, state, models, expiry or id at the provider (never the key)", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		var req client.UpdateKeyRequest
		if cmd.Flags().Changed("name") {
			req.Name = &member.name
		}
		if cmd.Flags().Changed("priority") {
			req.Priority = &member.priority
		}
		if cmd.Flags().Changed("state") {
			req.State = &member.state
		}
		if cmd.Flags().Changed("models") {
			req.Models = &member.models
		}
		if cmd.Flags().Changed("expires-at") {
			req.ExpiresAt = &member.expiresAt
		}
		if cmd.Flags().Changed("provider-key-id") {
			req.ProviderKeyID = &member.accountID
		}
		if req.Name == nil && req.Priority == nil && req.State == nil && req.Models == nil && req.ExpiresAt == nil && req.ProviderKeyID == nil {
			return errors.New("nothing to change: give --name, --priority, --state, --models (--models '' lets the key serve every model), --expires-at or --provider-key-id")
		}
		m, err := c.UpdateKey(cmd.Context(), ref, req)
		if err != nil {
			return err
		}
		return printMeta(cmd.OutOrStdout(), m)
	})
	memberFlags(update)
	var destroy, revokeAtProvider bool
	del := command("delete", "Delete a key from its pool", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		// What serves next depends on the pool's other keys and the
		// workspace's settings: say where to look rather than guess.
		const after = "the pool no longer serves it: calls use the pool's other usable keys, else the next scope the workspace's settings allow " +
			"(`keybroker workspaces effective` shows which)"
		if revokeAtProvider {
			rv, err := c.RevokeKey(cmd.Context(), ref, ifVersion, destroy)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(rv)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s; %s\n", target.name(ref.KeyID), after)
			return revocationInWords(cmd.OutOrStdout(), rv)
		}
		if err := c.RemoveKey(cmd.Context(), ref, ifVersion, destroy); err != nil {
			return err
		}
		if destroy {
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s and destroyed every version in Vault; %s\n", target.name(ref.KeyID), after)
			return nil
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s; %s. The older versions remain in Vault "+
			"(readable by Vault's operators, restorable with rollback after a new write); --destroy removes them all\n", target.name(ref.KeyID), after)
		return nil
	})
	del.Long = "Delete a key. A plain delete soft-deletes the current version in Vault; the older versions stay there. --destroy destroys every version, for good."
	del.Flags().IntVar(&ifVersion, "if-version", 0, "delete only if this version is current")
	del.Flags().BoolVar(&destroy, "destroy", false, "destroy every version in Vault, not only the current one")
	del.Flags().BoolVar(&revokeAtProvider, "revoke-at-provider", false, "also revoke the key at its provider with the scope's admin credential (OpenAI: delete; Anthropic: set inactive; docs/lifecycle.md)")
	versions := command("versions", "List a key's versions", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		vs, err := c.KeyVersions(cmd.Context(), ref)
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
		ref, _ := target.ref()
		m, err := c.RollbackKey(cmd.Context(), ref, toVersion)
		if err != nil {
			return err
		}
		return printMeta(cmd.OutOrStdout(), m)
	})
	rollback.Flags().IntVar(&toVersion, "version", 0, "the version to make current again")
	check.Aliases = []string{"test"}
	var since string
	usage := command("usage", "Where a key is used: per version, resolves and proxied calls by day and by resolver token or proxy caller", true,
		func(cmd *cobra.Command, c *client.Client) error {
			ref, _ := target.ref()
			var from time.Time
			if since != "" {
				var err error
				if from, err = time.Parse(time.DateOnly, since); err != nil {
					return errors.New("--since must be a date, e.g. 2027-01-31")
				}
			}
			u, err := c.KeyUsage(cmd.Context(), ref, from)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(u)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tDAY\tCALLER\tRESOLVES\tPROXIED CALLS")
			for _, v := range u.Versions {
				for _, d := range v.Days {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\n", v.Version, d.Day, d.Caller, d.Resolves, d.ProxiedCalls)
				}
			}
			return tw.Flush()
		})
	usage.Flags().StringVar(&since, "since", "", "from this day (default: 30 days ago)")
	rotations := command("rotations", "A key's rotations at the provider, newest first", true, func(cmd *cobra.Command, c *client.Client) error {
		ref, _ := target.ref()
		rs, err := c.Rotations(cmd.Context(), ref)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(rs)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROTATION\tSTARTED\tTRIGGER\tSTEP\tSTATE\tNEW KEY\tERROR")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.StartedAt.Format(time.RFC3339), r.Trigger, r.Step, r.State, r.NewKeyID, r.Error)
		}
		return tw.Flush()
	})
	var rotateAfter string
	lifecycle := command("lifecycle", "Show a scope's key lifecycle settings, or set its rotateAfter with --rotate-after (90d, 36h; '' for no schedule)", false,
		func(cmd *cobra.Command, c *client.Client) error {
			sc, _ := target.scope()
			var ls client.LifecycleSettings
			var err error
			if cmd.Flags().Changed("rotate-after") {
				ls, err = c.PutLifecycle(cmd.Context(), sc, rotateAfter)
			} else {
				ls, err = c.Lifecycle(cmd.Context(), sc)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(ls)
			}
			if ls.RotateAfter == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: no rotation schedule\n", sc)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: keys are rotated at their provider after %s (where its admin API can; the others get expiry warnings only)\n", sc, ls.RotateAfter)
			return nil
		})
	lifecycle.Flags().StringVar(&rotateAfter, "rotate-after", "", "the longest a key of the scope lives: 90d, 36h; '' removes the schedule")
	cmd.AddCommand(list, get, add, rotate, update, check, del, versions, rollback, usage, rotations, lifecycle)
	return cmd
}

// rotateAtProvider is keys rotate --at-provider.
func rotateAtProvider(cmd *cobra.Command, c *client.Client, ref client.KeyRef, name string, grace time.Duration, asJSON bool) error {
	var g *time.Duration
	if cmd.Flags().Changed("grace") {
		g = &grace
	}
	r, err := c.RotateKey(cmd.Context(), ref, g)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rotated %s at the provider: %s serves now (its id there: %s)", name, r.NewKeyID, r.NewProviderKeyID)
	if r.DeleteAfter != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "; the old key is disabled and is deleted at the provider after %s", r.DeleteAfter.Format(time.RFC3339))
	}
	fmt.Fprintf(cmd.OutOrStdout(), " (rotation %s)\n", r.ID)
	return nil
}

// revocationInWords says what a revocation at the provider did.
func revocationInWords(w io.Writer, rv client.Revocation) error {
	switch rv.State {
	case "done":
		if rv.AlreadyGone {
			_, err := fmt.Fprintf(w, "at the provider: %s was already gone\n", rv.ProviderKeyID)
			return err
		}
		_, err := fmt.Fprintf(w, "at the provider: %s %s\n", rv.ProviderKeyID, rv.Action)
		return err
	case "failed":
		fmt.Fprintf(w, "at the provider: NOT revoked: it refused the admin credential (%s); keybroker asks again after %s — fix the admin credential\n",
			rv.LastError, rv.NextAttemptAt.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "at the provider: NOT revoked yet (%s); keybroker asks again after %s until it confirms (revocation %s)\n",
			rv.LastError, rv.NextAttemptAt.Format(time.RFC3339), rv.ID)
	}
	return errors.New("the key is deleted from keybroker but not yet revoked at the provider")
}

// expiryInWords is a key's expiry for the table.
func expiryInWords(m client.KeyMetadata) string {
	if m.ExpiresAt == nil {
		return "-"
	}
	s := m.ExpiresAt.Format(time.RFC3339)
	if m.Expiry == "expiring" || m.Expiry == "expired" {
		s += " (" + m.Expiry + ")"
	}
	return s
}

// healthInWords is a key's health for the table.
func healthInWords(m client.KeyMetadata) string {
	switch m.Health {
	case "cooling_down":
		if m.CooldownUntil != nil {
			return "cooling down until " + m.CooldownUntil.Format(time.RFC3339)
		}
		return "cooling down"
	case "failing":
		return "failing (" + m.HealthReason + ")"
	case "":
		return "-"
	}
	return m.Health
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

// checkFlags gives a write command --check (ask the provider first) and
// its older name --verify, kept for one release.
func checkFlags(cmd *cobra.Command, check *bool) {
	cmd.Flags().BoolVar(check, "check", false, "ask the provider first; a key it refuses is not stored")
	cmd.Flags().BoolVar(check, "verify", false, "the older name of --check")
	_ = cmd.Flags().MarkDeprecated("verify", "use --check")
}
