package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

func TestReconcileRepairsHalfDoneWrites(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc

	// A writer that died after Vault accepted its write: the row is pending
	// with the new key's preview, Vault has version 1.
	written := newKey(t, "openai")
	ch := broker.Change{ID: "00000000-0000-4000-8000-000000000001", Op: broker.OpSet, By: "alice",
		MaskedKey: providers.MaskKey(written), Fingerprint: providers.Fingerprint(e.cfg.Pepper, providers.APIKey(written))}
	if _, err := e.store.BeginChange(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), ch); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rootKV.Put(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID).VaultPath(), map[string]string{"api_key": written}, 0); err != nil {
		t.Fatal(err)
	}
	// A writer that died before reaching Vault.
	lost := newKey(t, "anthropic")
	ch2 := broker.Change{ID: "00000000-0000-4000-8000-000000000002", Op: broker.OpSet, By: "bob",
		MaskedKey: providers.MaskKey(lost), Fingerprint: providers.Fingerprint(e.cfg.Pepper, providers.APIKey(lost))}
	if _, err := e.store.BeginChange(ctx, broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), ch2); err != nil {
		t.Fatal(err)
	}

	rep, err := e.b.Reconcile(ctx, 0)
	if err != nil || rep.Completed != 1 || rep.Aborted != 1 || rep.Failed != 0 {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	meta := assertMetadataMatchesVault(t, e, ws, "openai")
	if meta.UpdatedBy != "alice" {
		t.Fatalf("completed row: %+v", meta)
	}
	if _, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID)); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("aborted create left metadata: %v", err)
	}
	if pending, _ := e.store.ListPending(ctx, 0); len(pending) != 0 {
		t.Fatalf("still pending: %+v", pending)
	}
}

func TestReconcileRepairsDriftMadeInVaultDirectly(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	k1, k2, orphan := newKey(t, "openai"), newKey(t, "openai"), newKey(t, "exa")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "anthropic"))}); err != nil {
		t.Fatal(err)
	}
	// Behind keybroker's back: a rotation, a delete, a key with no row.
	if _, err := e.rootKV.Put(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID).VaultPath(), map[string]string{"api_key": k2}, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.rootKV.DeleteVersion(ctx, broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID).VaultPath(), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rootKV.Put(ctx, broker.WorkspaceKey(ws, "exa", broker.DefaultKeyID).VaultPath(), map[string]string{"api_key": orphan}, 0); err != nil {
		t.Fatal(err)
	}

	// A writer-only broker (admin mode) cannot read keys: it reports what
	// it cannot fix and fixes the delete.
	writerOnly, err := broker.New(broker.Config{Writer: e.cfg.Writer, Store: e.store, Pools: e.store, Pepper: e.cfg.Pepper, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := writerOnly.Reconcile(ctx, 0)
	if err != nil || rep.Repaired != 1 || len(rep.Unrepaired) != 2 {
		t.Fatalf("writer-only reconcile: %+v %v", rep, err)
	}
	if _, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID)); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("a key deleted in Vault kept its metadata: %v", err)
	}

	rep, err = e.b.Reconcile(ctx, 0)
	if err != nil || rep.Repaired != 2 || len(rep.Unrepaired) != 0 {
		t.Fatalf("reconcile with both identities: %+v %v", rep, err)
	}
	assertMetadataMatchesVault(t, e, ws, "openai")
	meta := assertMetadataMatchesVault(t, e, ws, "exa")
	if meta.CreatedBy != "reconciler" {
		t.Fatalf("adopted key: %+v", meta)
	}
	if rep, err := e.b.Reconcile(ctx, 0); err != nil || rep.Repaired != 0 || len(rep.Unrepaired) != 0 {
		t.Fatalf("a second reconcile found more: %+v %v", rep, err)
	}
}

// A key written around keybroker under another field name is reported
// with the reason; a pool's key overwritten so makes resolve say so in the
// log instead of a silent no_key.
func TestKeyUnderAnotherFieldNameIsReported(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	path := broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID).VaultPath()
	value := newKey(t, "openai")
	if _, err := e.root.KVv2(e.mount).Put(ctx, path, map[string]any{"key": value}, vaultapi.WithCheckAndSet(0)); err != nil {
		t.Fatal(err)
	}
	rep, err := e.b.Reconcile(ctx, 0)
	if err != nil || rep.Failed != 0 || len(rep.Unrepaired) != 1 {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	if u := rep.Unrepaired[0]; !strings.Contains(u, "no field api_key") || !strings.Contains(u, `"key"`) || strings.Contains(u, value) {
		t.Fatalf("unrepaired: %q", u)
	}
	// A pool member overwritten in Vault under another field name.
	member := broker.WorkspaceKey(ws, "openai", "member")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: member, Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.KVv2(e.mount).Put(ctx, member.VaultPath(), map[string]any{"key": value}, vaultapi.WithCheckAndSet(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.Is(err, broker.ErrNoKey) {
		t.Fatalf("resolve: %v, want no key", err)
	}
	if logs := capturedLogs.String(); !strings.Contains(logs, "has no api_key field") {
		t.Fatal("resolve did not log the secret without an api_key field")
	}
}
