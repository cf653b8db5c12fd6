package terraform_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// goBuild builds a package of this module into dir and returns the binary.
func goBuild(t *testing.T, pkg, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".." // the module root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

var (
	reAddr          = regexp.MustCompile(`^export KEYBROKER_ADDR=(\S+)$`)
	reToken         = regexp.MustCompile(`^export KEYBROKER_TOKEN=(\S+)$`)
	reResolverToken = regexp.MustCompile(`^export KEYBROKER_RESOLVER_TOKEN=(\S+)$`)
)

// startDev runs `keybroker dev` and returns its address and operator token.
func startDev(t *testing.T, bin string) (addr, token, resolverToken string) {
	t.Helper()
	cmd := exec.Command(bin, "dev", "--listen-addr", "127.0.0.1:0")
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(name, "KEYBROKER_") && !strings.HasPrefix(name, "VAULT_") && name != "DATABASE_URL" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && (addr == "" || token == "" || resolverToken == "") {
		if m := reResolverToken.FindStringSubmatch(lines.Text()); m != nil {
			resolverToken = m[1]
		}
		if m := reAddr.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
		if m := reToken.FindStringSubmatch(lines.Text()); m != nil {
			token = m[1]
		}
	}
	if addr == "" || token == "" || resolverToken == "" {
		t.Fatalf("keybroker dev printed no address or tokens; its log:\n%s", stderr.String())
	}
	go func() { _, _ = bufio.NewReader(stdout).WriteTo(devNull{}) }()
	return addr, token, resolverToken
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// TestExampleAgainstKeybrokerDev runs examples/workspace-keys with
// OpenTofu and a dev_overrides CLI configuration (no init, as with any
// locally built provider) against `keybroker dev`: apply, a plan with no
// changes, destroy; and neither the state file nor the plan JSON holds a
// key.
func TestExampleAgainstKeybrokerDev(t *testing.T) {
	runExample(t, "tofu", "examples/workspace-keys", true)
}

// TestTerraform15ExampleAgainstKeybrokerDev runs the api_key variant,
// examples/workspace-keys-terraform-1.5, with Terraform 1.5.7 (which has no
// write-only attributes): the same steps; the key is in the state, as its
// comment says.
func TestTerraform15ExampleAgainstKeybrokerDev(t *testing.T) {
	runExample(t, "terraform", "examples/workspace-keys-terraform-1.5", false)
}

func runExample(t *testing.T, cli, dir string, writeOnly bool) {
	tofu, err := devenv.FindTool(cli)
	if err != nil {
		t.Fatal(err)
	}
	bins := t.TempDir()
	goBuild(t, "./cmd/terraform-provider-keybroker", bins, "terraform-provider-keybroker")
	keybroker := goBuild(t, "./cmd/keybroker", bins, "keybroker")
	addr, token, resolverToken := startDev(t, keybroker)

	work := t.TempDir()
	example, err := os.ReadFile(filepath.Join(dir, "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "main.tf"), example, 0o600); err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(work, "dev.tfrc")
	if err := os.WriteFile(cliConfig, []byte(`provider_installation {
  dev_overrides {
    "keybroker/keybroker" = "`+bins+`"
  }
  direct {}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	openaiKey := "sk-proj-example-" + testenv.RandomID(t) + testenv.RandomID(t)
	anthropicKey := "sk-ant-api03-example-" + testenv.RandomID(t) + testenv.RandomID(t)
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"KEYBROKER_ADDR="+addr, "KEYBROKER_TOKEN="+token,
		"TF_VAR_acme_openai_key="+openaiKey, "TF_VAR_globex_anthropic_key="+anthropicKey)
	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(tofu, args...)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %s: %v", cli, strings.Join(args, " "), err)
		}
		if code != wantCode {
			t.Fatalf("%s %s exited %d, want %d:\n%s", cli, strings.Join(args, " "), code, wantCode, out)
		}
		return string(out)
	}

	run(0, "apply", "-auto-approve", "-no-color")
	api, err := client.New(client.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := client.New(client.Config{Address: addr, Token: resolverToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ ws, provider, key string }{{"acme", "openai", openaiKey}, {"globex", "anthropic", anthropicKey}} {
		r, err := resolver.Resolve(ctx, c.ws, c.provider)
		if err != nil || r.APIKey != c.key || !r.IsBYOK {
			t.Fatalf("resolve %s/%s after apply: %v", c.ws, c.provider, err)
		}
	}
	// Nothing to change on a second plan (exit code 0 with -detailed-exitcode).
	run(0, "plan", "-detailed-exitcode", "-no-color", "-out=plan.bin")
	planJSON := run(0, "show", "-json", "plan.bin")
	state, err := os.ReadFile(filepath.Join(work, "terraform.tfstate"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(state), "sk-pro...") {
		t.Fatal("the state does not even hold the masked preview: the check below would prove nothing")
	}
	for _, k := range []string{openaiKey, anthropicKey} {
		if writeOnly && (strings.Contains(string(state), k) || strings.Contains(planJSON, k)) {
			t.Fatalf("a key (%s...) is in the state file or the plan JSON", k[:8])
		}
		if !writeOnly && !strings.Contains(string(state), k) {
			t.Fatalf("the api_key variant's state lacks the key (%s...): its comment says otherwise", k[:8])
		}
	}

	run(0, "destroy", "-auto-approve", "-no-color")
	for _, c := range []struct{ ws, provider string }{{"acme", "openai"}, {"globex", "anthropic"}} {
		if _, err := api.Key(ctx, client.KeyRef{Scope: client.Workspace(c.ws), Provider: c.provider, KeyID: "default"}); !client.IsStatus(err, http.StatusNotFound) {
			t.Fatalf("%s/%s after destroy: %v", c.ws, c.provider, err)
		}
	}
}
