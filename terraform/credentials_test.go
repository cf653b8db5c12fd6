package terraform_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	tfstate "github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// cloudConfig holds a key of each way in of the three cloud kinds in
// workspace ws1: Azure OpenAI with an API key and with Entra client
// credentials, Bedrock with a key pair and a role and with a Bedrock API
// key, Vertex with a service-account file. Every secret comes in through
// an ephemeral variable (OpenTofu keeps those out of plans and state
// too); var.v is every *_wo_version.
const cloudConfig = `
terraform {
  required_providers {
    keybroker = { source = "keybroker/keybroker" }
  }
}
provider "keybroker" {}

variable "azure_api_key" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "entra_client_secret" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "aws_access_key_id" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "aws_secret_access_key" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "bedrock_api_key" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "service_account_json" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "api_version" { type = string }
variable "region"      { type = string }
variable "location"    { type = string }
variable "v"           { type = number }

resource "keybroker_workspace_key" "azure" {
  workspace_id = "ws1"
  provider_id  = "azure-openai"
  azure_openai = {
    endpoint           = "https://kb-tf-test.openai.azure.com"
    api_version        = var.api_version
    deployments        = { "gpt-4o" = "gpt-4o-prod" }
    api_key_wo         = var.azure_api_key
    api_key_wo_version = var.v
  }
}

resource "keybroker_workspace_key" "entra" {
  workspace_id = "ws1"
  provider_id  = "azure-openai"
  key_id       = "entra"
  priority     = 200
  azure_openai = {
    endpoint                 = "https://kb-tf-test.cognitiveservices.azure.com"
    api_version              = "2024-10-21"
    tenant_id                = "11111111-2222-3333-4444-555555555555"
    client_id                = "66666666-7777-8888-9999-000000000000"
    client_secret_wo         = var.entra_client_secret
    client_secret_wo_version = var.v
  }
}

resource "keybroker_workspace_key" "bedrock" {
  workspace_id = "ws1"
  provider_id  = "bedrock"
  bedrock = {
    region                = var.region
    model_map             = { "claude-sonnet" = "eu.anthropic.claude-sonnet-4-20250514-v1:0" }
    access_key_id_wo      = var.aws_access_key_id
    secret_access_key_wo  = var.aws_secret_access_key
    access_key_wo_version = var.v
    role_arn              = "arn:aws:iam::123456789012:role/keybroker-bedrock"
    external_id           = "kb-tf-external-id"
    session_name          = "kb-tf"
  }
}

resource "keybroker_workspace_key" "bedrock_api_key" {
  workspace_id = "ws1"
  provider_id  = "bedrock"
  key_id       = "apikey"
  bedrock = {
    region             = "us-east-1"
    api_key_wo         = var.bedrock_api_key
    api_key_wo_version = var.v
  }
}

resource "keybroker_workspace_key" "vertex" {
  workspace_id = "ws1"
  provider_id  = "vertex"
  vertex = {
    project                         = "kb-tf-project"
    location                        = var.location
    service_account_json_wo         = var.service_account_json
    service_account_json_wo_version = var.v
  }
}
`

// cloudSecrets is one set of the configuration's secrets.
type cloudSecrets struct {
	azureAPIKey, entraSecret, accessKeyID, secretAccessKey, bedrockAPIKey, serviceAccount string
	// privateKey is a line of the service account's PEM private key, and
	// privateKeyID its key id: what must never leak of the file, even
	// escaped in another JSON document.
	privateKey, privateKeyID string
}

func newCloudSecrets(t *testing.T) cloudSecrets {
	t.Helper()
	upper := strings.ToUpper(testenv.RandomID(t) + testenv.RandomID(t))
	upper = regexp.MustCompile(`[^A-Z0-9]`).ReplaceAllString(upper, "Q")
	sa, _ := cloudstub.ServiceAccountFile(t, "kb-tf@kb-tf-project.iam.gserviceaccount.com", "kb-tf-project", "https://oauth2.googleapis.com/token")
	var file map[string]string
	if err := json.Unmarshal([]byte(sa), &file); err != nil {
		t.Fatal(err)
	}
	pemLines := strings.Split(file["private_key"], "\n")
	alnum := func(n int) string {
		s := regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(testenv.RandomID(t)+testenv.RandomID(t)+testenv.RandomID(t)+testenv.RandomID(t), "x")
		for len(s) < n {
			s += s
		}
		return s[:n]
	}
	return cloudSecrets{
		azureAPIKey: "AzK" + alnum(45), entraSecret: "Ent~" + alnum(30), accessKeyID: "AKIA" + (upper + upper)[:16],
		secretAccessKey: "sAk/" + alnum(36), bedrockAPIKey: "ABSK" + alnum(60), serviceAccount: sa,
		privateKey: pemLines[len(pemLines)/2], privateKeyID: file["private_key_id"],
	}
}

