package terraform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	tfstate "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/terraform"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const pepper = "terraform-test-pepper-0123456789"

// server is keybroker over real Vault and PostgreSQL on loopback, with an
// operator token (the one test harness, kbtest).
type server struct {
	url, token string
	api        *client.Client
	resolver   *client.Client
	ids        *vaulttest.Identities
	tokens     *auth.Service
}

func startKeybroker(t *testing.T) *server {
	t.Helper()
	s := kbtest.Start(t, kbtest.Options{Pepper: pepper})
	return &server{url: s.URL, token: s.OperatorToken, api: s.API, resolver: s.Resolver, ids: s.Identities, tokens: s.Tokens}
}

// useCLI points terraform-plugin-testing at one of the CLIs built by
// scripts/tools.sh, with the environment both need.
func useCLI(t *testing.T, name string) {
	t.Helper()
	bin, err := devenv.FindTool(name)
	if err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(t.TempDir(), "cli.tfrc")
	if err := os.WriteFile(cliConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_ACC", "1")
	t.Setenv("TF_ACC_TERRAFORM_PATH", bin)
	t.Setenv("TF_ACC_PROVIDER_NAMESPACE", "hashicorp")
	t.Setenv("CHECKPOINT_DISABLE", "1")
	t.Setenv("TF_CLI_CONFIG_FILE", cliConfig)
}

var factories = map[string]func() (tfprotov6.ProviderServer, error){
	"keybroker": providerserver.NewProtocol6WithError(terraform.New("test")()),
}

func providerBlock(s *server) string {
	return fmt.Sprintf("provider \"keybroker\" {\n  address = %q\n  token   = %q\n}\n", s.url, s.token)
}

func newKey(t *testing.T) string {
	return "sk-proj-tf-" + testenv.RandomID(t) + testenv.RandomID(t) + testenv.RandomID(t)
}

// resolvesTo checks what the execution path gets for ws1/openai.
func resolvesTo(s *server, want, source string) resource.TestCheckFunc {
	return func(*tfstate.State) error {
		r, err := s.resolver.Resolve(context.Background(), "ws1", "openai")
		if err != nil {
			return fmt.Errorf("resolve: %w", err)
		}
		if r.APIKey != want || r.Source != source {
			return fmt.Errorf("resolve gave a %s key (version %d), not the expected %s one", r.Source, r.Version, source)
		}
		return nil
	}
}

// destroyedToHosted checks, after destroy, that the key is gone from Vault
// and the workspace resolves to the hosted key.
func destroyedToHosted(s *server, hosted string) func(*tfstate.State) error {
	return func(*tfstate.State) error {
		if _, err := s.api.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}); !client.IsStatus(err, http.StatusNotFound) {
			return fmt.Errorf("key metadata after destroy: %v", err)
		}
		if _, err := s.ids.Root.KV(s.ids.Mount).Get(context.Background(), broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath()); err == nil {
			return fmt.Errorf("the key is still readable in Vault after destroy")
		}
		return resolvesTo(s, hosted, "hosted")(nil)
	}
}

const res = "keybroker_workspace_key.k"

func TestAcceptanceTerraform15WithAPIKey(t *testing.T) {
	useCLI(t, "terraform")
	s := startKeybroker(t)
	hosted, k1, k2, outOfBand := newKey(t), newKey(t), newKey(t), newKey(t)
	if _, _, err := s.api.PutKey(context.Background(), client.KeyRef{Scope: client.Hosted(), Provider: "openai", KeyID: "default"}, hosted, 0); err != nil {
		t.Fatal(err)
	}
	config := func(key string) string {
		return providerBlock(s) + fmt.Sprintf(`
resource "keybroker_workspace_key" "k" {
  workspace_id = "ws1"
  provider_id  = "openai"
  api_key      = %q
}
data "keybroker_workspace_keys" "ws1" {
  workspace_id = "ws1"
  depends_on   = [keybroker_workspace_key.k]
}
data "keybroker_providers" "all" {}
`, key)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy:             destroyedToHosted(s, hosted),
		Steps: []resource.TestStep{
			{
				Config: config(k1),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(res, "id", "workspace/ws1/openai/default"),
					resource.TestCheckResourceAttr(res, "key_id", "default"),
					resource.TestCheckResourceAttr(res, "priority", "100"),
					resource.TestCheckResourceAttr(res, "state", "active"),
					resource.TestCheckResourceAttr(res, "version", "1"),
					resource.TestCheckResourceAttr(res, "masked_key", k1[:6]+"..."+k1[len(k1)-4:]),
					resource.TestCheckResourceAttr("data.keybroker_workspace_keys.ws1", "keys.0.provider_id", "openai"),
					resource.TestCheckResourceAttr("data.keybroker_providers.all", "providers.#", fmt.Sprint(len(providers.DefaultRegistry().All()))),
					resolvesTo(s, k1, "byok"),
				),
			},
			{
				Config: config(k2),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(res, "version", "2"),
					resolvesTo(s, k2, "byok"),
				),
			},
			// The id of v2, and v1's <workspace>/<provider> (key "default").
			{ResourceName: res, ImportState: true, ImportStateId: "workspace/ws1/openai/default", ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"api_key", "api_key_wo_version"}},
			{ResourceName: res, ImportState: true, ImportStateId: "ws1/openai", ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"api_key", "api_key_wo_version"}},
			{
				// Deleted outside Terraform: the plan creates it again.
				PreConfig: func() {
					if err := s.api.RemoveKey(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, 0, false); err != nil {
						t.Fatal(err)
					}
				},
				Config:           config(k2),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate)}},
				Check:            resolvesTo(s, k2, "byok"),
			},
			{
				// Rotated outside Terraform: the plan puts the configured key back.
				PreConfig: func() {
					if _, _, err := s.api.PutKey(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, outOfBand, 0); err != nil {
						t.Fatal(err)
					}
				},
				Config:           config(k2),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)}},
				Check:            resolvesTo(s, k2, "byok"),
			},
		},
	})
}

