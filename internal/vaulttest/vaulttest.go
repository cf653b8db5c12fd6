// Package vaulttest gives tests keybroker's own Vault identities: it runs
// `keybroker vault bootstrap` (vault.Client.Bootstrap) on the shared test
// Vault with names of the test's own, and logs in as the writer and the
// reader with AppRole, as production does. Only the test's "operator" side
// keeps the root token.
package vaulttest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/vault"
)

// Identities are a bootstrapped mount and logged-in writer and reader
// clients.
type Identities struct {
	// Mount is the KV v2 mount, AppRoleMount the AppRole auth mount.
	Mount, AppRoleMount string
	// WriterRole and ReaderRole are the role (and policy) names.
	WriterRole, ReaderRole string
	// Writer and Reader are logged in with AppRole; Root holds the root
	// token (the operator).
	Writer, Reader, Root *vault.Client
	// Result is what bootstrap reported.
	Result vault.BootstrapResult
}

// Options tune Bootstrap.
type Options struct {
	// Logger of the writer and reader clients.
	Logger *slog.Logger
	// ReaderTransport, when set, carries the reader's HTTP requests (to
	// count Vault reads).
	ReaderTransport http.RoundTripper
	// Tune adjusts the bootstrap configuration.
	Tune func(*vault.BootstrapConfig)
	// Addr and RootToken name a Vault of the test's own. Default: the
	// shared test Vault.
	Addr, RootToken string
}

// Bootstrap sets up a fresh mount, policies and AppRole roles on the shared
// Vault and logs in as both identities. Everything is removed when the test
// ends.
func Bootstrap(t testing.TB, opts Options) *Identities {
	t.Helper()
	ctx := context.Background()
	addr, token := opts.Addr, opts.RootToken
	if addr == "" {
		addr, token = testenv.Vault(t)
	}
	root, err := vault.New(vault.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	id := testenv.RandomID(t)
	cfg := vault.BootstrapConfig{
		KVMount: "byok-" + id, AppRoleMount: "approle-" + id,
		WriterRole: "keybroker-writer-" + id, ReaderRole: "keybroker-reader-" + id,
	}
	if opts.Tune != nil {
		opts.Tune(&cfg)
	}
	res, err := root.Bootstrap(ctx, cfg)
	if err != nil {
		t.Fatalf("vaulttest: bootstrap: %v", err)
	}
	api := testenv.NewVaultClient(t, addr, token)
	t.Cleanup(func() {
		ctx := context.Background()
		_ = api.Sys().DisableAuthWithContext(ctx, cfg.AppRoleMount)
		_ = api.Sys().UnmountWithContext(ctx, cfg.KVMount)
		for _, p := range []string{cfg.WriterRole, cfg.ReaderRole} {
			_ = api.Sys().DeletePolicyWithContext(ctx, p)
		}
	})
	ids := &Identities{Mount: cfg.KVMount, AppRoleMount: cfg.AppRoleMount, WriterRole: cfg.WriterRole,
		ReaderRole: cfg.ReaderRole, Root: root, Result: res}
	ids.Writer = loginAt(t, token, vault.Config{Address: addr, Logger: opts.Logger}, cfg.AppRoleMount, cfg.WriterRole, res.RoleIDs[cfg.WriterRole])
	ids.Reader = loginAt(t, token, vault.Config{Address: addr, Logger: opts.Logger, Transport: opts.ReaderTransport}, cfg.AppRoleMount, cfg.ReaderRole, res.RoleIDs[cfg.ReaderRole])
	return ids
}

// SecretID issues a plain secret id for role with the root token.
func SecretID(t testing.TB, appRoleMount, role string) string {
	t.Helper()
	addr, token := testenv.Vault(t)
	return secretIDAt(t, addr, token, appRoleMount, role)
}

func secretIDAt(t testing.TB, addr, token, appRoleMount, role string) string {
	t.Helper()
	s, err := testenv.NewVaultClient(t, addr, token).Logical().WriteWithContext(context.Background(),
		fmt.Sprintf("auth/%s/role/%s/secret-id", appRoleMount, role), nil)
	if err != nil {
		t.Fatalf("vaulttest: secret id for %s: %v", role, err)
	}
	return s.Data["secret_id"].(string)
}

// Login logs in as role with AppRole and a fresh secret id (cfg says where
// Vault is), starts the token's upkeep, and waits for the first login.
func Login(t testing.TB, cfg vault.Config, appRoleMount, role, roleID string) *vault.Client {
	t.Helper()
	_, token := testenv.Vault(t)
	return loginAt(t, token, cfg, appRoleMount, role, roleID)
}

func loginAt(t testing.TB, rootToken string, cfg vault.Config, appRoleMount, role, roleID string) *vault.Client {
	t.Helper()
	method, err := vault.AppRole(vault.AppRoleConfig{MountPath: appRoleMount, RoleID: roleID, SecretID: secretIDAt(t, cfg.Address, rootToken, appRoleMount, role)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = method
	return Start(t, cfg)
}

// Start builds a client from cfg, starts its token upkeep until the test
// ends, and waits for the first login.
func Start(t testing.TB, cfg vault.Config) *vault.Client {
	t.Helper()
	c, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(ctx)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := c.WaitForToken(wctx); err != nil {
		t.Fatalf("vaulttest: first login: %v", err)
	}
	return c
}
