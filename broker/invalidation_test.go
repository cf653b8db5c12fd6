package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
)

// listen runs a replica's invalidation listener until the test ends and
// returns a channel that receives each time it (re)starts listening.
func listen(t *testing.T, e *env, b *broker.Broker) <-chan struct{} {
	t.Helper()
	started := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.store.ListenInvalidations(ctx, store.InvalidationHandler{
			Invalidate: func(inv store.Invalidation) {
				if inv.Settings != "" {
					_ = b.SettingsChanged(ctx, inv.Settings)
					return
				}
				_ = b.Invalidate(ctx, inv.ForBroker())
			},
			Listening: func() {
				b.FlushCache()
				_ = b.Load(ctx)
				started <- struct{}{}
			},
		}, testLogger)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not start")
	}
	return started
}

// untilServes measures how long b takes to serve want for ws/provider,
// with other goroutines resolving the same key meanwhile (load).
func untilServes(t *testing.T, b *broker.Broker, ws, provider, want string) time.Duration {
	t.Helper()
	ctx := context.Background()
	resolves := startLoad(4, 0, func() error {
		_, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: provider})
		return err
	})
	defer resolves.Stop()
	start := time.Now()
	for {
		if r, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: provider}); err == nil && r.APIKey() == want {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not served within 5 s (%d resolves meanwhile)", resolves.ok.Load()+resolves.failed.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestChangesOnOneReplicaReachAnotherWithinASecond(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil) // replica A; caches for 30 s
	ws := e.workspc
	replicaB := e.another(t, nil)
	listen(t, e, e.b)
	listen(t, e, replicaB)
	hosted, k1, k2 := newKey(t, "openai"), newKey(t, "openai"), newKey(t, "openai")
	e.setHosted(t, "openai", hosted)
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k1)}); err != nil {
		t.Fatal(err)
	}
	if d := untilServes(t, replicaB, ws, "openai", k1); d > time.Second {
		t.Errorf("a new key reached replica B after %v", d)
	}

	// Delete on A while B serves the key under load.
	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)}); err != nil {
		t.Fatal(err)
	}
	deleted := untilServes(t, replicaB, ws, "openai", hosted)

	// A new key on A (B has "no BYOK key" cached), then a rotation.
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k1)}); err != nil {
		t.Fatal(err)
	}
	recreated := untilServes(t, replicaB, ws, "openai", k1)
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(k2)}); err != nil {
		t.Fatal(err)
	}
	rotated := untilServes(t, replicaB, ws, "openai", k2)
	t.Logf("replica B stopped serving a deleted key after %v, served a re-created key after %v and a rotated key after %v", deleted, recreated, rotated)
	for what, d := range map[string]time.Duration{"delete": deleted, "re-create": recreated, "rotation": rotated} {
		if d > time.Second {
			t.Errorf("%s reached replica B after %v, want within 1 s", what, d)
		}
	}

	// A purge reaches B too.
	if _, err := e.b.PurgeScope(ctx, alice, broker.WorkspaceScope(ws)); err != nil {
		t.Fatal(err)
	}
	if d := untilServes(t, replicaB, ws, "openai", hosted); d > time.Second {
		t.Errorf("a purge reached replica B after %v", d)
	}
}

func TestListenerReconnectsAndFlushesAfterItsConnectionIsKilled(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws := e.workspc
	replicaB := e.another(t, nil)
	startedB := listen(t, e, replicaB)
	k1, k2 := newKey(t, "anthropic"), newKey(t, "anthropic")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), Credential: providers.APIKey(k1)}); err != nil {
		t.Fatal(err)
	}
	untilServes(t, replicaB, ws, "anthropic", k1)
	// Kill B's LISTEN connection from the server side.
	admin := testenv.NewPoolFor(t, e.dbURL)
	tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'listen%'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate the listener's connection: %v (%d rows)", err, tag.RowsAffected())
	}
	select {
	case <-startedB:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not reconnect within 10 s")
	}
	// B caches the key again; then invalidation must work again.
	if r, _ := replicaB.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "anthropic"}); r.APIKey() != k1 {
		t.Fatal("B does not serve the key after the reconnect")
	}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "anthropic", broker.DefaultKeyID), Credential: providers.APIKey(k2)}); err != nil {
		t.Fatal(err)
	}
	if d := untilServes(t, replicaB, ws, "anthropic", k2); d > time.Second {
		t.Errorf("after the reconnect a rotation reached B after %v", d)
	}
}

// TestPoolChangesReachAnotherReplicaWithinASecond: a key disabled, an
// organization's key added and a settings change made on one replica steer
// another replica's resolves within a second.
func TestPoolChangesReachAnotherReplicaWithinASecond(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws, org := e.workspc, "org-"+e.workspc
	replicaB := e.another(t, nil)
	listen(t, e, e.b)
	listen(t, e, replicaB)
	hosted, own, shared := newKey(t, "mistral"), newKey(t, "mistral"), newKey(t, "mistral")
	e.setHosted(t, "mistral", hosted)
	pool := broker.WorkspaceScope(ws).Pool("mistral")
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "own", Credential: providers.APIKey(own)}); err != nil {
		t.Fatal(err)
	}
	added := untilServes(t, replicaB, ws, "mistral", own)
	disabled := broker.KeyDisabled
	if _, err := e.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: pool.Key("own"), State: &disabled}); err != nil {
		t.Fatal(err)
	}
	off := untilServes(t, replicaB, ws, "mistral", hosted)
	if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.OrganizationScope(org).Pool("mistral"), KeyID: "shared", Credential: providers.APIKey(shared)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, Organization: &org, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	inherited := untilServes(t, replicaB, ws, "mistral", shared)
	t.Logf("replica B served a new key after %v, stopped serving a disabled one after %v, served an inherited one after %v", added, off, inherited)
	for what, d := range map[string]time.Duration{"a new key": added, "a disabled key": off, "an inherited key": inherited} {
		if d > time.Second {
			t.Errorf("%s reached replica B after %v, want within 1 s", what, d)
		}
	}
}
