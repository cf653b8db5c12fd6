package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// TestKeysLifecycleCommands drives the lifecycle commands against a
// running `keybroker serve` whose OpenAI calls (key checks, admin API) go
// to the stand-in: an admin credential added from stdin, a key with an
// expiry and its id at the provider, a rotation at the provider, its
// record, the key's usage, a scope's rotateAfter, and a delete that
// revokes at the provider. No output carries a key.
func TestKeysLifecycleCommands(t *testing.T) {
	stub := cloudstub.NewOpenAI(t)
	vaultAddr, vaultToken := testenv.Vault(t)
	mount := testenv.NewKVMount(t)
	dbURL := testenv.DatabaseURL(t)
	runtimeURL := testenv.RuntimeURL(t, dbURL)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))
	env := append([]string{"KEYBROKER_PROVIDER_OPENAI_BASE_URL=" + stub.URL, "KEYBROKER_PROVIDER_OPENAI_ADMIN_BASE_URL=" + stub.URL,
		"DATABASE_URL=" + runtimeURL, "VAULT_ADDR=" + vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + vaultToken,
		"KEYBROKER_KV_MOUNT=" + mount, "KEYBROKER_FINGERPRINT_PEPPER=cli-test-pepper-0123456789"}, kbtest.KeysEnv("all")...)
	addr, logs := startServe(t, env)
	db := append([]string{"DATABASE_URL=" + dbURL}, kbtest.KeysEnv("all")...)
	token, _ := run(t, db, "", false, "token", "create", "--role", "admin", "--workspace", "ws1", "--ttl", "1h")
	api := []string{"KEYBROKER_ADDR=http://" + addr, "KEYBROKER_TOKEN=" + strings.TrimSpace(token)}

	adminKey := "sk-admin-cli-" + testenv.RandomID(t) + testenv.RandomID(t)
	stub.AddAdminKey(adminKey, "org", "proj_cli")
	oldKey := "sk-proj-cli-" + testenv.RandomID(t) + testenv.RandomID(t)
	oldAccount := stub.AddServiceAccount("proj_cli", "original", oldKey)
	var said []string
	do := func(stdin string, wantFail bool, args ...string) string {
		t.Helper()
		out, msg := run(t, api, stdin, wantFail, args...)
		said = append(said, out, msg)
		return out + msg
	}
	if out := do(adminKey+"\n", false, "keys", "add", "--workspace", "ws1", "--provider", "openai-admin", "--key", "admin",
		"--field", "projectId=proj_cli", "--secret-stdin", "adminKey"); !strings.Contains(out, "added workspace ws1/openai-admin/admin") {
		t.Fatalf("adding the admin credential said %q", out)
	}
	do(oldKey+"\n", false, "keys", "add", "--workspace", "ws1", "--provider", "openai", "--key", "primary", "--priority", "3",
		"--expires-at", "2026-12-20T00:00:00Z", "--provider-key-id", oldAccount)
	if out := do("", false, "keys", "list", "--workspace", "ws1", "--provider", "openai"); !strings.Contains(out, "EXPIRES") ||
		!strings.Contains(out, "2026-12-20T00:00:00Z") {
		t.Fatalf("keys list printed %q", out)
	}
	do("", false, "keys", "update", "--workspace", "ws1", "--provider", "openai", "--key", "primary", "--expires-at", "")
	if out := do("", true, "keys", "rotate", "--workspace", "ws1", "--provider", "mistral", "--key", "none", "--at-provider"); !strings.Contains(out, "404") &&
		!strings.Contains(out, "400") {
		t.Fatalf("rotating a key that is not there said %q", out)
	}
	out := do("", false, "keys", "rotate", "--workspace", "ws1", "--provider", "openai", "--key", "primary", "--at-provider", "--grace", "10m")
	if !strings.Contains(out, "rotated workspace ws1/openai/primary at the provider: primary-r") || !strings.Contains(out, "deleted at the provider after") {
		t.Fatalf("keys rotate --at-provider said %q", out)
	}
	var rots []client.Rotation
	if err := json.Unmarshal([]byte(do("", false, "keys", "rotations", "--workspace", "ws1", "--provider", "openai", "--key", "primary", "--json")), &rots); err != nil ||
		len(rots) != 1 || rots[0].Step != "grace" || rots[0].GraceSeconds != 600 {
		t.Fatalf("keys rotations: %+v %v", rots, err)
	}
	if out := do("", false, "keys", "usage", "--workspace", "ws1", "--provider", "openai", "--key", "primary"); !strings.Contains(out, "VERSION") {
		t.Fatalf("keys usage printed %q", out)
	}
	if out := do("", false, "keys", "lifecycle", "--workspace", "ws1", "--rotate-after", "90d"); !strings.Contains(out, "after 90d") {
		t.Fatalf("keys lifecycle --rotate-after said %q", out)
	}
	if out := do("", true, "keys", "lifecycle", "--workspace", "ws1", "--rotate-after", "soon"); !strings.Contains(out, "400") {
		t.Fatalf("a bad rotateAfter said %q", out)
	}
	newKey := rots[0].NewKeyID
	out = do("", false, "keys", "delete", "--workspace", "ws1", "--provider", "openai", "--key", newKey, "--revoke-at-provider")
	if !strings.Contains(out, "at the provider: "+rots[0].NewProviderKeyID+" deleted") {
		t.Fatalf("keys delete --revoke-at-provider said %q", out)
	}
	if accounts := stub.ServiceAccounts("proj_cli"); len(accounts) != 1 || accounts[0].ID != oldAccount {
		t.Fatalf("the project holds %+v", accounts)
	}
	secrets := append([]string{adminKey, oldKey}, stub.Keys()...)
	for _, s := range secrets {
		for _, o := range said {
			if strings.Contains(o, s) {
				t.Fatalf("the CLI printed a key: %q", o)
			}
		}
		if strings.Contains(logs.String(), s) {
			t.Fatal("the server logged a key")
		}
	}
	testenv.AssertDumpLacks(t, dbURL, secrets)
}

