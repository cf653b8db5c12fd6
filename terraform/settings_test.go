package terraform_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	tfstate "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
)

const settingsRes = "keybroker_workspace_settings.s"

// resolveFailsClosed checks that ws1/openai gets 404 no_key with the
// reason hosted_fallback_off (the hosted key exists).
func resolveFailsClosed(s *server) resource.TestCheckFunc {
	return func(*tfstate.State) error {
		_, err := s.resolver.Resolve(context.Background(), "ws1", "openai")
		var apiErr *client.Error
		if !client.IsStatus(err, http.StatusNotFound) || !errors.As(err, &apiErr) || apiErr.Reason != "hosted_fallback_off" {
			return fmt.Errorf("resolve with hosted_fallback = false: %v", err)
		}
		return nil
	}
}

func TestAcceptanceWorkspaceSettingsOnBothCLIs(t *testing.T) {
	for _, cli := range []string{"terraform", "tofu"} {
		t.Run(cli, func(t *testing.T) {
			useCLI(t, cli)
			s := startKeybroker(t)
			hosted := newKey(t)
			if _, _, err := s.api.PutKey(context.Background(), client.KeyRef{Scope: client.Hosted(), Provider: "openai", KeyID: "default"}, hosted, 0); err != nil {
				t.Fatal(err)
			}
			config := func(body string) string {
				return providerBlock(s) + "resource \"keybroker_workspace_settings\" \"s\" {\n  workspace_id = \"ws1\"\n" + body + "}\n"
			}
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: factories,
				CheckDestroy: func(*tfstate.State) error {
					got, err := s.api.Settings(context.Background(), "ws1")
					if err != nil || got.Organization == nil || *got.Organization != "acme" || !got.Inherit || !got.HostedFallback {
						return fmt.Errorf("after destroy: %+v %v; want inherit and hosted fallback back on, the link kept", got, err)
					}
					return resolvesTo(s, hosted, "hosted")(nil)
				},
				Steps: []resource.TestStep{
					{
						Config: config("  organization    = \"acme\"\n  hosted_fallback = false\n"),
						Check: resource.ComposeTestCheckFunc(
							resource.TestCheckResourceAttr(settingsRes, "id", "ws1"),
							resource.TestCheckResourceAttr(settingsRes, "organization", "acme"),
							resource.TestCheckResourceAttr(settingsRes, "inherit", "true"),
							resource.TestCheckResourceAttr(settingsRes, "hosted_fallback", "false"),
							resolveFailsClosed(s),
						),
					},
					{
						Config: config("  organization    = \"acme\"\n  hosted_fallback = true\n"),
						Check:  resolvesTo(s, hosted, "hosted"),
					},
					{ResourceName: settingsRes, ImportState: true, ImportStateId: "ws1", ImportStateVerify: true},
					{
						// Changed outside Terraform: the plan puts the configuration back.
						PreConfig: func() {
							off := false
							if _, err := s.api.PutSettings(context.Background(), "ws1", client.SettingsRequest{HostedFallback: &off}); err != nil {
								t.Fatal(err)
							}
						},
						Config:           config("  organization    = \"acme\"\n  hosted_fallback = true\n"),
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(settingsRes, plancheck.ResourceActionUpdate)}},
						Check:            resolvesTo(s, hosted, "hosted"),
					},
				},
			})
		})
	}
}

// An admin token manages inherit and hosted_fallback but not the
// organization link: the error says which token is needed.
func TestWorkspaceSettingsOrganizationNeedsAnOperator(t *testing.T) {
	useCLI(t, "tofu")
	s := startKeybroker(t)
	admin, _, err := s.tokens.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleAdmin, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	asAdmin := &server{url: s.url, token: admin}
	acme := "acme"
	if _, err := s.api.PutSettings(context.Background(), "ws1", client.SettingsRequest{Organization: &acme}); err != nil {
		t.Fatal(err) // an operator linked ws1 outside this configuration
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{
				Config:      providerBlock(asAdmin) + "resource \"keybroker_workspace_settings\" \"s\" {\n  workspace_id = \"ws1\"\n  organization = \"globex\"\n}\n",
				ExpectError: regexp.MustCompile(`only\s+an\s+operator\s+token\s+sets\s+or\s+changes\s+organization`),
			},
			{
				// Left out, the operator's link is not touched.
				Config: providerBlock(asAdmin) + "resource \"keybroker_workspace_settings\" \"s\" {\n  workspace_id    = \"ws1\"\n  hosted_fallback = false\n}\n",
				Check: resource.ComposeTestCheckFunc(resolveFailsClosed(s),
					resource.TestCheckResourceAttr(settingsRes, "organization", "acme")),
			},
		},
	})
}
