package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/vault"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// rootKV returns the KV engine at a fresh mount, through a client holding
// the shared Vault's root token.
func rootKV(t *testing.T) *vault.KV {
	t.Helper()
	addr, token := testenv.Vault(t)
	c, err := vault.New(vault.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c.KV(testenv.NewKVMount(t))
}

func TestKVPutGetWithCheckAndSet(t *testing.T) {
	ctx := context.Background()
	kv := rootKV(t)
	path := "workspaces/ws1/providers/openai/keys/default"

	if _, err := kv.Get(ctx, path); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("get before any write: %v, want ErrNotFound", err)
	}
	if _, err := kv.Metadata(ctx, path); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("metadata before any write: %v, want ErrNotFound", err)
	}
	v1, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-first-value-0000000"}, 0)
	if err != nil || v1 != 1 {
		t.Fatalf("create: version %d, %v", v1, err)
	}
	if _, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-other"}, 0); !errors.Is(err, vault.ErrCASMismatch) {
		t.Fatalf("create over an existing secret: %v, want ErrCASMismatch", err)
	}
	v2, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-second-value-000000"}, 1)
	if err != nil || v2 != 2 {
		t.Fatalf("rotate: version %d, %v", v2, err)
	}
	if _, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-stale"}, 1); !errors.Is(err, vault.ErrCASMismatch) {
		t.Fatalf("rotate with a stale version: %v, want ErrCASMismatch", err)
	}
	s, err := kv.Get(ctx, path)
	if err != nil || s.Data["api_key"] != "sk-second-value-000000" || s.Version != 2 {
		t.Fatalf("get current: %v %v", s, err)
	}
	old, err := kv.GetVersion(ctx, path, 1)
	if err != nil || old.Data["api_key"] != "sk-first-value-0000000" || old.Version != 1 {
		t.Fatalf("get version 1: %v %v", old, err)
	}
	md, err := kv.Metadata(ctx, path)
	if err != nil || md.CurrentVersion != 2 || len(md.Versions) != 2 || md.Versions[0].Version != 1 {
		t.Fatalf("metadata: %+v %v", md, err)
	}
}

func TestKVSoftDeleteDestroyList(t *testing.T) {
	ctx := context.Background()
	kv := rootKV(t)
	path := "workspaces/ws2/providers/anthropic"
	if _, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-ant-value-1"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "workspaces/ws2/providers/openai", map[string]string{"api_key": "sk-value-2"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := kv.DeleteVersion(ctx, path, 1); err != nil {
		t.Fatal(err)
	}
	// A soft-deleted current version reads as "no key".
	if _, err := kv.Get(ctx, path); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("get after soft delete: %v, want ErrNotFound", err)
	}
	md, err := kv.Metadata(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if cur, ok := md.Current(); !ok || cur.Alive() {
		t.Fatalf("current version after soft delete: %+v alive=%v", cur, cur.Alive())
	}
	// Writing after a delete takes the deleted version as the CAS base.
	if v, err := kv.Put(ctx, path, map[string]string{"api_key": "sk-ant-value-2"}, 1); err != nil || v != 2 {
		t.Fatalf("write after delete: %d %v", v, err)
	}
	if s, err := kv.Get(ctx, path); err != nil || s.Data["api_key"] != "sk-ant-value-2" {
		t.Fatalf("get after rewrite: %v %v", s, err)
	}
	names, err := kv.List(ctx, "workspaces/ws2/providers/")
	if err != nil || strings.Join(names, ",") != "anthropic,openai" {
		t.Fatalf("list: %v %v", names, err)
	}
	if err := kv.Destroy(ctx, path); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Metadata(ctx, path); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("metadata after destroy: %v, want ErrNotFound", err)
	}
	if names, err := kv.List(ctx, "workspaces/nobody-here/providers/"); err != nil || len(names) != 0 {
		t.Fatalf("list of an empty folder: %v %v", names, err)
	}
}

func TestSecretNeverPrintsItsValue(t *testing.T) {
	s := vault.Secret{Data: map[string]string{"api_key": "sk-super-secret-value", "clientSecret": "another-super-secret"}, Version: 3}
	var logged, jsonLogged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "secret", s)
	slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("x", "secret", s)
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s), logged.String(), jsonLogged.String(), string(js)} {
		if strings.Contains(out, "super-secret") {
			t.Fatalf("value printed: %s", out)
		}
	}
}

func TestUnreachableVaultIsUnavailable(t *testing.T) {
	vs := testenv.StartVault(t)
	c, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	vs.Kill()
	_, err = c.KV("secret").Get(context.Background(), "x")
	if !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("get from a killed vault: %v, want ErrUnavailable", err)
	}
}

func TestForbiddenWithStaticToken(t *testing.T) {
	addr, _ := testenv.Vault(t)
	c, err := vault.New(vault.Config{Address: addr, Token: "hvs.invalid"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.KV("secret").Get(context.Background(), "x")
	if !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("get with an invalid static token: %v, want ErrForbidden", err)
	}
}
