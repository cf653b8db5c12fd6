package terraform_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	tfstate "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/keybroker/keybroker/client"
)

// TestAcceptanceKeyExpiry: expires_at is sent on create and on change,
// read back (keybroker's value in state), and refused in another form
// than RFC 3339 UTC.
func TestAcceptanceKeyExpiry(t *testing.T) {
	useCLI(t, "terraform")
	s := startKeybroker(t)
	key := newKey(t)
	config := func(expiry string) string {
		return providerBlock(s) + fmt.Sprintf(`
resource "keybroker_workspace_key" "k" {
  workspace_id = "ws1"
  provider_id  = "openai"
  key_id       = "expiring"
  api_key      = %q
  expires_at   = %q
}
`, key, expiry)
	}
	const res = "keybroker_workspace_key.k"
	expiryIs := func(want string) resource.TestCheckFunc {
		return func(*tfstate.State) error {
			m, err := s.api.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "expiring"})
			if err != nil {
				return err
			}
			if m.Expiry != want {
				return fmt.Errorf("keybroker says the key is %q, want %q", m.Expiry, want)
			}
			return nil
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: config("2027-01-31T00:00:00+02:00"), ExpectError: regexp.MustCompile(`expires_at must be an RFC 3339 time in UTC`)},
			{Config: config("2099-01-31T00:00:00Z"), Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr(res, "expires_at", "2099-01-31T00:00:00Z"), expiryIs("valid"))},
			{Config: config("2001-01-01T00:00:00Z"), Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr(res, "expires_at", "2001-01-01T00:00:00Z"), resource.TestCheckResourceAttr(res, "version", "1"),
				expiryIs("expired"))},
		},
	})
}
