package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// TestVaultHAFailover runs the broker against a standby of a 3-node Raft
// cluster (standing in for a load balancer) and kills the active node under
// resolve and write load: writes come back once a new node is active,
// cached keys serve throughout (stale-if-error), and no acknowledged write
// is lost.
func TestVaultHAFailover(t *testing.T) {
	ctx := context.Background()
	cluster, err := testenv.StartVaultCluster(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	if err := devenv.EnableKVv2(ctx, cluster.Nodes[0].Client(), "byok"); err != nil {
		t.Fatal(err)
	}
	// Keep every version, so that each acknowledged write can be checked.
	if _, err := cluster.Nodes[0].Client().Logical().WriteWithContext(ctx, "byok/config", map[string]any{"max_versions": 100000}); err != nil {
		t.Fatal(err)
	}
	standby := cluster.Nodes[1]
	vc, err := vault.New(vault.Config{Address: standby.Addr, Token: cluster.RootToken, Timeout: 2 * time.Second, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	kv := vc.KV("byok")
	st := openStore(t, testenv.DatabaseURL(t))
	reads := &countingReader{KV: kv}
	b, err := broker.New(broker.Config{Reader: reads, Writer: kv, Store: st, Pools: st, Pepper: []byte("ha-test-pepper-0123456789"),
		CacheTTL: 50 * time.Millisecond, StaleIfError: time.Minute, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatalf("write through the standby: %v", err)
	}

	type ack struct {
		version int
		key     string
	}
	var (
		mu           sync.Mutex
		acked        []ack
		writeErrors  atomic.Int64
		resolveFails atomic.Int64
		lastWriteOK  atomic.Int64 // unix nanos
		lastErr      atomic.Value
		// writing is held by the writer during a write: the kill waits for
		// no write to be half done, and for the new version to be cached
		// (a write evicts the cached key; a resolve reads it back).
		writing        sync.Mutex
		lastResolveErr atomic.Value
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // writer
		for {
			select {
			case <-stop:
				return
			default:
			}
			k := newKey(t, "openai")
			writing.Lock()
			res, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID), Credential: providers.APIKey(k)})
			writing.Unlock()
			if err != nil {
				lastErr.Store(err.Error())
				writeErrors.Add(1)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked = append(acked, ack{res.Meta.Version, k})
			mu.Unlock()
			lastWriteOK.Store(time.Now().UnixNano())
			time.Sleep(20 * time.Millisecond)
		}
	})
	for range 3 { // resolvers
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: "ws", Provider: "openai"}); err != nil {
					resolveFails.Add(1)
					lastResolveErr.Store(err.Error())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	active := cluster.Active(ctx)
	if active < 0 || active == 1 {
		t.Fatalf("active node %d; the broker must talk to a standby", active)
	}
	writing.Lock()
	if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: "ws", Provider: "openai"}); err != nil {
		t.Fatalf("resolve before the kill: %v", err)
	}
	killed := time.Now()
	cluster.Nodes[active].Kill()
	writing.Unlock()

	// Recovery: a write acknowledged after the kill, and resolves working.
	var recovery time.Duration
	for {
		if ts := lastWriteOK.Load(); ts > killed.UnixNano() {
			if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: "ws", Provider: "openai"}); err == nil {
				recovery = time.Since(killed)
				break
			}
		}
		if time.Since(killed) > 90*time.Second {
			t.Fatalf("no acknowledged write within 90 s of killing the active node; last error: %v; active node now %d", lastErr.Load(), cluster.Active(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	// No acknowledged write is lost: each version holds what was written.
	mu.Lock()
	defer mu.Unlock()
	// A standby can still point at the dead leader for a moment after the
	// election (it answers with a redirect there, or fails to forward): a
	// read that finds Vault unavailable is retried, a wrong or missing
	// value fails at once.
	path := broker.WorkspaceKey("ws", "openai", broker.DefaultKeyID).VaultPath()
	unavailableReads := 0
	for _, a := range acked {
		var s vault.Secret
		var err error
		waitFor(t, 30*time.Second, fmt.Sprintf("Vault answers for version %d", a.version), func() bool {
			s, err = kv.GetVersion(ctx, path, a.version)
			if errors.Is(err, vault.ErrUnavailable) {
				unavailableReads++
				return false
			}
			return true
		})
		if err != nil || s.Data["api_key"] != a.key {
			t.Fatalf("acknowledged version %d lost after failover: %v", a.version, err)
		}
	}
	last := acked[len(acked)-1]
	if r, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: "ws", Provider: "openai"}); err != nil || r.Version < last.version {
		t.Fatalf("after failover resolve gives version %d, last acknowledged %d (%v)", r.Version, last.version, err)
	}
	// Cached keys serve throughout (stale-if-error), and no answer of a
	// node in transition was taken for "no such key".
	if n := resolveFails.Load(); n != 0 {
		t.Fatalf("%d resolves failed during the election (last: %v); the cached key should have served", n, lastResolveErr.Load())
	}
	if n := reads.notFound.Load(); n != 0 {
		t.Fatalf("%d reads of a key that exists were answered not found during the election", n)
	}
	t.Logf("Vault HA failover: writes and resolves again %v after the active node was killed; %d acknowledged writes all intact; %d failed writes and %d failed resolves during the election (%d Vault reads unavailable, served from the cache); %d checking reads found Vault unavailable and were retried",
		recovery.Round(time.Millisecond), len(acked), writeErrors.Load(), resolveFails.Load(), reads.unavailable.Load(), unavailableReads)
}

// countingReader counts how the broker's Vault reads end.
type countingReader struct {
	*vault.KV
	notFound, unavailable atomic.Int64
}

func (r *countingReader) Get(ctx context.Context, path string) (vault.Secret, error) {
	s, err := r.KV.Get(ctx, path)
	switch {
	case errors.Is(err, vault.ErrNotFound):
		r.notFound.Add(1)
	case errors.Is(err, vault.ErrUnavailable):
		r.unavailable.Add(1)
	}
	return s, err
}
