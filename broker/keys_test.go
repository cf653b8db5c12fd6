package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

func TestSetResolveDeleteFallsBackToHosted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	hosted := newKey(t, "openai")
	e.setHosted(t, "openai", hosted)

	// No BYOK key yet: the hosted key, billed.
	r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || r.APIKey() != hosted || r.Source != broker.SourceHosted || r.IsBYOK {
		t.Fatalf("before set: %v %v", r, err)
	}

	own := newKey(t, "openai")
	res, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(own)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Meta.Version != 1 || res.Meta.MaskedKey != providers.MaskKey(own) || res.Meta.CreatedBy != "alice" {
		t.Fatalf("set result: %+v", res)
	}
	r, err = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || r.APIKey() != own || r.Source != broker.SourceBYOK || !r.IsBYOK || r.Version != 1 {
		t.Fatalf("after set: %v %v", r, err)
	}

	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)}); err != nil {
		t.Fatal(err)
	}
	r, err = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || r.APIKey() != hosted || r.Source != broker.SourceHosted || r.IsBYOK {
		t.Fatalf("after delete: %v %v", r, err)
	}
	if _, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("metadata after delete: %v", err)
	}
	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}

	// Neither a BYOK nor a hosted key: a typed not-found.
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "mistral"}); !errors.Is(err, broker.ErrNoKey) {
		t.Fatalf("no key anywhere: %v, want ErrNoKey", err)
	}

	// Setting a key after a delete is a create again, on top of the
	// deleted version.
	again := newKey(t, "openai")
	res, err = e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(again)})
	if err != nil || !res.Created || res.Meta.Version != 2 {
		t.Fatalf("set after delete: %+v %v", res, err)
	}
	if r, _ := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); r.APIKey() != again {
		t.Fatal("resolve after re-create does not return the new key")
	}
}

func TestConcurrentRotationsWithTheSameExpectedVersion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	keys := []string{newKey(t, "openai"), newKey(t, "openai")}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range keys {
		wg.Go(func() {
			<-start
			_, errs[i] = e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(keys[i]), ExpectedVersion: 1})
		})
	}
	close(start)
	wg.Wait()
	wins, losses := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, broker.ErrPreconditionFailed):
			losses++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 || losses != 1 {
		t.Fatalf("%d wins and %d losses, want one of each", wins, losses)
	}
	assertMetadataMatchesVault(t, e, ws, "openai")
}

func TestConcurrentRotationsWithoutExpectedVersionAllLand(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	var wg sync.WaitGroup
	var mu sync.Mutex
	landed, conflicts := 0, 0
	for range 8 {
		wg.Go(func() {
			_, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "exa", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "exa"))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				landed++
			case errors.Is(err, broker.ErrConflict):
				conflicts++ // lost the race twice: allowed, reported as 409
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if landed == 0 {
		t.Fatal("no concurrent write landed")
	}
	md := assertMetadataMatchesVault(t, e, ws, "exa")
	if md.Version != landed {
		t.Fatalf("vault holds %d versions but %d writes reported success", md.Version, landed)
	}
	if pending, err := e.store.ListPending(ctx, 0); err != nil || len(pending) != 0 {
		t.Fatalf("rows left pending after concurrent writes: %+v %v", pending, err)
	}
}

// assertMetadataMatchesVault checks that PostgreSQL's version is Vault's
// current version and that the fingerprint is the current key's.
func assertMetadataMatchesVault(t *testing.T, e *env, ws, provider string) broker.KeyMeta {
	t.Helper()
	ctx := context.Background()
	meta, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, provider, broker.DefaultKeyID))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := e.rootKV.Get(ctx, broker.WorkspaceKey(ws, provider, broker.DefaultKeyID).VaultPath())
	if err != nil {
		t.Fatal(err)
	}
	if meta.Version != cur.Version {
		t.Fatalf("metadata version %d, vault version %d", meta.Version, cur.Version)
	}
	if meta.Fingerprint != providers.Fingerprint(e.cfg.Pepper, providers.APIKey(cur.Data["api_key"])) || meta.MaskedKey != providers.MaskKey(cur.Data["api_key"]) {
		t.Fatal("metadata fingerprint or preview is not the current key's")
	}
	return meta
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	cases := []struct {
		name, ws, provider, key string
		want                    error
	}{
		{"uppercase workspace", "WS", "openai", newKey(t, "openai"), broker.ErrInvalidID},
		{"slash in workspace", "a/b", "openai", newKey(t, "openai"), broker.ErrInvalidID},
		{"unknown provider", ws, "nosuch", newKey(t, "openai"), broker.ErrUnknownProvider},
		{"empty key", ws, "openai", "", broker.ErrInvalidKey},
		{"whitespace", ws, "openai", " " + newKey(t, "openai"), broker.ErrInvalidKey},
		{"newline inside", ws, "openai", "sk-proj-abc\ndef0123456789abcdef", broker.ErrInvalidKey},
		{"a sentence", ws, "openai", "sk-this is my key please keep it", broker.ErrInvalidKey},
		{"another provider's key", ws, "openai", newKey(t, "google"), broker.ErrInvalidKey},
		{"too short", ws, "anthropic", "sk-ant-short", broker.ErrInvalidKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(tc.ws, tc.provider, broker.DefaultKeyID), Credential: providers.APIKey(tc.key)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.key != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.key)) {
				t.Fatalf("the error quotes the key: %v", err)
			}
		})
	}
	if keys, err := e.b.ListKeys(ctx, broker.WorkspaceScope(ws)); err != nil || len(keys) != 0 {
		t.Fatalf("refused writes left keys: %+v %v", keys, err)
	}
	if names, err := e.rootKV.List(ctx, broker.WorkspaceScope(ws).ProvidersDir()); err != nil || len(names) != 0 {
		t.Fatalf("refused writes reached Vault: %v %v", names, err)
	}
	if evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("refused input made audit events: %+v %v", evs, err)
	}
}