// noSecret fails when the JSON form of a plan or state holds the key or
// the pepper.
func noSecret(what string, v any, secrets ...string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) < 50 {
		return fmt.Errorf("%s JSON is nearly empty: %s", what, b)
	}
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			return fmt.Errorf("the %s holds a secret (%s...)", what, s[:6])
		}
	}
	return nil
}

type planHasNoSecret struct{ secrets []string }

func (p planHasNoSecret) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	resp.Error = noSecret("plan", req.Plan, p.secrets...)
}

type stateHasNoSecret struct{ secrets []string }

func (s stateHasNoSecret) CheckState(_ context.Context, req statecheck.CheckStateRequest, resp *statecheck.CheckStateResponse) {
	resp.Error = noSecret("state", req.State, s.secrets...)
}

func TestAcceptanceOpenTofuWithWriteOnlyKey(t *testing.T) {
	useCLI(t, "tofu")
	s := startKeybroker(t)
	hosted, k1, k2 := newKey(t), newKey(t), newKey(t)
	if _, _, err := s.api.PutKey(context.Background(), client.KeyRef{Scope: client.Hosted(), Provider: "openai", KeyID: "default"}, hosted, 0); err != nil {
		t.Fatal(err)
	}
	// The key comes in through an ephemeral variable, as in the example:
	// OpenTofu keeps its value out of plans and state too.
	config := func(key string, version int) (string, config.Variables) {
		return providerBlock(s) + fmt.Sprintf(`
variable "openai_key" {
  type      = string
  sensitive = true
  ephemeral = true
}
resource "keybroker_workspace_key" "k" {
  workspace_id       = "ws1"
  provider_id        = "openai"
  api_key_wo         = var.openai_key
  api_key_wo_version = %d
}
`, version), config.Variables{"openai_key": config.StringVariable(key)}
	}
	secrets := []string{k1, k2, pepper}
	plans := resource.ConfigPlanChecks{
		PreApply:             []plancheck.PlanCheck{planHasNoSecret{secrets}},
		PostApplyPostRefresh: []plancheck.PlanCheck{planHasNoSecret{secrets}},
	}
	states := []statecheck.StateCheck{stateHasNoSecret{secrets}}
	cfg1, vars1 := config(k1, 1)
	cfg2, vars2 := config(k2, 2)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy:             destroyedToHosted(s, hosted),
		Steps: []resource.TestStep{
			{
				Config: cfg1, ConfigVariables: vars1, ConfigPlanChecks: plans, ConfigStateChecks: states,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(res, "version", "1"),
					resource.TestCheckNoResourceAttr(res, "api_key_wo"),
					resolvesTo(s, k1, "byok"),
				),
			},
			{
				// Rotation: a new key and a bumped version.
				Config: cfg2, ConfigVariables: vars2, ConfigPlanChecks: plans, ConfigStateChecks: states,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(res, "version", "2"),
					resolvesTo(s, k2, "byok"),
				),
			},
			{ResourceName: res, ImportState: true, ImportStateId: "ws1/openai", ImportStateVerify: true,
				ConfigVariables: vars2, ImportStateVerifyIgnore: []string{"api_key_wo_version"}},
			{
				PreConfig: func() {
					if err := s.api.RemoveKey(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, 0, false); err != nil {
						t.Fatal(err)
					}
				},
				Config: cfg2, ConfigVariables: vars2, ConfigStateChecks: states,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate), planHasNoSecret{secrets}}},
				Check: resolvesTo(s, k2, "byok"),
			},
		},
	})
}

func TestProviderDiagnostics(t *testing.T) {
	useCLI(t, "terraform")
	s := startKeybroker(t)
	reader, _, err := s.tokens.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleReader, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	resourceBlock := func(ws, attrs string) string {
		return fmt.Sprintf("resource \"keybroker_workspace_key\" \"k\" {\n  workspace_id = %q\n  provider_id = \"openai\"\n%s\n}\n", ws, attrs)
	}
	withKey := `  api_key = "sk-proj-diagnostics-0000000000000"`
	provider := func(addr, token string) string {
		return fmt.Sprintf("provider \"keybroker\" {\n  address = %q\n  token = %q\n}\n", addr, token)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		Steps: []resource.TestStep{
			{Config: provider("http://127.0.0.1:1", s.token) + resourceBlock("ws1", withKey), ExpectError: regexp.MustCompile(`keybroker is unreachable`)},
			{Config: provider(s.url, "kbt_garbage") + resourceBlock("ws1", withKey), ExpectError: regexp.MustCompile(`keybroker refused the token`)},
			{Config: provider(s.url, reader) + resourceBlock("ws1", withKey), ExpectError: regexp.MustCompile(`may not manage keys of\s+workspace ws1 \(403\)`)},
			{Config: providerBlock(s) + resourceBlock("ws1", ""), ExpectError: regexp.MustCompile(`Exactly one of api_key and api_key_wo`)},
			{Config: providerBlock(s) + resourceBlock("Bad/WS", withKey), ExpectError: regexp.MustCompile(`Invalid id`)},
			{Config: providerBlock(s) + resourceBlock("ws1", `  api_key = "sk-this is not a key at all"`), ExpectError: regexp.MustCompile(`keybroker rejected the key`)},
		},
	})
	if _, err := s.api.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("a refused configuration left a key: %v", err)
	}
}
