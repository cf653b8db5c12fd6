package client_test

//lint:file-ignore SA1019 this test holds the deprecated names to what their new names do

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/vault"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newOpenAIKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "sk-proj-" + hex.EncodeToString(b)
}

// TestDeprecatedNamesDoWhatTheirNewNamesDo: the names the client had
// before pools (the v1 shorthand: a workspace's key "default") and the
// old words for a check are thin wrappers, kept for one release; against
// a real keybroker each does what the name that replaces it does.
func TestDeprecatedNamesDoWhatTheirNewNamesDo(t *testing.T) {
	ctx := context.Background()
	s := kbtest.Start(t, kbtest.Options{})
	api := s.API
	ref := client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}
	vaultPath := broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath()
	root := s.Identities.Root.KV(s.Identities.Mount)
	k1, k2 := newOpenAIKey(t), newOpenAIKey(t)

	meta, created, err := api.SetKey(ctx, "ws1", "openai", k1, 0)
	if err != nil || !created || meta.KeyID != "default" || meta.Scope != "workspace" || meta.Version != 1 {
		t.Fatalf("SetKey of a new key: %+v created %v: %v", meta, created, err)
	}
	if meta, created, err = api.SetKey(ctx, "ws1", "openai", k2, 1); err != nil || created || meta.Version != 2 {
		t.Fatalf("SetKey rotating version 1: %+v created %v: %v", meta, created, err)
	}
	if _, _, err := api.SetKey(ctx, "ws1", "openai", k1, 1); !client.IsStatus(err, http.StatusPreconditionFailed) {
		t.Fatalf("SetKey with a stale version: %v, want 412", err)
	}
	got, err := api.GetKey(ctx, "ws1", "openai")
	want, err2 := api.Key(ctx, ref)
	if err != nil || err2 != nil || got.Version != 2 || got.MaskedKey != want.MaskedKey || got.Fingerprint != want.Fingerprint {
		t.Fatalf("GetKey %+v (%v), Key %+v (%v)", got, err, want, err2)
	}
	versions, err := api.Versions(ctx, "ws1", "openai")
	newer, err2 := api.KeyVersions(ctx, ref)
	if err != nil || err2 != nil || len(versions) != 2 || len(newer) != 2 || versions[0].Version != 2 || versions[0].MaskedKey != newer[0].MaskedKey {
		t.Fatalf("Versions %+v (%v), KeyVersions %+v (%v)", versions, err, newer, err2)
	}
	if meta, err = api.Rollback(ctx, "ws1", "openai", 1); err != nil || meta.Version != 3 || meta.MaskedKey != versions[1].MaskedKey {
		t.Fatalf("Rollback to version 1: %+v: %v", meta, err)
	}
	// create, rotate, the refused rotate, rollback.
	page, err := api.Audit(ctx, "ws1", "", 10)
	scoped, err2 := api.ScopeAudit(ctx, client.Workspace("ws1"), "", 10)
	if err != nil || err2 != nil || len(page.Events) != 4 || len(scoped.Events) != 4 ||
		page.Events[0].ID != scoped.Events[0].ID || page.Events[0].Action != "key.rollback" {
		t.Fatalf("Audit %+v (%v), ScopeAudit %+v (%v)", page, err, scoped, err2)
	}

	// The check: this keybroker has no provider checker, and the old
	// names answer what the new ones do (501), storing nothing.
	sameError := func(what string, old, new error) {
		t.Helper()
		var o, n *client.Error
		if !errors.As(old, &o) || !errors.As(new, &n) || o.StatusCode != n.StatusCode || o.Code != n.Code || o.StatusCode != http.StatusNotImplemented {
			t.Fatalf("%s: the old name answers %v, the new %v", what, old, new)
		}
	}
	_, errOld := api.TestKey(ctx, ref)
	_, errNew := api.CheckKey(ctx, ref)
	sameError("TestKey and CheckKey", errOld, errNew)
	_, errOld = api.AddVerifiedKey(ctx, client.Workspace("ws1"), "openai", client.AddKeyRequest{APIKey: newOpenAIKey(t), KeyID: "checked"})
	_, errNew = api.AddCheckedKey(ctx, client.Workspace("ws1"), "openai", client.AddKeyRequest{APIKey: newOpenAIKey(t), KeyID: "checked"})
	sameError("AddVerifiedKey and AddCheckedKey", errOld, errNew)
	_, _, errOld = api.PutVerifiedKey(ctx, ref, newOpenAIKey(t), 0)
	_, _, errNew = api.PutCheckedKey(ctx, ref, newOpenAIKey(t), 0)
	sameError("PutVerifiedKey and PutCheckedKey", errOld, errNew)
	if keys, err := api.Pool(ctx, client.Workspace("ws1"), "openai"); err != nil || len(keys) != 1 || keys[0].Version != 3 {
		t.Fatalf("the pool after refused checked writes: %+v: %v", keys, err)
	}

	// DeleteKey leaves the older versions in Vault; DestroyKey does not.
	if err := api.DeleteKey(ctx, "ws1", "openai", 3); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := api.Key(ctx, ref); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("Key after DeleteKey: %v, want 404", err)
	}
	if md, err := root.Metadata(ctx, vaultPath); err != nil || len(md.Versions) != 3 {
		t.Fatalf("Vault after DeleteKey: %+v: %v, want the three versions kept", md, err)
	}
	if _, _, err := api.SetKey(ctx, "ws1", "openai", k1, 0); err != nil {
		t.Fatal(err)
	}
	if err := api.DestroyKey(ctx, "ws1", "openai", 0); err != nil {
		t.Fatalf("DestroyKey: %v", err)
	}
	if _, err := api.Key(ctx, ref); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("Key after DestroyKey: %v, want 404", err)
	}
	if _, err := root.Metadata(ctx, vaultPath); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Vault after DestroyKey: %v, want no secret", err)
	}
}
