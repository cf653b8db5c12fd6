package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/vault"
)

func TestWrappedSecretIDIsCheckedBeforeUnwrap(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{Tune: func(c *vault.BootstrapConfig) { c.WrapTTL = 5 * time.Minute }})
	addr, _ := testenv.Vault(t)
	wrapped := ids.Result.WrappedSecretIDs[ids.WriterRole]
	if !strings.HasPrefix(wrapped, "hvs.") && len(wrapped) < 20 {
		t.Fatalf("wrapped secret id: %q", wrapped)
	}
	method, err := vault.AppRole(vault.AppRoleConfig{MountPath: ids.AppRoleMount, RoleID: ids.Result.RoleIDs[ids.WriterRole],
		RoleName: ids.WriterRole, SecretID: wrapped, Wrapped: true})
	if err != nil {
		t.Fatal(err)
	}
	c := vaulttest.Start(t, vault.Config{Address: addr, Auth: method})
	if _, err := c.KV(ids.Mount).Put(ctx, "workspaces/ws1/providers/openai/keys/default", map[string]string{"api_key": "sk-wrapped-login-0000000"}, 0); err != nil {
		t.Fatalf("put after a wrapped login: %v", err)
	}

	// The reader's wrapped secret id offered as the writer's: refused, and
	// not unwrapped (it stays usable for its rightful owner).
	readerWrapped := ids.Result.WrappedSecretIDs[ids.ReaderRole]
	bad, err := vault.AppRole(vault.AppRoleConfig{MountPath: ids.AppRoleMount, RoleID: ids.Result.RoleIDs[ids.WriterRole],
		RoleName: ids.WriterRole, SecretID: readerWrapped, Wrapped: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Login(ctx, testenv.NewVaultClient(t, addr, "")); !errors.Is(err, vault.ErrWrappingTokenRefused) {
		t.Fatalf("wrong wrapping token: %v", err)
	}
	look, err := testenv.NewVaultClient(t, addr, "").Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": readerWrapped})
	if err != nil || look == nil {
		t.Fatalf("the refused wrapping token was consumed: %v", err)
	}
	// A wrapping token of arbitrary data is refused the same way.
	addr2, rootToken := testenv.Vault(t)
	rc := testenv.NewVaultClient(t, addr2, rootToken)
	rc.SetWrappingLookupFunc(func(string, string) string { return "5m" })
	w, err := rc.Logical().WriteWithContext(ctx, "sys/wrapping/wrap", map[string]any{"secret_id": "not-from-approle"})
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := vault.AppRole(vault.AppRoleConfig{MountPath: ids.AppRoleMount, RoleID: ids.Result.RoleIDs[ids.WriterRole],
		RoleName: ids.WriterRole, SecretID: w.WrapInfo.Token, Wrapped: true})
	if _, err := forged.Login(ctx, testenv.NewVaultClient(t, addr, "")); !errors.Is(err, vault.ErrWrappingTokenRefused) {
		t.Fatalf("wrapped arbitrary data: %v", err)
	}
}
