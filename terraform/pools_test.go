package terraform_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	tfstate "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/keybroker/keybroker/client"
)

// resolves checks which key of which scope serves ws1/openai for model.
func resolves(s *server, model, scope, keyID, want string) resource.TestCheckFunc {
	return func(*tfstate.State) error {
		r, err := s.resolver.ResolveFor(context.Background(), client.ResolveRequest{Workspace: "ws1", Provider: "openai", Model: model})
		if err != nil {
			return fmt.Errorf("resolve: %w", err)
		}
		if r.Scope != scope || r.KeyID != keyID || r.APIKey != want {
			return fmt.Errorf("resolve served %s key %s, want %s key %s", r.Scope, r.KeyID, scope, keyID)
		}
		return nil
	}
}

// TestAcceptancePoolsOfEveryScopeOnBothCLIs: an organization key the
// workspace inherits, a hosted key, and a workspace key placed in its
// pool; settings changes that never rewrite a key; imports by
// <scope>/<id>/<provider>/<key>.
func TestAcceptancePoolsOfEveryScopeOnBothCLIs(t *testing.T) {
	for _, cli := range []string{"terraform", "tofu"} {
		t.Run(cli, func(t *testing.T) {
			useCLI(t, cli)
			s := startKeybroker(t)
			orgKey, hostedKey, wsKey := newKey(t), newKey(t), newKey(t)
			config := func(wsState string, orgPriority int) string {
				return providerBlock(s) + fmt.Sprintf(`
resource "keybroker_organization_key" "shared" {
  organization_id = "acme"
  provider_id     = "openai"
  key_id          = "shared"
  name            = "Acme shared key"
  priority        = %d
  models          = ["gpt-4o"]
  api_key         = %q
}
resource "keybroker_hosted_key" "main" {
  provider_id = "openai"
  key_id      = "main"
  api_key     = %q
}
resource "keybroker_workspace_settings" "ws1" {
  workspace_id = "ws1"
  organization = "acme"
}
resource "keybroker_workspace_key" "k" {
  workspace_id = "ws1"
  provider_id  = "openai"
  key_id       = "primary"
  name         = "Primary"
  state        = %q
  api_key      = %q
  depends_on   = [keybroker_organization_key.shared, keybroker_hosted_key.main, keybroker_workspace_settings.ws1]
}
`, orgPriority, orgKey, hostedKey, wsState, wsKey)
			}
			const orgRes, hostedRes = "keybroker_organization_key.shared", "keybroker_hosted_key.main"
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: factories,
				CheckDestroy: func(*tfstate.State) error {
					for _, ref := range []client.KeyRef{{Scope: client.Organization("acme"), Provider: "openai", KeyID: "shared"},
						{Scope: client.Hosted(), Provider: "openai", KeyID: "main"}, {Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "primary"}} {
						if _, err := s.api.Key(context.Background(), ref); !client.IsStatus(err, http.StatusNotFound) {
							return fmt.Errorf("%s/%s after destroy: %v", ref.Scope, ref.KeyID, err)
						}
					}
					return nil
				},
				Steps: []resource.TestStep{
					{
						Config: config("active", 10),
						Check: resource.ComposeTestCheckFunc(
							resource.TestCheckResourceAttr(orgRes, "id", "organization/acme/openai/shared"),
							resource.TestCheckResourceAttr(orgRes, "models.#", "1"),
							resource.TestCheckResourceAttr(hostedRes, "id", "hosted/openai/main"),
							resource.TestCheckResourceAttr(res, "id", "workspace/ws1/openai/primary"),
							resource.TestCheckResourceAttr(res, "name", "Primary"),
							resolves(s, "gpt-4o", "workspace", "primary", wsKey),
						),
					},
					{
						// Disabling the workspace's key changes its state, not the
						// key: the organization's key serves its model, the hosted
						// key the others.
						Config: config("disabled", 10),
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
							plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)}},
						Check: resource.ComposeTestCheckFunc(
							resource.TestCheckResourceAttr(res, "state", "disabled"),
							resource.TestCheckResourceAttr(res, "version", "1"),
							resolves(s, "gpt-4o", "organization", "shared", orgKey),
							resolves(s, "o3", "hosted", "main", hostedKey),
						),
					},
					{
						// Changed outside Terraform: the plan puts the priority back.
						PreConfig: func() {
							p := 500
							ref := client.KeyRef{Scope: client.Organization("acme"), Provider: "openai", KeyID: "shared"}
							if _, err := s.api.UpdateKey(context.Background(), ref, client.UpdateKeyRequest{Priority: &p}); err != nil {
								t.Fatal(err)
							}
						},
						Config: config("disabled", 10),
						ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
							plancheck.ExpectResourceAction(orgRes, plancheck.ResourceActionUpdate)}},
						Check: resource.ComposeTestCheckFunc(
							resource.TestCheckResourceAttr(orgRes, "priority", "10"),
							resource.TestCheckResourceAttr(orgRes, "version", "1"),
						),
					},
					{ResourceName: orgRes, ImportState: true, ImportStateId: "organization/acme/openai/shared", ImportStateVerify: true,
						ImportStateVerifyIgnore: []string{"api_key"}},
					{ResourceName: hostedRes, ImportState: true, ImportStateId: "hosted/openai/main", ImportStateVerify: true,
						ImportStateVerifyIgnore: []string{"api_key"}},
					{ResourceName: res, ImportState: true, ImportStateId: "workspace/ws1/openai/primary", ImportStateVerify: true,
						ImportStateVerifyIgnore: []string{"api_key"}},
				},
			})
		})
	}
}