func TestVersionsRollbackAndAudit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	k1, k2 := newKey(t, "openai"), newKey(t, "openai")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k2)}); err != nil {
		t.Fatal(err)
	}
	res, err := e.b.Rollback(ctx, broker.RollbackRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Version: 1})
	if err != nil || res.Meta.Version != 3 || res.Meta.MaskedKey != providers.MaskKey(k1) {
		t.Fatalf("rollback: %+v %v", res, err)
	}
	if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || r.APIKey() != k1 || r.Version != 3 {
		t.Fatalf("resolve after rollback: %v %v", r, err)
	}
	vs, err := e.b.Versions(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID))
	if err != nil || len(vs) != 3 || vs[0].Version != 3 || !vs[0].Current || vs[2].Version != 1 {
		t.Fatalf("versions: %+v %v", vs, err)
	}
	if _, err := e.b.Rollback(ctx, broker.RollbackRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Version: 3}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("rollback to the current version: %v", err)
	}
	if _, err := e.b.Rollback(ctx, broker.RollbackRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Version: 9}); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("rollback to a missing version: %v", err)
	}
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action+":"+ev.Outcome)
		if ev.Actor != "alice" || ev.RemoteAddr != "192.0.2.10" {
			t.Fatalf("audit event without who and from where: %+v", ev)
		}
	}
	if got := strings.Join(actions, ","); got != "key.rollback:success,key.rotate:success,key.create:success" {
		t.Fatalf("audit trail: %s", got)
	}
}

func TestPurgeWorkspaceDestroysEveryVersion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	for _, p := range []string{"openai", "anthropic", "exa"} {
		if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, p, broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, p))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil {
		t.Fatal(err)
	}
	n, err := e.b.PurgeScope(ctx, broker.Actor{Subject: "operator"}, broker.WorkspaceScope(ws))
	if err != nil || n != 3 {
		t.Fatalf("purge: %d %v", n, err)
	}
	for _, p := range []string{"openai", "anthropic", "exa"} {
		if _, err := e.rootKV.Metadata(ctx, broker.WorkspaceKey(ws, p, broker.DefaultKeyID).VaultPath()); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("%s still in Vault after purge: %v", p, err)
		}
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.Is(err, broker.ErrNoKey) {
		t.Fatalf("resolve after purge: %v", err)
	}
	if keys, _ := e.b.ListKeys(ctx, broker.WorkspaceScope(ws)); len(keys) != 0 {
		t.Fatalf("metadata after purge: %+v", keys)
	}
	if n, err := e.b.PurgeScope(ctx, broker.Actor{Subject: "operator"}, broker.WorkspaceScope(ws)); err != nil || n != 0 {
		t.Fatalf("purging again: %d %v", n, err)
	}
}

func TestResolverOnlyBrokerCannotWrite(t *testing.T) {
	e := newEnv(t, nil)
	b, err := broker.New(broker.Config{Reader: e.cfg.Reader})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutKey(context.Background(), broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); !errors.Is(err, broker.ErrNotConfigured) {
		t.Fatalf("set on a resolver-only broker: %v", err)
	}
}
