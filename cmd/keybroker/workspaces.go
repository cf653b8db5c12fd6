package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keybroker/keybroker/client"
)

func newWorkspacesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workspaces",
		Short: "Workspace settings over the HTTP API (KEYBROKER_ADDR, KEYBROKER_TOKEN)",
	}
	var api apiFlags
	api.bind(cmd)
	var workspace, organization string
	var inherit, hostedFallback, asJSON bool
	settings := &cobra.Command{
		Use:   "settings",
		Short: "Show a workspace's settings, or change them with the flags given",
		Long: `Show a workspace's settings, or change them with the flags given.

--hosted-fallback=false fails closed: a workspace without a key of its own
gets no_key instead of the platform's hosted key (billed). --inherit=false
stops using the organization's keys. --organization
links the workspace to an organization (operators only; "" unlinks).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workspace == "" {
				return errors.New("--workspace is required")
			}
			c, err := api.client()
			if err != nil {
				return err
			}
			var req client.SettingsRequest
			changed := false
			if f := cmd.Flags().Lookup("organization"); f.Changed {
				req.Organization, changed = &organization, true
			}
			if f := cmd.Flags().Lookup("inherit"); f.Changed {
				req.Inherit, changed = &inherit, true
			}
			if f := cmd.Flags().Lookup("hosted-fallback"); f.Changed {
				req.HostedFallback, changed = &hostedFallback, true
			}
			var s client.Settings
			if changed {
				s, err = c.PutSettings(cmd.Context(), workspace, req)
			} else {
				s, err = c.Settings(cmd.Context(), workspace)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(s)
			}
			org := "(none)"
			if s.Organization != nil {
				org = *s.Organization
			}
			fallback := "on: calls without a usable workspace (or inherited) key use the platform's hosted key, billed"
			if !s.HostedFallback {
				fallback = "off: calls without a usable workspace (or inherited) key fail with no_key (fail closed)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workspace        %s\norganization     %s\ninherit          %v\nhosted fallback  %s\n",
				workspace, org, s.Inherit, fallback)
			return nil
		},
	}
	f := settings.Flags()
	f.StringVar(&workspace, "workspace", "", "workspace id")
	f.StringVar(&organization, "organization", "", `link to this organization (operators only; "" unlinks)`)
	f.BoolVar(&inherit, "inherit", true, "use the organization's keys when the workspace has none")
	f.BoolVar(&hostedFallback, "hosted-fallback", true, "fall back to the platform's hosted keys (billed); false fails closed")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	var effWorkspace string
	var effJSON bool
	effective := &cobra.Command{
		Use:   "effective",
		Short: "Say, per provider, what serves the workspace's calls now: its own key, the billed hosted key, or nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if effWorkspace == "" {
				return errors.New("--workspace is required")
			}
			c, err := api.client()
			if err != nil {
				return err
			}
			srcs, err := c.Effective(cmd.Context(), effWorkspace)
			if err != nil {
				return err
			}
			if effJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(srcs)
			}
			width := 0
			for _, s := range srcs {
				width = max(width, len(s.Provider))
			}
			for _, s := range srcs {
				fmt.Fprintf(cmd.OutOrStdout(), "%-*s  %s\n", width, s.Provider, effectiveInWords(s))
			}
			return nil
		},
	}
	effective.Flags().StringVar(&effWorkspace, "workspace", "", "workspace id")
	effective.Flags().BoolVar(&effJSON, "json", false, "print JSON")
	cmd.AddCommand(settings, effective)
	return cmd
}

// effectiveInWords says what a provider's calls do, as the page does.
func effectiveInWords(s client.EffectiveSource) string {
	keys := fmt.Sprintf("%d usable keys", s.UsableKeys)
	if s.UsableKeys == 1 {
		keys = "1 usable key"
	}
	switch {
	case s.Scope != nil && *s.Scope == "workspace":
		return "the workspace's own keys (" + keys + "; BYOK, not billed)"
	case s.Scope != nil && *s.Scope == "organization":
		return "organization " + s.ScopeID + "'s keys (" + keys + "; BYOK, not billed)"
	case s.Scope != nil && *s.Scope == "hosted":
		return "the platform's hosted key: calls are billed at hosted rates"
	case s.Reason == "hosted_fallback_off":
		return "no key: calls fail (hosted fallback is off)"
	case s.Reason == "hosted_keys_unavailable":
		return "no key: calls fail (the platform's hosted keys are disabled)"
	case strings.HasSuffix(s.Reason, "_keys_cooling_down"):
		return "no key now: every key that could serve is cooling down (calls get 429 with Retry-After)"
	}
	return "no key: calls fail (the platform has no hosted key for this provider)"
}
