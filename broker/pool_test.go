package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

func addKey(t *testing.T, e *env, pool broker.PoolRef, keyID string, priority int, state string, models ...string) string {
	t.Helper()
	key := newKey(t, pool.Provider)
	if _, err := e.b.AddKey(context.Background(), broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: keyID, Credential: providers.APIKey(key),
		Name: "key " + keyID, Priority: &priority, State: state, Models: models}); err != nil {
		t.Fatalf("add %s: %v", keyID, err)
	}
	return key
}

func resolveIDs(t *testing.T, b *broker.Broker, ws, provider, model string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		r, err := b.Resolve(context.Background(), broker.ResolveRequest{Workspace: ws, Provider: provider, Model: model})
		if err != nil {
			t.Fatalf("resolve %s/%s model %q: %v", ws, provider, model, err)
		}
		seen[string(r.ScopeKind)+":"+r.KeyID]++
	}
	return seen
}

func TestPoolServesLowestPriorityInTurnsAndSkipsDisabledAndOtherModels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	addKey(t, e, pool, "a", 10, "")
	addKey(t, e, pool, "b", 10, "")
	addKey(t, e, pool, "c", 5, broker.KeyDisabled)
	addKey(t, e, pool, "d", 1, "", "gpt-4o", "gpt-4o-mini")

	if got := resolveIDs(t, e.b, ws, "openai", "gpt-4o", 4); got["workspace:d"] != 4 {
		t.Fatalf("a model key d allows: %v, want d (priority 1) each time", got)
	}
	if got := resolveIDs(t, e.b, ws, "openai", "o3", 10); got["workspace:a"] != 5 || got["workspace:b"] != 5 {
		t.Fatalf("a model only a and b allow: %v, want a and b taking turns", got)
	}
	if got := resolveIDs(t, e.b, ws, "openai", "", 4); got["workspace:a"] != 2 || got["workspace:b"] != 2 {
		t.Fatalf("no model named: %v, want a and b (d serves only its models)", got)
	}
	// Enabling c (priority 5) makes it the one key below a and b.
	active := broker.KeyActive
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("c"), State: &active}); err != nil {
		t.Fatal(err)
	}
	if got := resolveIDs(t, e.b, ws, "openai", "o3", 3); got["workspace:c"] != 3 {
		t.Fatalf("after enabling c: %v", got)
	}
	// Deleting c returns the turns to a and b at once.
	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: pool.Key("c")}); err != nil {
		t.Fatal(err)
	}
	if got := resolveIDs(t, e.b, ws, "openai", "o3", 2); got["workspace:a"] != 1 || got["workspace:b"] != 1 {
		t.Fatalf("after deleting c: %v", got)
	}
	// The pool as the API lists it: by priority, then age.
	metas, err := e.b.ListPool(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range metas {
		order = append(order, fmt.Sprintf("%s:%d:%s:%v", m.KeyID, m.Priority, m.State, m.Models))
	}
	if got := strings.Join(order, " "); got != "d:1:active:[gpt-4o gpt-4o-mini] a:10:active:[] b:10:active:[]" {
		t.Fatalf("pool: %s", got)
	}
	// Every change is in the workspace's trail with its key id.
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action+"/"+ev.KeyID)
	}
	if got := strings.Join(actions, " "); got != "key.delete/c key.update/c key.create/d key.create/c key.create/b key.create/a" {
		t.Fatalf("trail: %s", got)
	}
}

