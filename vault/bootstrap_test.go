package vault_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/vault"
)

func TestBootstrapIsIdempotentAndReportsDrift(t *testing.T) {
	ctx := context.Background()
	vs := testenv.StartVault(t) // a Vault of this test's own: bootstrap uses the default names
	op, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	first, err := op.Bootstrap(ctx, vault.BootstrapConfig{})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(first.Changes, "\n")
	for _, want := range []string{"enable the KV v2 secrets engine at byok/", "write policy keybroker-writer", "write policy keybroker-reader",
		"enable the AppRole auth method", "create AppRole role keybroker-writer", "create AppRole role keybroker-reader"} {
		if !strings.Contains(joined, want) {
			t.Errorf("first bootstrap did not %q; it did:\n%s", want, joined)
		}
	}
	if first.RoleIDs[policies.Writer] == "" || first.RoleIDs[policies.Reader] == "" {
		t.Fatalf("role ids: %v", first.RoleIDs)
	}

	again, err := op.Bootstrap(ctx, vault.BootstrapConfig{})
	if err != nil || len(again.Changes) != 0 {
		t.Fatalf("second bootstrap changed %v (%v)", again.Changes, err)
	}
	if again.RoleIDs[policies.Writer] != first.RoleIDs[policies.Writer] {
		t.Fatal("role id changed between runs")
	}

	// Someone widens the writer's policy and lengthens the reader's tokens.
	root := vs.Client()
	if err := root.Sys().PutPolicyWithContext(ctx, policies.Writer, `path "byok/data/*" { capabilities = ["read", "create", "update"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/role/keybroker-reader", map[string]any{"token_ttl": "24h", "token_max_ttl": "48h"}); err != nil {
		t.Fatal(err)
	}
	dry, err := op.Bootstrap(ctx, vault.BootstrapConfig{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	joined = strings.Join(dry.Changes, "\n")
	if !strings.Contains(joined, "rewrite policy keybroker-writer") || !strings.Contains(joined, "update AppRole role keybroker-reader") || len(dry.Changes) != 2 {
		t.Fatalf("dry run after drift reported:\n%s", joined)
	}
	if hcl, _ := root.Sys().GetPolicyWithContext(ctx, policies.Writer); !strings.Contains(hcl, `"read"`) || strings.Contains(hcl, "keybroker-writer:") {
		t.Fatal("the dry run changed the policy")
	}
	fixed, err := op.Bootstrap(ctx, vault.BootstrapConfig{})
	if err != nil || len(fixed.Changes) != 2 {
		t.Fatalf("repair run: %v %v", fixed.Changes, err)
	}
	if final, err := op.Bootstrap(ctx, vault.BootstrapConfig{}); err != nil || len(final.Changes) != 0 {
		t.Fatalf("after repair: %v %v", final.Changes, err)
	}
}

func TestBootstrapRefusesAMountOfAnotherKind(t *testing.T) {
	vs := testenv.StartVault(t)
	op, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	// The dev server's "secret/" is KV v2; "cubbyhole/" is not KV at all.
	if _, err := op.Bootstrap(context.Background(), vault.BootstrapConfig{KVMount: "cubbyhole"}); err == nil || !strings.Contains(err.Error(), "not KV v2") {
		t.Fatalf("bootstrap over cubbyhole: %v", err)
	}
}

func TestBootstrapRequiresCASAndBoundsSecretIDs(t *testing.T) {
	ctx := context.Background()
	vs := testenv.StartVault(t)
	op, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Bootstrap(ctx, vault.BootstrapConfig{SecretIDBoundCIDRs: []string{"10.0.0.0/8"}}); err != nil {
		t.Fatal(err)
	}
	root := vs.Client()
	conf, err := root.Logical().ReadWithContext(ctx, "byok/config")
	if err != nil || conf.Data["cas_required"] != true {
		t.Fatalf("byok/config: %v %v", conf, err)
	}
	// Vault itself refuses a blind write: even a root token must send cas.
	if _, err := root.Logical().WriteWithContext(ctx, "byok/data/workspaces/ws1/providers/openai", map[string]any{"data": map[string]any{"api_key": "sk-blind"}}); err == nil ||
		!strings.Contains(err.Error(), "check-and-set") {
		t.Fatalf("write without cas: %v", err)
	}
	role, err := root.Logical().ReadWithContext(ctx, "auth/approle/role/"+policies.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, uses := role.Data["secret_id_ttl"], role.Data["secret_id_num_uses"]; fmt.Sprint(ttl) != "2592000" || fmt.Sprint(uses) != "1000" {
		t.Fatalf("secret id ttl %v, uses %v; want 30 days and 1000", ttl, uses)
	}
	// A secret id bound to 10.0.0.0/8 cannot log in from loopback.
	secretID, err := op.IssueSecretID(ctx, "approle", policies.Reader)
	if err != nil {
		t.Fatal(err)
	}
	roleID, _ := root.Logical().ReadWithContext(ctx, "auth/approle/role/"+policies.Reader+"/role-id")
	if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": secretID}); err == nil {
		t.Fatal("a secret id bound to 10.0.0.0/8 logged in from 127.0.0.1")
	} else if strings.Contains(err.Error(), secretID) {
		t.Fatal("the error quotes the secret id")
	}
}