func (c cloudSecrets) env() []string {
	return []string{"TF_VAR_azure_api_key=" + c.azureAPIKey, "TF_VAR_entra_client_secret=" + c.entraSecret,
		"TF_VAR_aws_access_key_id=" + c.accessKeyID, "TF_VAR_aws_secret_access_key=" + c.secretAccessKey,
		"TF_VAR_bedrock_api_key=" + c.bedrockAPIKey, "TF_VAR_service_account_json=" + c.serviceAccount}
}

func (c cloudSecrets) all() map[string]string {
	return map[string]string{"Azure API key": c.azureAPIKey, "Entra client secret": c.entraSecret, "AWS access key id": c.accessKeyID,
		"AWS secret access key": c.secretAccessKey, "Bedrock API key": c.bedrockAPIKey, "service-account file": c.serviceAccount,
		"service account's private key": c.privateKey, "service account's private key id": c.privateKeyID}
}

// cliRun runs one CLI in a working directory with a locally built
// provider (dev_overrides, no init) against keybroker, TF_LOG=trace to a
// file, and keeps everything it printed for the leak search.
type cliRun struct {
	t        *testing.T
	bin, dir string
	env      []string
	printed  bytes.Buffer
}

func newCLIRun(t *testing.T, cli, addr, token, config string) *cliRun {
	t.Helper()
	providerDir := t.TempDir()
	goBuild(t, "./cmd/terraform-provider-keybroker", providerDir, "terraform-provider-keybroker")
	return newCLIRunWith(t, cli, providerDir, addr, token, config)
}

// newCLIRunWith is newCLIRun with the provider already built in
// providerDir.
func newCLIRunWith(t *testing.T, cli, providerDir, addr, token, config string) *cliRun {
	t.Helper()
	bin, err := devenv.FindTool(cli)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(dir, "dev.tfrc")
	if err := os.WriteFile(cliConfig, []byte("provider_installation {\n  dev_overrides {\n    \"keybroker/keybroker\" = \""+providerDir+"\"\n  }\n  direct {}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(name, "TF_") && !strings.HasPrefix(name, "KEYBROKER_") {
			env = append(env, kv)
		}
	}
	env = append(env, "TF_CLI_CONFIG_FILE="+cliConfig, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"TF_LOG=trace", "TF_LOG_PATH="+filepath.Join(dir, "trace.log"), "KEYBROKER_ADDR="+addr, "KEYBROKER_TOKEN="+token)
	return &cliRun{t: t, bin: bin, dir: dir, env: env}
}

// run runs the CLI with extra environment and arguments; it fails the
// test unless the exit code is wantCode, and returns what it printed.
func (r *cliRun) run(wantCode int, extraEnv []string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Dir, cmd.Env = r.dir, append(slices.Clone(r.env), extraEnv...)
	out, err := cmd.CombinedOutput()
	r.printed.Write(out)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("%s %s: %v", filepath.Base(r.bin), strings.Join(args, " "), err)
	}
	if code != wantCode {
		r.t.Fatalf("%s %s exited %d, want %d:\n%s", filepath.Base(r.bin), strings.Join(args, " "), code, wantCode, out)
	}
	return string(out)
}

// files is every file the CLI left in its working directory, by name: the
// state and its backups, saved plans (their zip entries unpacked), the
// trace log.
func (r *cliRun) files() map[string][]byte {
	r.t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name, _ := filepath.Rel(r.dir, p)
		out[name] = b
		if zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b))); err == nil {
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					return err
				}
				entry, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
				out[name+"!"+f.Name] = entry
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noLeak fails the test when any of what is searched holds any secret.
func noLeak(t *testing.T, searched map[string][]byte, secrets ...cloudSecrets) {
	t.Helper()
	for _, s := range secrets {
		for what, secret := range s.all() {
			if len(secret) < 16 {
				t.Fatalf("the %s is too short to search for", what)
			}
			for _, name := range slices.Sorted(maps.Keys(searched)) {
				if bytes.Contains(searched[name], []byte(secret)) {
					t.Errorf("%s holds the %s", name, what)
				}
			}
		}
	}
}

// vaultHas checks the credential Vault holds for ws1's key: each data
// field named has the value given.
func vaultHas(t *testing.T, s *kbtest.Server, provider, keyID string, want map[string]string) {
	t.Helper()
	secret, err := s.Identities.Root.KV(s.Identities.Mount).Get(context.Background(), broker.WorkspaceKey("ws1", provider, keyID).VaultPath())
	if err != nil {
		t.Fatalf("Vault secret of ws1/%s/%s: %v", provider, keyID, err)
	}
	for field, v := range want {
		if secret.Data[field] != v {
			t.Errorf("Vault's %s of ws1/%s/%s is not the one Terraform sent", field, provider, keyID)
		}
	}
}

// keyIs checks keybroker's metadata of ws1's key: its kind, version and
// non-secret fields.
func keyIs(t *testing.T, s *kbtest.Server, provider, keyID, kind string, version int, fields map[string]any) client.KeyMetadata {
	t.Helper()
	meta, err := s.API.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: provider, KeyID: keyID})
	if err != nil {
		t.Fatalf("key ws1/%s/%s: %v", provider, keyID, err)
	}
	if meta.Kind != kind || meta.Version != version {
		t.Errorf("key ws1/%s/%s is %s version %d, want %s version %d", provider, keyID, meta.Kind, meta.Version, kind, version)
	}
	for name, v := range fields {
		if fmt.Sprint(meta.Fields[name]) != fmt.Sprint(v) {
			t.Errorf("key ws1/%s/%s has %s %v, want %v", provider, keyID, name, meta.Fields[name], v)
		}
	}
	return meta
}

