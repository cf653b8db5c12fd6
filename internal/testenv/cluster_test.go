package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/devenv"
)

func TestVaultClusterForms(t *testing.T) {
	ctx := context.Background()
	c, err := StartVaultCluster(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if a := c.Active(ctx); a != 0 {
		t.Fatalf("active node %d, want 0", a)
	}
	cfg, err := c.Nodes[0].Client().Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		t.Fatal(err)
	}
	servers := cfg.Data["config"].(map[string]any)["servers"].([]any)
	if len(servers) != 3 {
		t.Fatalf("%d raft peers, want 3", len(servers))
	}
}

// The Vault the tests start is the build asked for: the default 1.14.0,
// or KEYBROKER_VAULT_BIN's (make test-compat); the test log says which.
func TestTheVaultUnderTestIsTheBuildAskedFor(t *testing.T) {
	ctx := context.Background()
	h, err := VaultClient(t).Sys().HealthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devenv.FindTool("vault")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	if !strings.Contains(string(out), " v"+h.Version) { // "Vault v1.14.0", "OpenBao v2.4.1"
		t.Fatalf("the Vault under test reports %s; %s is %s", h.Version, bin, out)
	}
	if os.Getenv("KEYBROKER_VAULT_BIN") == "" && h.Version != "1.14.0" {
		t.Fatalf("the default Vault under test is %s, want 1.14.0", h.Version)
	}
	t.Logf("Vault under test: %s (%s)", h.Version, bin)
}
