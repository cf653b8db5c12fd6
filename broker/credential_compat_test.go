package broker_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// A key written by the previous version (a bare string in the KV v2 data
// field api_key, and its metadata row with the preview and the
// fingerprint computed over the key itself) reads, resolves, tests and
// rotates unchanged with the typed credential.
func TestKeyWrittenByThePreviousVersionReadsUnchanged(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ref := broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID)
	key := newKey(t, "openai")
	// The previous version's preview and fingerprint, computed here as it
	// computed them (not with today's code).
	mac := hmac.New(sha256.New, e.cfg.Pepper)
	mac.Write([]byte(key))
	oldFingerprint := hex.EncodeToString(mac.Sum(nil))
	oldMask := key[:6] + "..." + key[len(key)-4:]

	ch := broker.Change{ID: "00000000-0000-4000-8000-0000000000a1", Op: broker.OpSet, By: "previous-version", MaskedKey: oldMask,
		Fingerprint: oldFingerprint, Member: broker.MemberSettings{Priority: broker.DefaultPriority}}
	if _, err := e.store.BeginChange(ctx, ref, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := e.root.KVv2(e.mount).Put(ctx, ref.VaultPath(), map[string]any{"api_key": key}, vaultapi.WithCheckAndSet(0)); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CompleteWrite(ctx, ref, ch.ID, broker.Written{Version: 1, MaskedKey: oldMask, Fingerprint: oldFingerprint, By: "previous-version"},
		broker.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: e.workspc, Provider: "openai", KeyID: broker.DefaultKeyID,
			Action: broker.ActionCreate, Actor: "previous-version", Outcome: broker.OutcomeSuccess}); err != nil {
		t.Fatal(err)
	}

	b := e.another(t, nil) // a replica that learns the key from the database, as after an upgrade
	res, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"})
	if err != nil {
		t.Fatal(err)
	}
	if res.APIKey() != key || res.Credential.Kind() != providers.KindAPIKey || res.Version != 1 || res.Fingerprint != oldFingerprint {
		t.Fatalf("resolved %v (fingerprint %s, want %s)", res, res.Fingerprint, oldFingerprint)
	}
	if got := providers.Fingerprint(e.cfg.Pepper, providers.APIKey(key)); got != oldFingerprint {
		t.Fatalf("today's fingerprint of an api_key credential %s differs from the previous version's %s", got, oldFingerprint)
	}
	meta, err := b.GetKey(ctx, ref)
	if err != nil || meta.MaskedKey != oldMask || meta.Version != 1 {
		t.Fatalf("metadata %+v %v", meta, err)
	}
	// A rotation writes the same field, so the previous version could read
	// it back too.
	next := newKey(t, "openai")
	if _, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: ref, Credential: providers.APIKey(next)}); err != nil {
		t.Fatal(err)
	}
	s, err := e.root.KVv2(e.mount).Get(ctx, ref.VaultPath())
	if err != nil || len(s.Data) != 1 || s.Data["api_key"] != next {
		t.Fatalf("the rotated secret's fields: %v", err)
	}
}