// planActions is what `show -json` of a saved plan says each resource
// does, by address.
func planActions(t *testing.T, planJSON string) map[string]string {
	t.Helper()
	var plan struct {
		ResourceChanges []struct {
			Address string `json:"address"`
			Change  struct {
				Actions []string `json:"actions"`
			} `json:"change"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
		t.Fatalf("plan JSON: %v", err)
	}
	out := map[string]string{}
	for _, rc := range plan.ResourceChanges {
		out[rc.Address] = strings.Join(rc.Change.Actions, ",")
	}
	return out
}

var cloudKeys = []struct{ address, provider, keyID string }{
	{"keybroker_workspace_key.azure", "azure-openai", "default"},
	{"keybroker_workspace_key.entra", "azure-openai", "entra"},
	{"keybroker_workspace_key.bedrock", "bedrock", "default"},
	{"keybroker_workspace_key.bedrock_api_key", "bedrock", "apikey"},
	{"keybroker_workspace_key.vertex", "vertex", "default"},
}

// TestCloudCredentialsOpenTofu manages a key of every way in of the three
// cloud kinds with the real OpenTofu CLI (write-only attributes) against
// keybroker over real Vault and PostgreSQL: create, a plan with no
// changes, a change of a non-secret field of each kind (an update that
// writes the credential), a rotation by bumping the versions, drift put
// back, import of each key, destroy. Vault holds what was configured at
// each step; and no state file, backup, saved plan, plan JSON, printed
// plan, TF_LOG=trace log or keybroker log holds any secret.
func TestCloudCredentialsOpenTofu(t *testing.T) {
	var serverLog syncBuffer
	s := kbtest.Start(t, kbtest.Options{Pepper: pepper, Logger: slog.New(slog.NewTextHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	cli := newCLIRun(t, "tofu", s.URL, s.OperatorToken, cloudConfig)
	first, second := newCloudSecrets(t), newCloudSecrets(t)
	vars := func(v int, apiVersion, region, location string) []string {
		return []string{"-var", fmt.Sprintf("v=%d", v), "-var", "api_version=" + apiVersion, "-var", "region=" + region, "-var", "location=" + location}
	}
	vaultHasAll := func(c cloudSecrets, region, location string) {
		t.Helper()
		// The execution path gets the Azure key Terraform wrote (its API
		// key: a kind that mints nothing is handed out as it is).
		r, err := s.Resolver.ResolveFor(context.Background(), client.ResolveRequest{Workspace: "ws1", Provider: "azure-openai"})
		if err != nil || r.Kind != "azure_openai" || r.KeyID != "default" || r.Credential["apiKey"] != c.azureAPIKey {
			t.Errorf("resolve of ws1/azure-openai: kind %q, key %q, the configured API key: %v (%v)", r.Kind, r.KeyID, r.Credential["apiKey"] == c.azureAPIKey, err)
		}
		vaultHas(t, s, "azure-openai", "default", map[string]string{"api_key": c.azureAPIKey})
		vaultHas(t, s, "azure-openai", "entra", map[string]string{"client_secret": c.entraSecret, "tenant_id": "11111111-2222-3333-4444-555555555555"})
		vaultHas(t, s, "bedrock", "default", map[string]string{"access_key_id": c.accessKeyID, "secret_access_key": c.secretAccessKey, "region": region,
			"role_arn": "arn:aws:iam::123456789012:role/keybroker-bedrock", "external_id": "kb-tf-external-id", "session_name": "kb-tf"})
		vaultHas(t, s, "bedrock", "apikey", map[string]string{"bedrock_api_key": c.bedrockAPIKey})
		vaultHas(t, s, "vertex", "default", map[string]string{"service_account_json": c.serviceAccount, "location": location})
	}
	args := func(cmd string, v []string, more ...string) []string {
		return append(append([]string{cmd, "-no-color", "-input=false"}, v...), more...)
	}

	// Create.
	v1 := vars(1, "2024-06-01", "eu-west-1", "europe-west4")
	cli.run(0, first.env(), args("apply", v1, "-auto-approve")...)
	keyIs(t, s, "azure-openai", "default", "azure_openai", 1, map[string]any{"endpoint": "https://kb-tf-test.openai.azure.com",
		"apiVersion": "2024-06-01", "deployments": map[string]any{"gpt-4o": "gpt-4o-prod"}})
	keyIs(t, s, "azure-openai", "entra", "azure_openai", 1, map[string]any{"tenantId": "11111111-2222-3333-4444-555555555555"})
	meta := keyIs(t, s, "bedrock", "default", "aws_bedrock", 1, map[string]any{"region": "eu-west-1", "roleArn": "arn:aws:iam::123456789012:role/keybroker-bedrock"})
	if meta.Masked["secretAccessKey"] == "" || meta.Masked["accessKeyId"] == "" {
		t.Errorf("Bedrock key's masks: %v", meta.Masked)
	}
	keyIs(t, s, "bedrock", "apikey", "aws_bedrock", 1, map[string]any{"region": "us-east-1"})
	keyIs(t, s, "vertex", "default", "gcp_vertex", 1, map[string]any{"project": "kb-tf-project", "location": "europe-west4"})
	vaultHasAll(first, "eu-west-1", "europe-west4")
	state := cli.run(0, nil, "show", "-json", "-no-color")
	for _, want := range []string{`"kind":"aws_bedrock"`, `"secretAccessKey":"` + first.secretAccessKey[:6] + `...`, `"region":"eu-west-1"`, `"api_key_wo":null`} {
		if !strings.Contains(state, want) {
			t.Errorf("the state lacks %s", want)
		}
	}

	// Read back: nothing to change.
	cli.run(0, first.env(), args("plan", v1, "-detailed-exitcode")...)

	// A non-secret field of each kind changes: an update that writes the
	// credential again (a new version), with the secrets of the
	// configuration.
	v1b := vars(1, "2024-10-21", "us-west-2", "us-central1")
	cli.run(2, first.env(), args("plan", v1b, "-detailed-exitcode", "-out=update.tfplan")...)
	actions := planActions(t, cli.run(0, nil, "show", "-json", "update.tfplan"))
	for _, k := range cloudKeys {
		want := map[string]string{"keybroker_workspace_key.azure": "update", "keybroker_workspace_key.bedrock": "update", "keybroker_workspace_key.vertex": "update"}[k.address]
		if want == "" {
			want = "no-op"
		}
		if actions[k.address] != want {
			t.Errorf("the plan does %q to %s, want %q", actions[k.address], k.address, want)
		}
	}
	cli.run(0, nil, "show", "-no-color", "update.tfplan")
	cli.run(0, first.env(), "apply", "-no-color", "-input=false", "update.tfplan")
	keyIs(t, s, "azure-openai", "default", "azure_openai", 2, map[string]any{"apiVersion": "2024-10-21"})
	keyIs(t, s, "azure-openai", "entra", "azure_openai", 1, nil)
	keyIs(t, s, "bedrock", "default", "aws_bedrock", 2, map[string]any{"region": "us-west-2"})
	keyIs(t, s, "vertex", "default", "gcp_vertex", 2, map[string]any{"location": "us-central1"})
	vaultHasAll(first, "us-west-2", "us-central1")

	// Rotation: new secrets, the versions bumped.
	v2 := vars(2, "2024-10-21", "us-west-2", "us-central1")
	cli.run(2, second.env(), args("plan", v2, "-detailed-exitcode", "-out=rotate.tfplan")...)
	for addr, action := range planActions(t, cli.run(0, nil, "show", "-json", "rotate.tfplan")) {
		if action != "update" {
			t.Errorf("the rotation plan does %q to %s, want update", action, addr)
		}
	}
	cli.run(0, second.env(), "apply", "-no-color", "-input=false", "rotate.tfplan")
	vaultHasAll(second, "us-west-2", "us-central1")
	keyIs(t, s, "bedrock", "apikey", "aws_bedrock", 2, nil)
	cli.run(0, second.env(), args("plan", v2, "-detailed-exitcode")...)

	// Changed outside Terraform (the region, with another key pair): the
	// plan writes the configured credential back.
	ref := client.KeyRef{Scope: client.Workspace("ws1"), Provider: "bedrock", KeyID: "default"}
	if _, _, err := s.API.PutCredential(context.Background(), ref, map[string]any{"region": "eu-central-1",
		"accessKeyId": first.accessKeyID, "secretAccessKey": first.secretAccessKey}, 0, false); err != nil {
		t.Fatal(err)
	}
	cli.run(2, second.env(), args("plan", v2, "-detailed-exitcode", "-out=drift.tfplan")...)
	if a := planActions(t, cli.run(0, nil, "show", "-json", "drift.tfplan"))["keybroker_workspace_key.bedrock"]; a != "update" {
		t.Errorf("after a change outside Terraform the plan does %q to the Bedrock key, want update", a)
	}
	cli.run(0, second.env(), "apply", "-no-color", "-input=false", "drift.tfplan")
	vaultHasAll(second, "us-west-2", "us-central1")

	// Import: each key forgotten, then imported; its non-secret fields
	// come back, its secrets do not (the next apply sends them, as the
	// versions were not imported).
	for _, k := range cloudKeys {
		cli.run(0, nil, "state", "rm", "-no-color", k.address)
		cli.run(0, second.env(), args("import", v2, k.address, "workspace/ws1/"+k.provider+"/"+k.keyID)...)
	}
	state = cli.run(0, nil, "show", "-json", "-no-color")
	for _, want := range []string{`"region":"us-west-2"`, `"location":"us-central1"`, `"api_version":"2024-10-21"`, `"role_arn":"arn:aws:iam::123456789012:role/keybroker-bedrock"`} {
		if !strings.Contains(state, want) {
			t.Errorf("the imported state lacks %s", want)
		}
	}
	cli.run(0, second.env(), args("apply", v2, "-auto-approve")...)
	cli.run(0, second.env(), args("plan", v2, "-detailed-exitcode")...)
	vaultHasAll(second, "us-west-2", "us-central1")

	// Destroy.
	cli.run(0, second.env(), args("destroy", v2, "-auto-approve")...)
	for _, k := range cloudKeys {
		if _, err := s.API.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: k.provider, KeyID: k.keyID}); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("%s after destroy: %v", k.address, err)
		}
	}

	// The search, made meaningful: the trace log is a trace of the
	// provider's calls, the printed plans show the write-only attributes.
	searched := cli.files()
	for _, name := range []string{"terraform.tfstate", "terraform.tfstate.backup", "trace.log", "update.tfplan", "rotate.tfplan"} {
		if len(searched[name]) == 0 {
			t.Errorf("%s is missing or empty: the search below would miss it", name)
		}
	}
	if !bytes.Contains(searched["trace.log"], []byte("ApplyResourceChange")) || !strings.Contains(cli.printed.String(), "(write-only attribute)") {
		t.Error("the trace log or the printed plan is not what the search assumes")
	}
	searched["printed by the CLI"] = cli.printed.Bytes()
	searched["keybroker's log"] = []byte(serverLog.String())
	noLeak(t, searched, first, second)
}