// TestRotationSurvivesAKilledServe kills a real `keybroker serve` (SIGKILL)
// in the middle of a rotation's provider call — the stand-in takes the
// call (an account created or deleted there) and never answers while the
// process lives — at create, at verify, and at the deletion of the old key
// after the grace period; then starts another `keybroker serve` on the
// same Vault and PostgreSQL, whose lifecycle runner resumes the rotation.
// Each ends done, with exactly one service account at the provider: the
// one keybroker serves.
func TestRotationSurvivesAKilledServe(t *testing.T) {
	stub := cloudstub.NewOpenAI(t)
	vaultAddr, vaultToken := testenv.Vault(t)
	mount := testenv.NewKVMount(t)
	dbURL := testenv.DatabaseURL(t)
	runtimeURL := testenv.RuntimeURL(t, dbURL)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))
	env := append([]string{"KEYBROKER_PROVIDER_OPENAI_BASE_URL=" + stub.URL, "KEYBROKER_PROVIDER_OPENAI_ADMIN_BASE_URL=" + stub.URL,
		"DATABASE_URL=" + runtimeURL, "VAULT_ADDR=" + vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + vaultToken,
		"KEYBROKER_KV_MOUNT=" + mount, "KEYBROKER_FINGERPRINT_PEPPER=cli-test-pepper-0123456789",
		"KEYBROKER_ROTATION_CLAIM=1s", "KEYBROKER_LIFECYCLE_INTERVAL=300ms"}, kbtest.KeysEnv("all")...)
	db := append([]string{"DATABASE_URL=" + dbURL}, kbtest.KeysEnv("all")...)
	token, _ := run(t, db, "", false, "token", "create", "--role", "operator", "--ttl", "1h")
	adminKey := "sk-admin-kill-" + testenv.RandomID(t) + testenv.RandomID(t)
	var secrets []string
	for i, tc := range []struct{ point, method, path string }{
		{"create", "POST", "/service_accounts"},
		{"verify", "GET", "/v1/models"},
		{"delete_old", "DELETE", "/service_accounts/"},
	} {
		t.Run(tc.point, func(t *testing.T) {
			ctx := context.Background()
			ws, project := fmt.Sprintf("ws-kill-%d", i), fmt.Sprintf("proj_kill%d", i)
			stub.AddAdminKey(adminKey, "org", project)
			oldKey := "sk-proj-kill-" + testenv.RandomID(t) + testenv.RandomID(t)
			oldAccount := stub.AddServiceAccount(project, "original", oldKey)
			secrets = append(secrets, oldKey)
			addrA, _, procA := startServeProcess(t, env)
			a := apiClient(t, addrA, token)
			ref := client.KeyRef{Scope: client.Workspace(ws), Provider: "openai", KeyID: "primary"}
			if _, err := a.AddKey(ctx, client.Workspace(ws), "openai-admin", client.AddKeyRequest{KeyID: "admin",
				Credential: map[string]any{"adminKey": adminKey, "projectId": project}}); err != nil {
				t.Fatal(err)
			}
			prio := 4
			if _, err := a.AddKey(ctx, client.Workspace(ws), "openai", client.AddKeyRequest{KeyID: "primary", APIKey: oldKey, Priority: &prio,
				ProviderKeyID: oldAccount}); err != nil {
				t.Fatal(err)
			}
			path := tc.path
			if strings.HasSuffix(path, "service_accounts") || strings.HasSuffix(path, "service_accounts/") {
				path = "/v1/organization/projects/" + project + path
			}
			held := stub.Hold(tc.method, path)
			grace := time.Second
			rotated := make(chan error, 1)
			go func() { _, err := a.RotateKey(ctx, ref, &grace); rotated <- err }()
			select {
			case <-held:
			case <-time.After(60 * time.Second):
				t.Fatalf("no %s %s reached the stand-in", tc.method, path)
			}
			if err := procA.Kill(); err != nil {
				t.Fatal(err)
			}
			_, _ = procA.Wait()
			stub.Release()
			if err := <-rotated; tc.point != "delete_old" && err == nil {
				t.Fatal("the rotation answered although its server was killed")
			}
			addrB, _ := startServe(t, env)
			b := apiClient(t, addrB, token)
			var rot client.Rotation
			deadline := time.Now().Add(90 * time.Second)
			for {
				rots, err := b.Rotations(ctx, ref)
				if err == nil && len(rots) == 1 && rots[0].State != "running" {
					rot = rots[0]
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the rotation was not resumed: %+v %v", rots, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			accounts := stub.ServiceAccounts(project)
			if rot.State != "done" || len(accounts) != 1 || accounts[0].ID != rot.NewProviderKeyID {
				t.Fatalf("after the restart: rotation %+v; the project holds %+v", rot, accounts)
			}
			m, err := b.Key(ctx, client.KeyRef{Scope: ref.Scope, Provider: "openai", KeyID: rot.NewKeyID})
			if err != nil || m.Priority != 4 || m.State != "active" {
				t.Fatalf("the new key %+v %v", m, err)
			}
			if _, err := b.Key(ctx, ref); err == nil {
				t.Fatal("the old key is still in the pool")
			}
		})
	}
	testenv.AssertDumpLacks(t, dbURL, append(append(secrets, adminKey), stub.Keys()...))
}

// apiClient is a client of the server at addr holding token.
func apiClient(t *testing.T, addr, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Address: "http://" + addr, Token: strings.TrimSpace(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
