package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// startServe runs `keybroker serve` with env and waits until it is ready.
func startServe(t *testing.T, env []string) (addr string, logs *testenv.SyncBuffer) {
	t.Helper()
	addr, logs, _ = startServeProcess(t, env)
	return addr, logs
}

// startServeProcess is startServe that also returns the process.
func startServeProcess(t *testing.T, env []string) (addr string, logs *testenv.SyncBuffer, proc *os.Process) {
	t.Helper()
	addr = freeAddr(t)
	serve := keybroker("serve")
	serve.Env = append(serve.Env, append(env, "KEYBROKER_LISTEN_ADDR="+addr)...)
	logs = &testenv.SyncBuffer{}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		_, _ = serve.Process.Wait()
	})
	testenv.WaitReady(t, "http://"+addr+"/readyz", 30*time.Second, logs.String)
	return addr, logs, serve.Process
}

func writeSecret(t *testing.T, dir, name, value string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// approleGround is what a keybroker process needs on the test ground:
// bootstrapped Vault identities, a migrated database, an operator token,
// and the environment that points `keybroker serve` at them with AppRole.
type approleGround struct {
	// secretIDs counts the secret id files written (modeEnv).
	secretIDs atomic.Int32
	ids       *vaulttest.Identities
	st        *store.Store
	opToken   string
	// resolverToken resolves (an operator token cannot).
	resolverToken string
	env           []string
	dir           string
	// dbURL is the owner's address of the database (for pg_dump).
	dbURL string
}

func newApproleGround(t *testing.T, tune func(*vault.BootstrapConfig)) *approleGround {
	t.Helper()
	const pepper = "approle-test-pepper-0123456789"
	kg := kbtest.NewGround(t, kbtest.Options{Pepper: pepper, Vault: vaulttest.Options{Tune: tune}})
	g := &approleGround{ids: kg.Identities, st: kg.Store, opToken: kg.OperatorToken, resolverToken: kg.ResolverToken, dir: t.TempDir(), dbURL: kg.DBURL}
	vaultAddr, _ := testenv.Vault(t)
	g.env = []string{"DATABASE_URL=" + testenv.RuntimeURL(t, kg.DBURL), "VAULT_ADDR=" + vaultAddr, "KEYBROKER_KV_MOUNT=" + g.ids.Mount,
		"KEYBROKER_VAULT_AUTH=approle", "KEYBROKER_APPROLE_MOUNT=" + g.ids.AppRoleMount,
		"KEYBROKER_FINGERPRINT_PEPPER=" + pepper}
	return g
}

// mintResolver mints a resolver token the only way one is made: the
// owner's `keybroker token create --role resolver` (the database owner's
// URL and the signing keys), never over the API.
func (g *approleGround) mintResolver(t *testing.T, description string, workspaces ...string) client.CreatedToken {
	t.Helper()
	args := []string{"token", "create", "--role", "resolver", "--description", description}
	for _, ws := range workspaces {
		args = append(args, "--workspace", ws)
	}
	token, details := run(t, append([]string{"DATABASE_URL=" + g.dbURL}, kbtest.KeysEnv("all")...), "", false, args...)
	id := regexp.MustCompile(`tok_[0-9a-f]{16}`).FindString(details)
	if id == "" {
		t.Fatalf("token create said %q", details)
	}
	return client.CreatedToken{Token: strings.TrimSpace(token), TokenInfo: client.TokenInfo{ID: id, Role: "resolver"}}
}

// modeEnv is the environment of a `keybroker serve` in mode on the ground:
// the ground's settings, the mode, and a fresh AppRole secret id for each
// identity the mode holds (admin the writer; resolver and proxy the
// reader; all both), then extra.
func (g *approleGround) modeEnv(t *testing.T, mode string, extra ...string) []string {
	t.Helper()
	env := append(append(slices.Clone(g.env), "KEYBROKER_MODE="+mode), kbtest.KeysEnv(mode)...)
	if mode == "resolver" || mode == "proxy" {
		// The execution side connects as its own, narrower database role.
		env = append(env, "DATABASE_URL="+testenv.ResolverURL(t, g.dbURL))
	}
	identity := func(id, role string) {
		file := writeSecret(t, g.dir, fmt.Sprintf("%s-secret-id-%d", strings.ToLower(id), g.secretIDs.Add(1)), vaulttest.SecretID(t, g.ids.AppRoleMount, role))
		env = append(env, "KEYBROKER_"+id+"_ROLE_ID="+g.ids.Result.RoleIDs[role], "KEYBROKER_"+id+"_SECRET_ID_FILE="+file)
	}
	if mode == "admin" || mode == "all" {
		identity("WRITER", g.ids.WriterRole)
	}
	if mode != "admin" {
		identity("READER", g.ids.ReaderRole)
	}
	return append(env, extra...)
}

// TestModesHoldOnlyTheirVaultIdentity runs an admin replica on the writer
// identity alone (with a wrapped secret id) and a resolver replica on the
// reader identity alone, as production would.
func TestModesHoldOnlyTheirVaultIdentity(t *testing.T) {
	ctx := context.Background()
	g := newApproleGround(t, func(c *vault.BootstrapConfig) { c.WrapTTL = 10 * time.Minute })
	ids, opToken, dir, common := g.ids, g.opToken, g.dir, g.env

	adminAddr, _ := startServe(t, append(append(common, kbtest.KeysEnv("admin")...), "KEYBROKER_MODE=admin", "KEYBROKER_APPROLE_SECRET_ID_WRAPPED=true",
		"KEYBROKER_WRITER_ROLE_NAME="+ids.WriterRole, "KEYBROKER_WRITER_ROLE_ID="+ids.Result.RoleIDs[ids.WriterRole],
		"KEYBROKER_WRITER_SECRET_ID_FILE="+writeSecret(t, dir, "writer", ids.Result.WrappedSecretIDs[ids.WriterRole])))
	resolverAddr, _ := startServe(t, append(append(common, kbtest.KeysEnv("resolver")...), "KEYBROKER_MODE=resolver",
		"DATABASE_URL="+testenv.ResolverURL(t, g.dbURL),
		"KEYBROKER_READER_ROLE_ID="+ids.Result.RoleIDs[ids.ReaderRole],
		"KEYBROKER_READER_SECRET_ID_FILE="+writeSecret(t, dir, "reader", vaulttest.SecretID(t, ids.AppRoleMount, ids.ReaderRole))))

	admin, _ := client.New(client.Config{Address: "http://" + adminAddr, Token: opToken})
	resolver, _ := client.New(client.Config{Address: "http://" + resolverAddr, Token: g.resolverToken})
	key := "sk-proj-modes-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, key, 0); err != nil {
		t.Fatalf("set on the admin replica: %v", err)
	}
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, key+"x", 0); err != nil {
		t.Fatalf("rotate on the admin replica: %v", err)
	}
	// The resolver replica learns of the writes by NOTIFY, on its own
	// time: wait until it serves the rotated key (a 404 or the first
	// version meanwhile; any other error fails at once).
	var r client.ResolveResponse
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		r, err = resolver.Resolve(ctx, "ws1", "openai")
		if err == nil && r.APIKey == key+"x" || time.Now().After(deadline) || err != nil && !client.IsStatus(err, http.StatusNotFound) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || r.APIKey != key+"x" || !r.IsBYOK {
		t.Fatalf("resolve on the resolver replica: %v %v", r, err)
	}
	if _, err := admin.Resolve(ctx, "ws1", "openai"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("resolve on the admin replica: %v", err)
	}
	if _, err := resolver.ListKeys(ctx, "ws1"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("key list on the resolver replica: %v", err)
	}
	// Rollback reads the old key: the writer identity cannot.
	_, err = admin.RollbackKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, 1)
	var apiErr *client.Error
	if !client.IsStatus(err, http.StatusNotImplemented) || !errors.As(err, &apiErr) || !strings.Contains(apiErr.Message, "--mode=all") {
		t.Fatalf("rollback on the admin replica: %v", err)
	}
}