// TestCloudCredentialsTerraform15 measures what Terraform 1.5.7 (the last
// Terraform under MPL-2.0, which has no write-only attributes) does with
// the cloud kinds: the plan fails with a diagnostic that says why and
// what to use, nothing is written to keybroker, and no state, log or
// output holds a secret.
func TestCloudCredentialsTerraform15(t *testing.T) {
	s := kbtest.Start(t, kbtest.Options{Pepper: pepper})
	// Terraform 1.5 has no ephemeral variables: the same configuration
	// with sensitive ones.
	config := strings.ReplaceAll(cloudConfig, "  ephemeral = true\n", "")
	cli := newCLIRun(t, "terraform", s.URL, s.OperatorToken, config)
	secrets := newCloudSecrets(t)
	out := cli.run(1, secrets.env(), "apply", "-no-color", "-input=false", "-auto-approve",
		"-var", "v=1", "-var", "api_version=2024-10-21", "-var", "region=eu-west-1", "-var", "location=europe-west4")
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"azure_openai needs write-only attributes", "bedrock needs write-only attributes", "vertex needs write-only attributes",
		"use Terraform >= 1.11 or OpenTofu >= 1.11", "Write-only attributes are only supported in Terraform 1.11 and later"} {
		if !strings.Contains(flat, want) {
			t.Errorf("terraform apply did not say %q:\n%s", want, out)
		}
	}
	for _, k := range cloudKeys {
		if _, err := s.API.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: k.provider, KeyID: k.keyID}); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("%s was written by a refused configuration: %v", k.address, err)
		}
	}
	searched := cli.files()
	if !bytes.Contains(searched["trace.log"], []byte("ValidateResourceConfig")) {
		t.Error("the trace log does not trace the provider's calls: the search below would prove nothing")
	}
	searched["printed by the CLI"] = cli.printed.Bytes()
	noLeak(t, searched, secrets)
}

