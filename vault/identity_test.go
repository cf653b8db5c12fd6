package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/internal/vaulttest"
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
		"write policy keybroker-hosted-writer", "enable the AppRole auth method", "create AppRole role keybroker-writer", "create AppRole role keybroker-reader"} {
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

func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{})
	writer, reader, root := ids.Writer.KV(ids.Mount), ids.Reader.KV(ids.Mount), ids.Root.KV(ids.Mount)
	path := "workspaces/ws1/providers/openai"

	// The writer writes, rotates, reads metadata, lists, deletes, destroys.
	if _, err := writer.Put(ctx, path, "sk-writer-wrote-this-000000", 0); err != nil {
		t.Fatalf("writer put: %v", err)
	}
	if _, err := writer.Metadata(ctx, path); err != nil {
		t.Fatalf("writer metadata: %v", err)
	}
	if names, err := writer.List(ctx, "workspaces/ws1/providers/"); err != nil || len(names) != 1 {
		t.Fatalf("writer list: %v %v", names, err)
	}
	// ... but Vault itself refuses to give it a key.
	if _, err := writer.Get(ctx, path); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("writer read of data/: %v, want 403", err)
	}
	if _, err := writer.GetVersion(ctx, path, 1); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("writer read of a version: %v, want 403", err)
	}

	// The reader reads, and does nothing else.
	if s, err := reader.Get(ctx, path); err != nil || s.Value != "sk-writer-wrote-this-000000" {
		t.Fatalf("reader get: %v", err)
	}
	if _, err := root.Put(ctx, "hosted/providers/openai", "sk-hosted-000000000000", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Get(ctx, "hosted/providers/openai"); err != nil {
		t.Fatalf("reader get hosted: %v", err)
	}
	for what, err := range map[string]error{
		"put":      func() error { _, err := reader.Put(ctx, path, "sk-reader-tries-000000", 1); return err }(),
		"delete":   reader.DeleteVersion(ctx, path, 1),
		"destroy":  reader.Destroy(ctx, path),
		"metadata": func() error { _, err := reader.Metadata(ctx, path); return err }(),
		"list":     func() error { _, err := reader.List(ctx, "workspaces/ws1/providers/"); return err }(),
		"put hosted": func() error {
			_, err := writer.Put(ctx, "hosted/providers/openai", "sk-x-0000000000000", 1)
			return err
		}(),
		"extra segment":  func() error { _, err := writer.Put(ctx, path+"/extra", "sk-x-0000000000000", 0); return err }(),
		"missing one":    func() error { _, err := writer.Put(ctx, "workspaces/ws1/openai", "sk-x-0000000000000", 0); return err }(),
		"reader extra":   func() error { _, err := reader.Get(ctx, "hosted/providers/openai"+"/x"); return err }(),
		"reader missing": func() error { _, err := reader.Get(ctx, "workspaces/ws1/openai"); return err }(),
	} {
		if !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s: %v, want 403", what, err)
		}
	}
	// Neither reaches sys/ or another mount.
	other := testenv.NewKVMount(t)
	if _, err := root.Put(ctx, "x", "v", 0); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*vault.Client{"writer": ids.Writer, "reader": ids.Reader} {
		if _, err := c.KV(other).Get(ctx, "workspaces/ws1/providers/openai"); !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s read another mount: %v", name, err)
		}
		if _, err := c.KV(other).Put(ctx, "workspaces/ws1/providers/openai", "sk-x-0000000000000", 0); !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s wrote another mount: %v", name, err)
		}
		if err := c.CheckSys(ctx); !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s read sys/: %v", name, err)
		}
	}
	// The writer deletes and destroys.
	if err := writer.DeleteVersion(ctx, path, 1); err != nil {
		t.Fatalf("writer delete: %v", err)
	}
	if err := writer.Destroy(ctx, path); err != nil {
		t.Fatalf("writer destroy: %v", err)
	}
}

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
	if _, err := c.KV(ids.Mount).Put(ctx, "workspaces/ws1/providers/openai", "sk-wrapped-login-0000000", 0); err != nil {
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
