package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/internal/app"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/vault"
)

func newVaultCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Set Vault up for keybroker (bootstrap) or print its policies",
	}
	var cfg vault.BootstrapConfig
	var namespace string
	var allowInsecureTLS, allowPlaintext bool
	bootstrap := &cobra.Command{
		Use:   "bootstrap",
		Short: "Enable the KV v2 mount, write the policies, enable AppRole and create the writer and reader roles (idempotent)",
		Long: `Set Vault up for keybroker, with an operator's token (VAULT_ADDR, VAULT_TOKEN).

Idempotent: it changes only what differs from keybroker's settings and says
what it changed; a second run changes nothing. --dry-run reports what it would
change (the drift, after a manual edit) and changes nothing.

It prints the role ids of keybroker-writer and keybroker-reader; with
--wrap-ttl it also issues one secret id per role, response-wrapped, for you
to hand to the deployment (keybroker checks where a wrapping token comes from
before it unwraps it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token := os.Getenv("VAULT_TOKEN")
			if token == "" {
				return errors.New("vault bootstrap needs an operator's token in VAULT_TOKEN")
			}
			c, err := vault.New(vault.Config{Address: os.Getenv("VAULT_ADDR"), Namespace: namespace, CACert: os.Getenv("VAULT_CACERT"), Token: token,
				AllowInsecureTLS: allowInsecureTLS, AllowPlaintext: allowPlaintext})
			if err != nil {
				return err
			}
			res, err := c.Bootstrap(cmd.Context(), cfg)
			out, log := cmd.OutOrStdout(), cmd.ErrOrStderr()
			verb := "changed"
			if cfg.DryRun {
				verb = "would change"
			}
			for _, ch := range res.Changes {
				fmt.Fprintf(log, "%s: %s\n", verb, ch)
			}
			if err != nil {
				return err
			}
			if len(res.Changes) == 0 {
				fmt.Fprintln(log, "Vault is already set up for keybroker; nothing to change.")
			}
			roles := make([]string, 0, len(res.RoleIDs))
			for r := range res.RoleIDs {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			for _, r := range roles {
				fmt.Fprintf(out, "%s role_id=%s\n", r, res.RoleIDs[r])
				if w := res.WrappedSecretIDs[r]; w != "" {
					fmt.Fprintf(out, "%s wrapped_secret_id=%s\n", r, w)
				}
			}
			return nil
		},
	}
	f := bootstrap.Flags()
	ef := flagsOf(bootstrap)
	ef.String(&cfg.KVMount, "kv-mount", "KEYBROKER_KV_MOUNT", "byok", "KV v2 mount of the keys")
	f.IntVar(&cfg.MaxVersions, "max-versions", 10, "versions kept per key")
	ef.String(&cfg.AppRoleMount, "approle-mount", "KEYBROKER_APPROLE_MOUNT", "approle", "AppRole auth mount")
	f.DurationVar(&cfg.TokenTTL, "token-ttl", 15*time.Minute, "TTL of the roles' tokens")
	f.DurationVar(&cfg.TokenMaxTTL, "token-max-ttl", time.Hour, "max TTL of the roles' tokens")
	f.DurationVar(&cfg.SecretIDTTL, "secret-id-ttl", 720*time.Hour, "TTL of the roles' secret ids (-1s: no expiry)")
	f.IntVar(&cfg.SecretIDNumUses, "secret-id-num-uses", 1000, "logins one secret id allows (-1: unlimited)")
	f.StringSliceVar(&cfg.TokenBoundCIDRs, "token-bound-cidrs", nil, "CIDRs the roles' tokens may be used from")
	f.StringSliceVar(&cfg.SecretIDBoundCIDRs, "secret-id-bound-cidrs", nil, "CIDRs a secret id may log in from")
	f.DurationVar(&cfg.WrapTTL, "wrap-ttl", 0, "issue one response-wrapped secret id per role with this TTL (e.g. 10m)")
	f.BoolVar(&cfg.DryRun, "dry-run", false, "report what would change; change nothing")
	ef.String(&namespace, "vault-namespace", "VAULT_NAMESPACE", "", "Vault Enterprise namespace")
	ef.Bool(&allowInsecureTLS, "vault-allow-insecure-tls", "KEYBROKER_VAULT_ALLOW_INSECURE_TLS", false, "let VAULT_SKIP_VERIFY turn off verification of Vault's certificate (refused otherwise)")
	ef.Bool(&allowPlaintext, "vault-allow-plaintext", "KEYBROKER_VAULT_ALLOW_PLAINTEXT", false, "allow an http:// Vault address that is not loopback (refused otherwise)")

	var mount string
	printPolicies := &cobra.Command{
		Use:   "policies",
		Short: "Print keybroker's Vault policies (HCL) for teams that apply them with their own tooling",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range policies.Names {
				hcl, err := policies.Render(name, mount)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "# ---- policy %q ----\n%s\n", name, hcl)
			}
			return nil
		},
	}
	flagsOf(printPolicies).String(&mount, "kv-mount", "KEYBROKER_KV_MOUNT", "byok", "KV v2 mount of the keys")
	var layoutCfg app.Config
	migrateLayout := &cobra.Command{
		Use:   "migrate-layout",
		Short: "Move the keys keybroker v1 stored to the v2 layout (<scope>/providers/<p>/keys/default)",
		Long: `Move every key keybroker v1 kept at workspaces/<ws>/providers/<p> and
hosted/providers/<p> to .../providers/<p>/keys/default, version by version (the
version numbers stay the same), then destroy the v1 secret. Until it has run,
resolve still reads the v1 path, and a first write of such a key is refused.
Run it once after every replica runs v2; running it again moves what is left.
Takes the same Vault and database settings as serve, and needs both the writer
and the reader identity.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secretsFromEnv(&layoutCfg)
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			rep, err := app.MigrateLayout(cmd.Context(), layoutCfg, logger)
			if rep == nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved %d, skipped %d\n", len(rep.Moved), len(rep.Skipped))
			for _, m := range rep.Moved {
				fmt.Fprintln(cmd.OutOrStdout(), "moved:", m)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintln(cmd.OutOrStdout(), "skipped:", s)
			}
			return err
		},
	}
	serveFlags(migrateLayout, &layoutCfg)
	cmd.AddCommand(bootstrap, printPolicies, migrateLayout)
	return cmd
}