// TestCloudCredentialDiagnostics: a configuration that is not one
// credential of the provider's kind is refused at plan time, with a
// diagnostic naming the attribute, and nothing is written.
func TestCloudCredentialDiagnostics(t *testing.T) {
	useCLI(t, "tofu")
	s := startKeybroker(t)
	key := func(provider, body string) string {
		return providerBlock(s) + fmt.Sprintf("resource \"keybroker_workspace_key\" \"k\" {\n  workspace_id = \"ws1\"\n  provider_id = %q\n%s\n}\n", provider, body)
	}
	const azureBase = `endpoint = "https://kb-tf-test.openai.azure.com"
    api_version = "2024-10-21"`
	steps := []struct{ provider, body, want string }{
		{"azure-openai", `  api_key_wo = "AzK0123456789012345678901234567890123"
  api_key_wo_version = 1`, `(?s)(api_key_wo is for providers of one API key.*Missing azure_openai|Missing azure_openai.*api_key_wo is for providers of one API key)`},
		{"openai", `  bedrock = { region = "eu-west-1", api_key_wo = "ABSK0123456789012345678901", api_key_wo_version = 1 }`,
			`(?s)Wrong credential for the provider.*bedrock is the credential of\s+provider_id\s+"bedrock",\s+not\s+of\s+"openai"`},
		{"bedrock", `  vertex = { project = "kb-tf-project", location = "us-central1", service_account_json_wo = "{}", service_account_json_wo_version = 1 }`,
			`(?s)Wrong credential for the provider.*vertex is the credential of\s+provider_id "vertex"`},
		{"azure-openai", "  azure_openai = {\n    " + azureBase + "\n  }", `(?s)azure_openai has no way to authenticate.*Set api_key_wo`},
		{"azure-openai", "  azure_openai = {\n    " + azureBase + `
    api_key_wo = "AzK0123456789012345678901234567890123"
    api_key_wo_version = 1
    tenant_id = "11111111-2222-3333-4444-555555555555"
  }`, `(?s)Either api_key_wo or the Entra client credentials.*drop tenant_id`},
		{"azure-openai", "  azure_openai = {\n    " + azureBase + `
    tenant_id = "11111111-2222-3333-4444-555555555555"
    client_secret_wo = "0123456789abcdef0123"
    client_secret_wo_version = 1
  }`, `(?s)Incomplete Entra client credentials.*client_id\s+missing`},
		{"azure-openai", "  azure_openai = {\n    " + azureBase + `
    api_key_wo = "AzK0123456789012345678901234567890123"
  }`, `(?s)api_key_wo_version is required with api_key_wo`},
		{"bedrock", `  bedrock = { region = "eu-west-1", secret_access_key_wo = "0123456789012345678901234567890123456789", access_key_wo_version = 1 }`,
			`(?s)Incomplete key pair.*secret_access_key_wo needs its\s+access_key_id_wo`},
		{"bedrock", `  bedrock = { region = "eu-west-1", api_key_wo = "ABSK0123456789012345678901", api_key_wo_version = 1, role_arn = "arn:aws:iam::123456789012:role/r" }`,
			`Either a key pair or api_key_wo`},
		{"bedrock", `  bedrock = { region = "eu-west-1", access_key_id_wo = "AKIA0123456789ABCDEF", secret_access_key_wo = "0123456789012345678901234567890123456789", access_key_wo_version = 1, external_id = "x-123" }`,
			`(?s)No role to assume.*external_id apply only to a role`},
		{"bedrock", `  bedrock = { region = "eu-west-1", api_key_wo = "ABSK0123456789012345678901", api_key_wo_version = 1, access_key_wo_version = 1 }`,
			`access_key_wo_version without access_key_id_wo`},
		{"vertex", `  vertex = { project = "kb-tf-project", location = "us-central1", service_account_json_wo_version = 1 }`,
			`(?s)attribute "service_account_json_wo" is required`},
		// Rules only keybroker knows (the region, the file) are its
		// answer, at apply.
		{"bedrock", `  bedrock = { region = "mars-north-1", api_key_wo = "ABSK0123456789012345678901", api_key_wo_version = 1 }`,
			`(?s)keybroker rejected the key.*not\s+an\s+AWS\s+region`},
		{"vertex", `  vertex = { project = "kb-tf-project", location = "us-central1", service_account_json_wo = "{\"type\": \"authorized_user\"}", service_account_json_wo_version = 1 }`,
			`(?s)keybroker rejected the key.*serviceAccountJson`},
	}
	var test []resource.TestStep
	for _, st := range steps {
		test = append(test, resource.TestStep{Config: key(st.provider, st.body), ExpectError: regexp.MustCompile(strings.ReplaceAll(st.want, " ", `\s+`))})
	}
	resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: factories, Steps: test})
	for _, p := range []string{"azure-openai", "bedrock", "vertex", "openai"} {
		if _, err := s.api.Key(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: p, KeyID: "default"}); !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("a refused configuration left a %s key: %v", p, err)
		}
	}
}