func TestResolutionChainWorkspaceOrganizationHosted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws, org := e.workspc, "org-"+e.workspc
	orgPool := broker.OrganizationScope(org).Pool("anthropic")
	wsPool := broker.WorkspaceScope(ws).Pool("anthropic")
	hostedKey := newKey(t, "anthropic")
	e.setHosted(t, "anthropic", hostedKey)
	orgKey := addKey(t, e, orgPool, "shared", 100, "", "claude-sonnet")
	link := func(req broker.SettingsRequest) {
		t.Helper()
		req.Actor, req.Workspace, req.MayLink = alice, ws, true
		if _, err := e.b.PutSettings(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	yes, no := true, false
	resolve := func(model string) (broker.Resolution, error) {
		return e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic", Model: model})
	}
	expect := func(what, model string, scope broker.ScopeKind, keyID, reason string) {
		t.Helper()
		r, err := resolve(model)
		if err != nil || r.ScopeKind != scope || r.KeyID != keyID || r.FallbackReason != reason || r.IsBYOK != (scope != broker.ScopeHosted) {
			t.Fatalf("%s: %v %v; want %s/%s, fallback reason %q", what, r, err, scope, keyID, reason)
		}
	}
	noKey := func(what, model, reason string) {
		t.Helper()
		var nk *broker.NoKeyError
		if r, err := resolve(model); !errors.As(err, &nk) || nk.Reason != reason {
			t.Fatalf("%s: %v %v; want no_key (%s)", what, r, err, reason)
		}
	}

	expect("not linked", "claude-sonnet", broker.ScopeHosted, broker.DefaultKeyID, broker.ReasonNoWorkspaceKey)
	link(broker.SettingsRequest{Organization: &org})
	expect("linked, inheriting", "claude-sonnet", broker.ScopeOrganization, "shared", broker.ReasonNoWorkspaceKey)
	if r, _ := resolve("claude-sonnet"); r.APIKey() != orgKey || r.Fingerprint == "" {
		t.Fatalf("the organization's key: %v (fingerprint %q)", r, r.Fingerprint)
	}
	expect("a model the organization's key does not allow", "claude-opus", broker.ScopeHosted, broker.DefaultKeyID, broker.ReasonOrganizationKeysUnavailable)
	addKey(t, e, wsPool, "off", 100, broker.KeyDisabled)
	expect("the workspace's only key disabled", "claude-sonnet", broker.ScopeOrganization, "shared", broker.ReasonWorkspaceKeysUnavailable)
	link(broker.SettingsRequest{Inherit: &no})
	expect("not inheriting", "claude-sonnet", broker.ScopeHosted, broker.DefaultKeyID, broker.ReasonWorkspaceKeysUnavailable)
	link(broker.SettingsRequest{HostedFallback: &no})
	noKey("failing closed", "claude-sonnet", broker.ReasonHostedFallbackOff)
	link(broker.SettingsRequest{Inherit: &yes})
	noKey("failing closed, no key allows the model", "claude-opus", broker.ReasonNoKeyAllowsModel)
	expect("inheriting again", "claude-sonnet", broker.ScopeOrganization, "shared", broker.ReasonWorkspaceKeysUnavailable)
	addKey(t, e, wsPool, "own", 100, "")
	expect("the workspace's own key", "claude-opus", broker.ScopeWorkspace, "own", "")

	// The organization's trail has its key; purging it sends its
	// workspaces on along the chain.
	evs, err := e.store.ListAudit(ctx, broker.OrganizationScope(org), 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Action != broker.ActionCreate || evs[0].KeyID != "shared" || evs[0].Provider != "anthropic" {
		t.Fatalf("organization trail: %+v %v", evs, err)
	}
	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: wsPool.Key("own")}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.b.PurgeScope(ctx, alice, broker.OrganizationScope(org)); err != nil || n != 1 {
		t.Fatalf("purge organization: %d %v", n, err)
	}
	noKey("organization purged, failing closed", "claude-sonnet", broker.ReasonHostedFallbackOff)
	if names, err := e.rootKV.List(ctx, broker.OrganizationScope(org).ProvidersDir()); err != nil || len(names) != 0 {
		t.Fatalf("the organization's keys are still in Vault: %v %v", names, err)
	}
}

func TestPoolLimitsAndBadInputChangeNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *broker.Config) { c.MaxKeysPerPool = 3 })
	ws := e.workspc
	pool := broker.WorkspaceScope(ws).Pool("openai")
	for i := range 3 {
		addKey(t, e, pool, fmt.Sprintf("k%d", i), 100, "")
	}
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, Credential: providers.APIKey(newKey(t, "openai"))}); !errors.Is(err, broker.ErrPoolFull) {
		t.Fatalf("a 4th key in a pool of 3: %v, want ErrPoolFull", err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: pool.Key("k9"), Credential: providers.APIKey(newKey(t, "openai"))}); !errors.Is(err, broker.ErrPoolFull) {
		t.Fatalf("a 4th key by PUT: %v, want ErrPoolFull", err)
	}
	// Rotating a key of a full pool is no new key.
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: pool.Key("k0"), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatalf("rotate in a full pool: %v", err)
	}
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.WorkspaceScope(ws).Pool("mistral"), KeyID: "k0", Credential: providers.APIKey(newKey(t, "mistral"))}); err != nil {
		t.Fatalf("the same key id in another pool: %v", err)
	}
	long := strings.Repeat("n", broker.MaxNameLength+1)
	for name, req := range map[string]broker.AddKeyRequest{
		"existing key id":     {KeyID: "k1"},
		"bad key id":          {KeyID: "Bad/Id"},
		"long name":           {KeyID: "x1", Name: long},
		"name with a newline": {KeyID: "x2", Name: "a\nb"},
		"priority 1001":       {KeyID: "x3", Priority: ptr(1001)},
		"priority -1":         {KeyID: "x4", Priority: ptr(-1)},
		"unknown state":       {KeyID: "x5", State: "paused"},
		"model with a space":  {KeyID: "x6", Models: []string{"gpt 4"}},
		"empty model":         {KeyID: "x7", Models: []string{""}},
		"65 models":           {KeyID: "x8", Models: make([]string, 65)},
	} {
		req.Actor, req.Pool, req.Credential = alice, broker.WorkspaceScope(ws).Pool("anthropic"), providers.APIKey(newKey(t, "anthropic"))
		if name == "existing key id" {
			req.Pool, req.Credential = pool, providers.APIKey(newKey(t, "openai"))
		}
		_, err := e.b.AddKey(ctx, req)
		if err == nil || !(errors.Is(err, broker.ErrInvalidRequest) || errors.Is(err, broker.ErrInvalidID) || errors.Is(err, broker.ErrConflict) || errors.Is(err, broker.ErrPoolFull)) {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
	for _, what := range []broker.Scope{{Kind: "team", ID: "x"}, {Kind: broker.ScopeHosted, ID: "x"}, {Kind: broker.ScopeOrganization, ID: "Bad"}} {
		if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: what.Pool("openai"), Credential: providers.APIKey(newKey(t, "openai"))}); !errors.Is(err, broker.ErrInvalidID) {
			t.Errorf("scope %+v: %v, want ErrInvalidID", what, err)
		}
	}
	bad := 5000
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("k1"), Priority: &bad}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("update to priority 5000: %v", err)
	}
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("nope"), Priority: ptr(1)}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("update of an unknown key: %v", err)
	}
	// Nothing of the refused requests reached Vault or PostgreSQL.
	if names, err := e.rootKV.List(ctx, broker.WorkspaceScope(ws).Pool("anthropic").KeysDir()); err != nil || len(names) != 0 {
		t.Fatalf("refused keys reached Vault: %v %v", names, err)
	}
	if names, err := e.rootKV.List(ctx, pool.KeysDir()); err != nil || len(names) != 3 {
		t.Fatalf("the full pool in Vault: %v %v", names, err)
	}
	metas, err := e.b.ListKeys(ctx, broker.WorkspaceScope(ws))
	if err != nil || len(metas) != 4 {
		t.Fatalf("keys of the workspace: %d %v, want 3 openai and 1 mistral", len(metas), err)
	}
	for _, m := range metas {
		if m.Priority != 100 || m.State != broker.KeyActive {
			t.Fatalf("a refused update changed a key: %+v", m)
		}
	}
}

