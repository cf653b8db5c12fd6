package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// run runs keybroker with env added, stdin as input, and returns stdout;
// it fails the test when the command fails and wantFail is false.
func run(t *testing.T, env []string, stdin string, wantFail bool, args ...string) (string, string) {
	t.Helper()
	cmd := keybroker(args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantFail {
		t.Fatalf("keybroker %s: err=%v, stdout=%s stderr=%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

func TestCLIRoundTripAgainstARunningServer(t *testing.T) {
	vaultAddr, vaultToken := testenv.Vault(t)
	mount := testenv.NewKVMount(t)
	dbURL := testenv.DatabaseURL(t)
	runtimeURL := testenv.RuntimeURL(t, dbURL)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))

	// OpenAI, as keybroker's key checks reach it: a stand-in that accepts
	// one key (acceptedKey, set below) with Authorization: Bearer.
	var acceptedKey atomic.Value
	acceptedKey.Store("")
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" || r.Header.Get("Authorization") != "Bearer "+acceptedKey.Load().(string) {
			http.Error(w, "invalid key", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"data":[]}`)
	}))
	t.Cleanup(openai.Close)

	addr, metricsAddr := freeAddr(t), freeAddr(t)
	serve := keybroker("serve")
	serve.Env = append(serve.Env, "KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL,
		"KEYBROKER_LISTEN_ADDR="+addr, "DATABASE_URL="+runtimeURL, "VAULT_ADDR="+vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN="+vaultToken,
		"KEYBROKER_KV_MOUNT="+mount, "KEYBROKER_FINGERPRINT_PEPPER=cli-test-pepper-0123456789", "KEYBROKER_METRICS_ADDR="+metricsAddr)
	serve.Env = append(serve.Env, kbtest.KeysEnv("all")...)
	var serverLog testenv.SyncBuffer
	serve.Stdout, serve.Stderr = &serverLog, &serverLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() { _ = serve.Process.Kill() })
	testenv.WaitReady(t, "http://"+addr+"/readyz", 30*time.Second, serverLog.String)

	db := append([]string{"DATABASE_URL=" + dbURL}, kbtest.KeysEnv("all")...)
	token, details := run(t, db, "", false, "token", "create", "--role", "admin", "--workspace", "ws1", "--ttl", "1h")
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, "kbt_") || strings.Count(token, "\n") != 0 || !strings.Contains(details, "tok_") {
		t.Fatalf("token create printed %q on stdout and %q on stderr", token, details)
	}
	api := []string{"KEYBROKER_ADDR=http://" + addr, "KEYBROKER_TOKEN=" + token}
	k1, k2 := "sk-proj-cli-"+testenv.RandomID(t)+testenv.RandomID(t), "sk-proj-cli-"+testenv.RandomID(t)+testenv.RandomID(t)

	_, msg := run(t, api, k1+"\n", false, "keys", "set", "--workspace", "ws1", "--provider", "openai")
	if !strings.Contains(msg, "created workspace ws1/openai/default") || strings.Contains(msg, k1) {
		t.Fatalf("keys set said %q", msg)
	}
	run(t, api, k2+"\n", false, "keys", "set", "--workspace", "ws1", "--provider", "openai", "--if-version", "1")
	_, msg = run(t, api, k2+"\n", true, "keys", "set", "--workspace", "ws1", "--provider", "openai", "--if-version", "1")
	if !strings.Contains(msg, "412") || strings.Count(msg, "keybroker:") != 1 {
		t.Fatalf("a stale --if-version said %q", msg)
	}
	out, _ := run(t, api, "", false, "keys", "versions", "--workspace", "ws1", "--provider", "openai")
	if !strings.Contains(out, "2  ") || !strings.Contains(out, "current") {
		t.Fatalf("keys versions printed %q", out)
	}
	out, _ = run(t, api, "", false, "keys", "rollback", "--workspace", "ws1", "--provider", "openai", "--version", "1", "--json")
	var meta client.KeyMetadata // one key: an object, not a one-element array
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.Version != 3 || meta.MaskedKey != k1[:6]+"..."+k1[len(k1)-4:] {
		t.Fatalf("keys rollback printed %q (%v)", out, err)
	}
	out, _ = run(t, api, "", false, "keys", "list", "--workspace", "ws1")
	if !strings.Contains(out, "openai") || !strings.Contains(out, "3") || strings.Contains(out, k1) {
		t.Fatalf("keys list printed %q", out)
	}
	out, _ = run(t, api, "", false, "keys", "get", "--workspace", "ws1", "--provider", "openai", "--json")
	if !strings.Contains(out, `"version":3`) {
		t.Fatalf("keys get printed %q", out)
	}
	_, msg = run(t, api, "", false, "keys", "delete", "--workspace", "ws1", "--provider", "openai")
	if !strings.Contains(msg, "older versions remain in Vault") || !strings.Contains(msg, "workspaces effective") {
		t.Fatalf("keys delete said %q, not what it leaves behind", msg)
	}
	out, _ = run(t, api, "", false, "keys", "list", "--workspace", "ws1", "--json")
	if strings.TrimSpace(out) != "[]" {
		t.Fatalf("keys list after delete printed %q", out)
	}
	_, msg = run(t, api, "", true, "keys", "set", "--workspace", "ws1", "--provider", "openai")
	if !strings.Contains(msg, "no key on stdin") {
		t.Fatalf("keys set without a key said %q", msg)
	}
	_, msg = run(t, api, "", true, "keys", "list", "--workspace", "ws2")
	if !strings.Contains(msg, "403") {
		t.Fatalf("another workspace said %q", msg)
	}
	out, _ = run(t, api, "", false, "workspaces", "settings", "--workspace", "ws1")
	if !strings.Contains(out, "hosted fallback  on") {
		t.Fatalf("workspaces settings printed %q", out)
	}
	out, _ = run(t, api, "", false, "workspaces", "settings", "--workspace", "ws1", "--hosted-fallback=false")
	if !strings.Contains(out, "hosted fallback  off") || !strings.Contains(out, "fail closed") {
		t.Fatalf("turning the hosted fallback off printed %q", out)
	}
	out, _ = run(t, api, "", false, "workspaces", "effective", "--workspace", "ws1")
	// ws1's key was deleted above, and the fallback is now off.
	// One line per provider, the words in one column.
	if strings.Count(out, "\n") != len(providers.DefaultRegistry().All()) || !regexp.MustCompile(`(?m)^openai {8}no key: calls fail \(hosted fallback is off\)$`).MatchString(out) {
		t.Fatalf("workspaces effective printed %q", out)
	}
	_, msg = run(t, api, "", true, "workspaces", "settings", "--workspace", "ws1", "--organization", "acme")
	if !strings.Contains(msg, "403") {
		t.Fatalf("an admin linking an organization said %q", msg)
	}

	// A pool of named keys, in an organization, by its own admin.
	orgToken, orgDetails := run(t, db, "", false, "token", "create", "--role", "admin", "--organization", "acme", "--ttl", "1h")
	if !strings.Contains(orgDetails, "organizations [acme]") {
		t.Fatalf("token create --organization said %q", orgDetails)
	}
	org := []string{"KEYBROKER_ADDR=http://" + addr, "KEYBROKER_TOKEN=" + strings.TrimSpace(orgToken)}
	k3, k4 := "sk-proj-cli-"+testenv.RandomID(t)+testenv.RandomID(t), "sk-proj-cli-"+testenv.RandomID(t)+testenv.RandomID(t)
	_, msg = run(t, org, k3+"\n", false, "keys", "add", "--organization", "acme", "--provider", "openai", "--key", "shared", "--name", "Shared key", "--priority", "10")
	if !strings.Contains(msg, "added organization acme/openai/shared") || !strings.Contains(msg, "priority 10") || strings.Contains(msg, k3) {
		t.Fatalf("keys add said %q", msg)
	}
	_, msg = run(t, org, k4+"\n", false, "keys", "add", "--organization", "acme", "--provider", "openai", "--models", "gpt-4o,gpt-4o-mini")
	if !strings.Contains(msg, "added organization acme/openai/key-") {
		t.Fatalf("keys add with a generated id said %q", msg)
	}
	acceptedKey.Store(k3)
	out, _ = run(t, org, "", false, "keys", "check", "--organization", "acme", "--provider", "openai", "--key", "shared")
	if !strings.Contains(out, "accepted (answered 200); the key is now healthy") || strings.Contains(out, k3) {
		t.Fatalf("keys check of an accepted key printed %q", out)
	}
	// The command's older name and the flag's still work for one release.
	if old, _ := run(t, org, "", false, "keys", "test", "--organization", "acme", "--provider", "openai", "--key", "shared"); old != out {
		t.Fatalf("keys test printed %q, keys check %q", old, out)
	}
	if _, msg = run(t, org, "sk-proj-cli-refused-"+testenv.RandomID(t)+"\n", true, "keys", "add", "--organization", "acme", "--provider", "openai", "--key", "refused-old", "--verify"); !strings.Contains(msg, "refused the key") {
		t.Fatalf("keys add --verify of a refused key said %q", msg)
	}
	_, msg = run(t, org, "sk-proj-cli-refused-"+testenv.RandomID(t)+"\n", true, "keys", "add", "--organization", "acme", "--provider", "openai", "--key", "refused", "--check")
	if !strings.Contains(msg, "422") || !strings.Contains(msg, "refused the key") {
		t.Fatalf("keys add --check of a refused key said %q", msg)
	}
	run(t, org, "", false, "keys", "update", "--organization", "acme", "--provider", "openai", "--key", "shared", "--state", "disabled")
	out, _ = run(t, org, "", false, "keys", "list", "--organization", "acme")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "shared") || !strings.Contains(lines[1], "disabled") ||
		!strings.Contains(lines[1], "healthy") ||
		!strings.Contains(lines[2], "gpt-4o,gpt-4o-mini") || strings.Contains(out, k3) || strings.Contains(out, k4) {
		t.Fatalf("keys list --organization printed %q", out)
	}
	_, msg = run(t, org, "", true, "keys", "update", "--organization", "acme", "--provider", "openai", "--key", "shared")
	if !strings.Contains(msg, "nothing to change") {
		t.Fatalf("keys update without a change said %q", msg)
	}
	_, msg = run(t, org, "", true, "keys", "list", "--workspace", "ws1", "--organization", "acme")
	if !strings.Contains(msg, "name one scope") {
		t.Fatalf("two scopes said %q", msg)
	}
	_, msg = run(t, org, "", true, "keys", "list", "--workspace", "ws1")
	if !strings.Contains(msg, "403") {
		t.Fatalf("an organization's admin on a workspace said %q", msg)
	}
	_, msg = run(t, api, "", true, "keys", "list", "--hosted")
	if !strings.Contains(msg, "403") || !strings.Contains(msg, "operator") {
		t.Fatalf("a workspace admin on the hosted keys said %q", msg)
	}
	run(t, org, "", false, "keys", "delete", "--organization", "acme", "--provider", "openai", "--key", "shared", "--destroy")

	// A key keybroker v1 left at the old layout is moved, versions and all.
	v1Key := "sk-proj-cli-v1-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, err := testenv.NewVaultClient(t, vaultAddr, vaultToken).KVv2(mount).Put(context.Background(), "workspaces/ws5/providers/openai",
		map[string]any{"api_key": v1Key}); err != nil {
		t.Fatal(err)
	}
	layoutEnv := []string{"DATABASE_URL=" + runtimeURL, "VAULT_ADDR=" + vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + vaultToken,
		"KEYBROKER_KV_MOUNT=" + mount, "KEYBROKER_FINGERPRINT_PEPPER=cli-test-pepper-0123456789",
		"KEYBROKER_ADMIN_TOKEN_KEYS=" + kbtest.AdminTokenKeys, "KEYBROKER_RESOLVER_KEYS=" + kbtest.ResolverKeys}
	out, _ = run(t, layoutEnv, "", false, "vault", "migrate-layout")
	if !strings.Contains(out, "moved 1, skipped 0") || !strings.Contains(out, "moved: workspace ws5/openai/default") || strings.Contains(out, v1Key) {
		t.Fatalf("vault migrate-layout printed %q", out)
	}
	if s, err := testenv.NewVaultClient(t, vaultAddr, vaultToken).KVv2(mount).Get(context.Background(), "workspaces/ws5/providers/openai/keys/default"); err != nil ||
		s.Data["api_key"] != v1Key {
		t.Fatalf("the moved key: %v", err)
	}
	out, _ = run(t, layoutEnv, "", false, "vault", "migrate-layout")
	if !strings.Contains(out, "moved 0, skipped 0") {
		t.Fatalf("a second migrate-layout printed %q", out)
	}

	out, _ = run(t, db, "", false, "token", "list")
	id := strings.Fields(strings.Split(details, "created ")[1])[0]
	id = strings.TrimSuffix(id, ":")
	if !strings.Contains(out, id) || strings.Contains(out, token) || !strings.Contains(out, "active, EXPIRES IN 0h") || !strings.Contains(out, "org:acme") {
		t.Fatalf("token list printed %q (id %s): the 1h token is active and expires soon", out, id)
	}
	// A token that never expires must be asked for by name, and is flagged.
	_, details = run(t, db, "", false, "token", "create", "--role", "resolver", "--no-expiry")
	if !strings.Contains(details, "expires never") || !strings.Contains(details, "never expires; revoke it") {
		t.Fatalf("token create --no-expiry said %q", details)
	}
	_, msg = run(t, db, "", true, "token", "create", "--role", "operator", "--ttl", "1000h")
	if !strings.Contains(msg, "at most") {
		t.Fatalf("an operator token of 1000h said %q", msg)
	}
	run(t, db, "", false, "token", "revoke", id)
	_, msg = run(t, api, "", true, "keys", "list", "--workspace", "ws1")
	if !strings.Contains(msg, "401") {
		t.Fatalf("a revoked token said %q", msg)
	}
	if out, _ = run(t, db, "", false, "token", "list"); !strings.Contains(out, "revoked") {
		t.Fatalf("token list after revoke printed %q", out)
	}

	// Metrics: the expected families, and no workspace, key or token in them.
	// They are served on the metrics listener, not the API's.
	if resp, err := http.Get("http://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the API listener: %v %v", resp, err)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`keybroker_admin_actions_total{action="key.create",outcome="success"} 3`, `keybroker_admin_actions_total{action="key.update",outcome="success"} 1`,
		`keybroker_admin_actions_total{action="key.rollback",outcome="success"} 1`,
		"keybroker_vault_request_duration_seconds_count{operation=\"kv_put\",outcome=\"ok\"}",
		"keybroker_postgres_pool_connections", "keybroker_vault_token_ttl_seconds", "keybroker_cache_stale_served_total"} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{k1, k2, k3, k4, token, "ws1", "ws2", "acme"} {
		if strings.Contains(string(metricsText), secret) {
			t.Errorf("/metrics contains %q...", secret[:3])
		}
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, serverLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	logs := serverLog.String()
	for _, secret := range []string{k1, k2, token, vaultToken} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the server log contains a secret (%s...)", secret[:6])
		}
	}
	if !strings.Contains(logs, `"msg":"http request"`) {
		t.Fatalf("no access log in %s", logs)
	}
}

func TestServeRefusesMissingConfiguration(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"DATABASE_URL="}, "DATABASE_URL"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=short"}, "KEYBROKER_FINGERPRINT_PEPPER"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_MODE=both"}, "--mode"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=",
			"KEYBROKER_ADMIN_TOKEN_KEYS=" + kbtest.AdminTokenKeys, "KEYBROKER_RESOLVER_KEYS=" + kbtest.ResolverKeys}, "VAULT_TOKEN"},
		// Each mode its signing keys, and never the resolver keys in an admin replica.
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_VAULT_AUTH=token"}, "KEYBROKER_ADMIN_TOKEN_KEYS"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_MODE=resolver", "KEYBROKER_VAULT_AUTH=token",
			"KEYBROKER_ADMIN_TOKEN_KEYS=" + kbtest.AdminTokenKeys}, "KEYBROKER_RESOLVER_KEYS"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_MODE=resolver", "KEYBROKER_VAULT_AUTH=token",
			"KEYBROKER_RESOLVER_KEYS=" + kbtest.ResolverKeys}, "KEYBROKER_ADMIN_TOKEN_KEYS"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_MODE=admin", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_VAULT_AUTH=token",
			"KEYBROKER_ADMIN_TOKEN_KEYS=" + kbtest.AdminTokenKeys, "KEYBROKER_RESOLVER_KEYS=" + kbtest.ResolverKeys}, "--mode=admin must not hold KEYBROKER_RESOLVER_KEYS"},
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_MODE=resolver", "KEYBROKER_VAULT_AUTH=token", "KEYBROKER_RESOLVER_KEYS=k1:short",
			"KEYBROKER_ADMIN_TOKEN_KEYS=" + kbtest.AdminTokenKeys}, "at least 32 bytes"},
		// No default Vault auth: the static dev token must be named.
		{[]string{"DATABASE_URL=postgres://x@127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_VAULT_AUTH="}, "no --vault-auth"},
	} {
		env := append([]string{"KEYBROKER_LISTEN_ADDR=" + freeAddr(t)}, tc.env...)
		_, msg := run(t, env, "", true, "serve")
		if !strings.Contains(msg, tc.want) {
			t.Errorf("serve with %v said %q, want it to name %s", tc.env, msg, tc.want)
		}
	}
}
