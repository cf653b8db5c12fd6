package broker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/devenv"
	"github.com/keybroker/keybroker/internal/testenv"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// TestVaultOutageServesStaleThenRecovers stops a real Vault server (file
// storage, so the same Vault comes back) under resolve load.
func TestVaultOutageServesStaleThenRecovers(t *testing.T) {
	ctx := context.Background()
	vs, err := devenv.StartVaultServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vs.Stop)
	if err := devenv.EnableKVv2(ctx, vs.Client(), "byok"); err != nil {
		t.Fatal(err)
	}
	vc, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken, Timeout: time.Second, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	kv := vc.KV("byok")
	st, err := store.Open(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Reader: kv, Writer: kv, Store: st, Pepper: []byte("outage-test-pepper-0123"),
		CacheTTL: 200 * time.Millisecond, StaleIfError: time.Minute, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := newKey(t, "openai"), newKey(t, "openai")
	if _, err := b.SetKey(ctx, alice, "ws", "openai", k1, 0); err != nil {
		t.Fatal(err)
	}
	if r, err := b.Resolve(ctx, "ws", "openai"); err != nil || r.APIKey != k1 {
		t.Fatalf("before the outage: %v", err)
	}

	var failures, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r, err := b.Resolve(ctx, "ws", "openai"); err != nil || (r.APIKey != k1 && r.APIKey != k2) {
					failures.Add(1)
				} else {
					served.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}

	vs.Kill()
	time.Sleep(600 * time.Millisecond) // well past the 200 ms TTL
	if _, err := b.Resolve(ctx, "ws", "anthropic"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("an uncached key during the outage: %v, want ErrUnavailable", err)
	}
	servedDuringOutage := served.Load()

	if err := vs.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// A write behind the broker's back, then: how long until it serves the
	// new version without a restart of its own?
	if _, err := vs.Client().KVv2("byok").Put(ctx, vault.WorkspaceKeyPath("ws", "openai"), map[string]any{vault.ValueField: k2}); err != nil {
		t.Fatal(err)
	}
	for {
		if r, err := b.Resolve(ctx, "ws", "openai"); err == nil && r.APIKey == k2 {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatal("the broker did not recover within 10 s of Vault's restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	recovery := time.Since(restarted)
	close(stop)
	wg.Wait()
	t.Logf("stale-if-error: %d resolves served, %d failed across the outage; fresh again %v after Vault was unsealed",
		served.Load(), failures.Load(), recovery)
	if failures.Load() != 0 {
		t.Fatalf("%d resolves of a cached key failed during the outage", failures.Load())
	}
	if servedDuringOutage == 0 {
		t.Fatal("no resolve ran during the outage: the test proved nothing")
	}
}