// TestCloudExamplesOpenTofu runs each cloud's example (terraform/examples/
// azure-openai-key, bedrock-key, vertex-key) as its comment says, with
// OpenTofu against keybroker: apply, a plan with no changes, a rotation
// (key_version bumped), destroy; the keys are of the kind the example
// says, and no file, plan, output or log holds a secret.
func TestCloudExamplesOpenTofu(t *testing.T) {
	s := kbtest.Start(t, kbtest.Options{Pepper: pepper})
	providerDir := t.TempDir()
	goBuild(t, "./cmd/terraform-provider-keybroker", providerDir, "terraform-provider-keybroker")
	first, second := newCloudSecrets(t), newCloudSecrets(t)
	env := func(c cloudSecrets) []string {
		return []string{"TF_VAR_azure_openai_api_key=" + c.azureAPIKey, "TF_VAR_entra_client_secret=" + c.entraSecret,
			"TF_VAR_aws_access_key_id=" + c.accessKeyID, "TF_VAR_aws_secret_access_key=" + c.secretAccessKey,
			"TF_VAR_bedrock_api_key=" + c.bedrockAPIKey, "TF_VAR_vertex_service_account_json=" + c.serviceAccount}
	}
	for _, ex := range []struct {
		dir, provider, kind string
		keys                []string
		vault               func(c cloudSecrets) map[string]map[string]string
	}{
		{"azure-openai-key", "azure-openai", "azure_openai", []string{"default", "entra"}, func(c cloudSecrets) map[string]map[string]string {
			return map[string]map[string]string{"default": {"api_key": c.azureAPIKey}, "entra": {"client_secret": c.entraSecret}}
		}},
		{"bedrock-key", "bedrock", "aws_bedrock", []string{"default", "apikey"}, func(c cloudSecrets) map[string]map[string]string {
			return map[string]map[string]string{"default": {"access_key_id": c.accessKeyID, "secret_access_key": c.secretAccessKey}, "apikey": {"bedrock_api_key": c.bedrockAPIKey}}
		}},
		{"vertex-key", "vertex", "gcp_vertex", []string{"default"}, func(c cloudSecrets) map[string]map[string]string {
			return map[string]map[string]string{"default": {"service_account_json": c.serviceAccount}}
		}},
	} {
		t.Run(ex.dir, func(t *testing.T) {
			config, err := os.ReadFile(filepath.Join("examples", ex.dir, "main.tf"))
			if err != nil {
				t.Fatal(err)
			}
			cli := newCLIRunWith(t, "tofu", providerDir, s.URL, s.OperatorToken, string(config))
			check := func(c cloudSecrets, version int) {
				t.Helper()
				for _, keyID := range ex.keys {
					ref := client.KeyRef{Scope: client.Workspace("acme"), Provider: ex.provider, KeyID: keyID}
					meta, err := s.API.Key(context.Background(), ref)
					if err != nil || meta.Kind != ex.kind || meta.Version != version {
						t.Fatalf("acme's %s key %s: %+v, %v; want kind %s version %d", ex.provider, keyID, meta, err, ex.kind, version)
					}
					secret, err := s.Identities.Root.KV(s.Identities.Mount).Get(context.Background(), broker.WorkspaceKey("acme", ex.provider, keyID).VaultPath())
					if err != nil {
						t.Fatal(err)
					}
					for field, v := range ex.vault(c)[keyID] {
						if secret.Data[field] != v {
							t.Errorf("Vault's %s of acme's %s key %s is not the example's", field, ex.provider, keyID)
						}
					}
				}
			}
			cli.run(0, env(first), "apply", "-auto-approve", "-no-color", "-input=false")
			check(first, 1)
			cli.run(0, env(first), "plan", "-detailed-exitcode", "-no-color", "-input=false")
			cli.run(0, env(second), "apply", "-auto-approve", "-no-color", "-input=false", "-var", "key_version=2")
			check(second, 2)
			cli.run(0, env(second), "destroy", "-auto-approve", "-no-color", "-input=false", "-var", "key_version=2")
			for _, keyID := range ex.keys {
				if _, err := s.API.Key(context.Background(), client.KeyRef{Scope: client.Workspace("acme"), Provider: ex.provider, KeyID: keyID}); !client.IsStatus(err, http.StatusNotFound) {
					t.Errorf("acme's %s key %s after destroy: %v", ex.provider, keyID, err)
				}
			}
			searched := cli.files()
			if len(searched["terraform.tfstate.backup"]) == 0 || !strings.Contains(cli.printed.String(), "masked") {
				t.Error("no state backup or no output of the masks: the search below would miss them")
			}
			searched["printed by the CLI"] = cli.printed.Bytes()
			noLeak(t, searched, first, second)
		})
	}
}

