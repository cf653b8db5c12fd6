package vault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/vault"
)

func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{})
	writer, reader, root := ids.Writer.KV(ids.Mount), ids.Reader.KV(ids.Mount), ids.Root.KV(ids.Mount)
	path := "workspaces/ws1/providers/openai/keys/default"

	// The writer writes, rotates, reads metadata, lists, deletes, destroys.
	if _, err := writer.Put(ctx, path, map[string]string{"api_key": "sk-writer-wrote-this-000000"}, 0); err != nil {
		t.Fatalf("writer put: %v", err)
	}
	if _, err := writer.Metadata(ctx, path); err != nil {
		t.Fatalf("writer metadata: %v", err)
	}
	if names, err := writer.List(ctx, "workspaces/ws1/providers/openai/keys/"); err != nil || len(names) != 1 {
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
	if s, err := reader.Get(ctx, path); err != nil || s.Data["api_key"] != "sk-writer-wrote-this-000000" {
		t.Fatalf("reader get: %v", err)
	}
	if _, err := root.Put(ctx, "hosted/providers/openai/keys/default", map[string]string{"api_key": "sk-hosted-000000000000"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Get(ctx, "hosted/providers/openai/keys/default"); err != nil {
		t.Fatalf("reader get hosted: %v", err)
	}
	// The writer writes the keys of every scope, hosted keys included
	// (operators manage them through the API).
	for _, p := range []string{"organizations/acme/providers/openai/keys/shared", "hosted/providers/openai/keys/second"} {
		if _, err := writer.Put(ctx, p, map[string]string{"api_key": "sk-writer-wrote-this-000000"}, 0); err != nil {
			t.Fatalf("writer put %s: %v", p, err)
		}
		if s, err := reader.Get(ctx, p); err != nil || s.Data["api_key"] != "sk-writer-wrote-this-000000" {
			t.Fatalf("reader get %s: %v", p, err)
		}
	}
	for what, err := range map[string]error{
		"put": func() error {
			_, err := reader.Put(ctx, path, map[string]string{"api_key": "sk-reader-tries-000000"}, 1)
			return err
		}(),
		"delete":   reader.DeleteVersion(ctx, path, 1),
		"destroy":  reader.Destroy(ctx, path),
		"metadata": func() error { _, err := reader.Metadata(ctx, path); return err }(),
		"list":     func() error { _, err := reader.List(ctx, "workspaces/ws1/providers/openai/keys/"); return err }(),
		"put at the v1 path": func() error {
			_, err := writer.Put(ctx, "workspaces/ws1/providers/openai", map[string]string{"api_key": "sk-x-0000000000000"}, 0)
			return err
		}(),
		"extra segment": func() error {
			_, err := writer.Put(ctx, path+"/extra", map[string]string{"api_key": "sk-x-0000000000000"}, 0)
			return err
		}(),
		"missing one": func() error {
			_, err := writer.Put(ctx, "workspaces/ws1/providers/openai/keys", map[string]string{"api_key": "sk-x-0000000000000"}, 0)
			return err
		}(),
		"another folder": func() error {
			_, err := writer.Put(ctx, "teams/t1/providers/openai/keys/default", map[string]string{"api_key": "sk-x-0000000000000"}, 0)
			return err
		}(),
		"reader extra":   func() error { _, err := reader.Get(ctx, "hosted/providers/openai/keys/default"+"/x"); return err }(),
		"reader missing": func() error { _, err := reader.Get(ctx, "workspaces/ws1/providers/openai/keys"); return err }(),
	} {
		if !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s: %v, want 403", what, err)
		}
	}
	// Neither reaches sys/ or another mount.
	other := testenv.NewKVMount(t)
	if _, err := root.Put(ctx, "x", map[string]string{"api_key": "v"}, 0); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*vault.Client{"writer": ids.Writer, "reader": ids.Reader} {
		if _, err := c.KV(other).Get(ctx, "workspaces/ws1/providers/openai"); !errors.Is(err, vault.ErrForbidden) {
			t.Errorf("%s read another mount: %v", name, err)
		}
		if _, err := c.KV(other).Put(ctx, "workspaces/ws1/providers/openai", map[string]string{"api_key": "sk-x-0000000000000"}, 0); !errors.Is(err, vault.ErrForbidden) {
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