// crashAfterVaultWrite is a proxy in front of Vault that, once armed, lets
// Vault perform the first write of a key (a KV v2 data write) and then kills
// the keybroker process with SIGKILL before it can hear Vault's answer: the
// crash between the Vault write and the metadata commit, with no hook in
// keybroker itself.
type crashAfterVaultWrite struct {
	URL   string
	armed atomic.Pointer[os.Process]
}

func newCrashAfterVaultWrite(t *testing.T, vaultAddr string) *crashAfterVaultWrite {
	t.Helper()
	target, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := &crashAfterVaultWrite{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if (r.Method == http.MethodPut || r.Method == http.MethodPost) && strings.Contains(r.URL.Path, "/data/") && resp.StatusCode == http.StatusOK {
			if p := c.armed.Swap(nil); p != nil {
				_ = p.Kill()
				_, _ = p.Wait()
			}
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// TestCrashBetweenVaultWriteAndMetadataIsRepaired kills keybroker (-9)
// right after Vault accepted a key and before PostgreSQL recorded it; then
// `keybroker reconcile` repairs the row.
func TestCrashBetweenVaultWriteAndMetadataIsRepaired(t *testing.T) {
	ctx := context.Background()
	g := newApproleGround(t, nil)
	ids, st, opToken := g.ids, g.st, g.opToken
	env := g.modeEnv(t, "all")
	vaultAddr, _ := testenv.Vault(t)
	proxy := newCrashAfterVaultWrite(t, vaultAddr)
	addr, _, proc := startServeProcess(t, append(env, "VAULT_ADDR="+proxy.URL))
	proxy.armed.Store(proc)
	api, _ := client.New(client.Config{Address: "http://" + addr, Token: opToken})
	key := "sk-proj-crash-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := api.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, key, 0); err == nil {
		t.Fatal("the write succeeded although keybroker was killed during it")
	}
	cur, err := ids.Root.KV(ids.Mount).Get(ctx, broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath())
	if err != nil || cur.Data["api_key"] != key {
		t.Fatalf("Vault after the crash: %v", err)
	}
	pending, err := st.ListPending(ctx, 0)
	if err != nil || len(pending) != 1 {
		t.Fatalf("rows pending after the crash: %d %v", len(pending), err)
	}

	out, _ := run(t, env, "", false, "reconcile")
	if !strings.Contains(out, "completed 1,") {
		t.Fatalf("reconcile printed %q", out)
	}
	rec, err := st.GetKey(ctx, broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID))
	if err != nil || rec.Version != cur.Version || rec.WriteStatus != broker.WriteComplete || rec.MaskedKey != providers.MaskKey(key) {
		t.Fatalf("after reconcile: %+v %v", rec, err)
	}
}