// TestColdHerdOnAnInheritedKeyMakesOneVaultRead: 500 callers of a fresh
// replica resolve the organization key their workspace inherits at once.
func TestColdHerdOnAnInheritedKeyMakesOneVaultRead(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws, org := e.workspc, "org-"+e.workspc
	key := addKey(t, e, broker.OrganizationScope(org).Pool("google"), "shared", 100, "")
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, Organization: &org, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	cold := e.another(t, nil)
	before := e.reads.Reads()
	var wg sync.WaitGroup
	start := make(chan struct{})
	var failures sync.Map
	for i := range 500 {
		wg.Go(func() {
			<-start
			r, err := cold.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "google"})
			if err != nil || r.APIKey() != key || r.ScopeKind != broker.ScopeOrganization {
				failures.Store(i, fmt.Sprint(r, err))
			}
		})
	}
	close(start)
	wg.Wait()
	failures.Range(func(k, v any) bool { t.Errorf("resolve %v: %v", k, v); return true })
	n := e.reads.Reads() - before
	t.Logf("500 concurrent cold resolves of an inherited organization key: %d Vault read(s)", n)
	if n != 1 {
		t.Fatalf("500 concurrent cold resolves made %d Vault reads, want 1", n)
	}
}

// TestV1LayoutIsServedUntilMovedAndKeepsItsVersions: a key keybroker v1
// stored at workspaces/<ws>/providers/<p> is served from there, is not
// overwritten by a first write at the new path, and migrate-layout moves it
// with its version numbers.
func TestV1LayoutIsServedUntilMovedAndKeepsItsVersions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	ref := broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)
	v1, v2 := newKey(t, "openai"), newKey(t, "openai")
	// As v1 left it: two versions at the old path, the first deleted, and
	// its metadata row.
	if _, err := e.rootKV.Put(ctx, ref.LegacyVaultPath(), map[string]string{"api_key": v1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rootKV.Put(ctx, ref.LegacyVaultPath(), map[string]string{"api_key": v2}, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.rootKV.DeleteVersion(ctx, ref.LegacyVaultPath(), 1); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CompleteWrite(ctx, ref, uuid.NewString(), broker.Written{Version: 2, MaskedKey: providers.MaskKey(v2),
		Fingerprint: providers.Fingerprint(e.cfg.Pepper, providers.APIKey(v2)), By: "v1"}, broker.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: ws, Action: "key.rotate", Actor: "v1", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || r.APIKey() != v2 || r.Version != 2 {
		t.Fatalf("the v1 key before the move: %v %v", r, err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: ref, Credential: providers.APIKey(newKey(t, "openai"))}); !errors.Is(err, broker.ErrConflict) ||
		!strings.Contains(err.Error(), "migrate-layout") {
		t.Fatalf("a write of the v1 key before the move: %v, want a conflict naming migrate-layout", err)
	}
	rep, err := e.b.MigrateLayout(ctx, alice)
	if err != nil || len(rep.Moved) != 1 || len(rep.Skipped) != 0 {
		t.Fatalf("migrate: %+v %v", rep, err)
	}
	if _, err := e.rootKV.Metadata(ctx, ref.LegacyVaultPath()); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("the v1 secret after the move: %v, want gone", err)
	}
	vs, err := e.b.Versions(ctx, ref)
	if err != nil || len(vs) != 2 || !vs[0].Current || vs[0].Version != 2 || vs[1].DeletedAt.IsZero() {
		t.Fatalf("versions after the move: %+v %v, want 2 current and 1 deleted", vs, err)
	}
	e.b.Evict(ref)
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || r.APIKey() != v2 || r.Version != 2 || r.Fingerprint == "" {
		t.Fatalf("the key after the move: %v %v", r, err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: ref, Credential: providers.APIKey(newKey(t, "openai")), ExpectedVersion: 2}); err != nil {
		t.Fatalf("a rotation after the move: %v", err)
	}
	if rep, err := e.b.MigrateLayout(ctx, alice); err != nil || len(rep.Moved)+len(rep.Skipped) != 0 {
		t.Fatalf("a second run: %+v %v", rep, err)
	}
}
