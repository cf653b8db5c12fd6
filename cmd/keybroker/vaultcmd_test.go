package main

import (
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

func TestVaultPoliciesAndBootstrapCommands(t *testing.T) {
	out, _ := run(t, nil, "", false, "vault", "policies", "--kv-mount", "byok-prod")
	for _, want := range []string{`policy "keybroker-writer"`, `policy "keybroker-reader"`, `path "byok-prod/data/workspaces/+/providers/+/keys/+"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("vault policies lacks %s:\n%s", want, out)
		}
	}

	vs := testenv.StartVault(t)
	env := []string{"VAULT_ADDR=" + vs.Addr, "VAULT_TOKEN=" + vs.RootToken}
	out, msg := run(t, env, "", false, "vault", "bootstrap", "--dry-run")
	if !strings.Contains(msg, "would change: enable the KV v2 secrets engine at byok/") || strings.Contains(out, "role_id") {
		t.Fatalf("dry run: stdout %q stderr %q", out, msg)
	}
	out, msg = run(t, env, "", false, "vault", "bootstrap", "--wrap-ttl", "5m", "--token-ttl", "10m", "--token-max-ttl", "30m")
	if !strings.Contains(msg, "changed: create AppRole role keybroker-writer") ||
		!strings.Contains(out, "keybroker-writer role_id=") || !strings.Contains(out, "keybroker-reader wrapped_secret_id=") {
		t.Fatalf("bootstrap: stdout %q stderr %q", out, msg)
	}
	_, msg = run(t, env, "", false, "vault", "bootstrap", "--token-ttl", "10m", "--token-max-ttl", "30m")
	if !strings.Contains(msg, "nothing to change") {
		t.Fatalf("second bootstrap: %q", msg)
	}
	_, msg = run(t, []string{"VAULT_ADDR=" + vs.Addr, "VAULT_TOKEN="}, "", true, "vault", "bootstrap")
	if !strings.Contains(msg, "VAULT_TOKEN") {
		t.Fatalf("bootstrap without a token: %q", msg)
	}
}