// TestAcceptanceCloudKeysOfOrganizationAndHosted: the cloud kinds on the
// other scopes (an organization's Bedrock key, a hosted Vertex key),
// through terraform-plugin-testing on OpenTofu: create, a change of a
// non-secret field (an update of that key only), a rotation, and imports
// that give back the same state (less the versions, which are not
// imported); every plan and state searched for the secrets.
func TestAcceptanceCloudKeysOfOrganizationAndHosted(t *testing.T) {
	useCLI(t, "tofu")
	s := startKeybroker(t)
	first, second := newCloudSecrets(t), newCloudSecrets(t)
	cfg := providerBlock(s) + `
variable "ak" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "sk" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "sa" {
  type      = string
  sensitive = true
  ephemeral = true
}
variable "region" { type = string }
variable "v" { type = number }
resource "keybroker_organization_key" "bedrock" {
  organization_id = "acme"
  provider_id     = "bedrock"
  key_id          = "shared"
  name            = "Acme's Bedrock"
  bedrock = {
    region                = var.region
    access_key_id_wo      = var.ak
    secret_access_key_wo  = var.sk
    access_key_wo_version = var.v
  }
}
resource "keybroker_hosted_key" "vertex" {
  provider_id = "vertex"
  key_id      = "main"
  vertex = {
    project                         = "kb-tf-hosted"
    location                        = "global"
    service_account_json_wo         = var.sa
    service_account_json_wo_version = var.v
  }
}
`
	vars := func(c cloudSecrets, region string, v int) config.Variables {
		return config.Variables{"ak": config.StringVariable(c.accessKeyID), "sk": config.StringVariable(c.secretAccessKey),
			"sa": config.StringVariable(c.serviceAccount), "region": config.StringVariable(region), "v": config.IntegerVariable(v)}
	}
	var secrets []string
	for _, c := range []cloudSecrets{first, second} {
		secrets = append(secrets, c.accessKeyID, c.secretAccessKey, c.serviceAccount, c.privateKey, c.privateKeyID)
	}
	const orgRes, hostedRes = "keybroker_organization_key.bedrock", "keybroker_hosted_key.vertex"
	plans := func(actions ...plancheck.PlanCheck) resource.ConfigPlanChecks {
		return resource.ConfigPlanChecks{PreApply: append(actions, planHasNoSecret{secrets}), PostApplyPostRefresh: []plancheck.PlanCheck{planHasNoSecret{secrets}}}
	}
	states := []statecheck.StateCheck{stateHasNoSecret{secrets}}
	bedrockRef := client.KeyRef{Scope: client.Organization("acme"), Provider: "bedrock", KeyID: "shared"}
	vertexRef := client.KeyRef{Scope: client.Hosted(), Provider: "vertex", KeyID: "main"}
	vault := func(ref client.KeyRef, want map[string]string) resource.TestCheckFunc {
		return func(*tfstate.State) error {
			var key broker.KeyRef
			if ref.Scope.Kind == "hosted" {
				key = broker.HostedKey(ref.Provider, ref.KeyID)
			} else {
				key = broker.OrganizationKey(ref.Scope.ID, ref.Provider, ref.KeyID)
			}
			secret, err := s.ids.Root.KV(s.ids.Mount).Get(context.Background(), key.VaultPath())
			if err != nil {
				return err
			}
			for field, v := range want {
				if secret.Data[field] != v {
					return fmt.Errorf("Vault's %s of %s/%s is not the configured one", field, ref.Scope, ref.KeyID)
				}
			}
			return nil
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: factories,
		CheckDestroy: func(*tfstate.State) error {
			for _, ref := range []client.KeyRef{bedrockRef, vertexRef} {
				if _, err := s.api.Key(context.Background(), ref); !client.IsStatus(err, http.StatusNotFound) {
					return fmt.Errorf("%s/%s after destroy: %v", ref.Scope, ref.KeyID, err)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: cfg, ConfigVariables: vars(first, "eu-west-1", 1), ConfigPlanChecks: plans(), ConfigStateChecks: states,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(orgRes, "id", "organization/acme/bedrock/shared"),
					resource.TestCheckResourceAttr(orgRes, "kind", "aws_bedrock"),
					resource.TestCheckResourceAttr(orgRes, "bedrock.region", "eu-west-1"),
					resource.TestCheckResourceAttr(orgRes, "masked.secretAccessKey", first.secretAccessKey[:6]+"..."+first.secretAccessKey[36:]),
					resource.TestCheckNoResourceAttr(orgRes, "bedrock.secret_access_key_wo"),
					resource.TestCheckResourceAttr(orgRes, "version", "1"),
					resource.TestCheckResourceAttr(hostedRes, "id", "hosted/vertex/main"),
					resource.TestCheckResourceAttr(hostedRes, "kind", "gcp_vertex"),
					resource.TestCheckResourceAttr(hostedRes, "vertex.location", "global"),
					resource.TestCheckResourceAttrSet(hostedRes, "masked.serviceAccountJson"),
					vault(bedrockRef, map[string]string{"region": "eu-west-1", "secret_access_key": first.secretAccessKey}),
					vault(vertexRef, map[string]string{"service_account_json": first.serviceAccount}),
				),
			},
			{
				// Another region: the Bedrock key is updated (written again
				// with the same pair), the Vertex key is left alone.
				Config: cfg, ConfigVariables: vars(first, "us-east-1", 1), ConfigStateChecks: states,
				ConfigPlanChecks: plans(plancheck.ExpectResourceAction(orgRes, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(hostedRes, plancheck.ResourceActionNoop)),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(orgRes, "version", "2"),
					resource.TestCheckResourceAttr(hostedRes, "version", "1"),
					vault(bedrockRef, map[string]string{"region": "us-east-1", "access_key_id": first.accessKeyID, "secret_access_key": first.secretAccessKey}),
				),
			},
			{
				// Rotation: new secrets, the versions bumped.
				Config: cfg, ConfigVariables: vars(second, "us-east-1", 2), ConfigStateChecks: states,
				ConfigPlanChecks: plans(plancheck.ExpectResourceAction(orgRes, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(hostedRes, plancheck.ResourceActionUpdate)),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr(orgRes, "version", "3"),
					resource.TestCheckResourceAttr(hostedRes, "version", "2"),
					vault(bedrockRef, map[string]string{"access_key_id": second.accessKeyID, "secret_access_key": second.secretAccessKey}),
					vault(vertexRef, map[string]string{"service_account_json": second.serviceAccount}),
				),
			},
			{ResourceName: orgRes, ImportState: true, ImportStateId: "organization/acme/bedrock/shared", ImportStateVerify: true,
				ConfigVariables: vars(second, "us-east-1", 2), ImportStateVerifyIgnore: []string{"bedrock.access_key_wo_version"}},
			{ResourceName: hostedRes, ImportState: true, ImportStateId: "hosted/vertex/main", ImportStateVerify: true,
				ConfigVariables: vars(second, "us-east-1", 2), ImportStateVerifyIgnore: []string{"vertex.service_account_json_wo_version"}},
		},
	})
}
