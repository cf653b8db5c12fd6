package broker_test

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// BenchmarkResolveHit is the execution path's common case: the key is in
// memory. keys=1 is a workspace with one key; keys=10 a full pool of ten
// keys of equal priority, which take turns (each cached).
func BenchmarkResolveHit(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ctx := context.Background()
			e := newEnv(b, nil)
			pool := broker.WorkspaceScope(e.workspc).Pool("openai")
			for i := range n {
				if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "k" + strconv.Itoa(i), Credential: providers.APIKey(newKey(b, "openai"))}); err != nil {
					b.Fatal(err)
				}
			}
			for range n { // every key of the pool read once
				if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkResolveMiss pays a real Vault read per call: the entry is
// evicted before each resolve.
func BenchmarkResolveMiss(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, nil)
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(b, "openai"))}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.b.Evict(broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID))
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMadeUpWorkspaceIDs resolves b.N distinct made-up workspace ids
// and reports the heap the cache keeps afterwards. With pools in memory a
// made-up id reaches neither Vault nor the cache; without a pool store
// (pools=off) each is a Vault read that finds no key, bounded by
// MaxNegativeEntries (default 10,000) however large b.N grows
// (docs/benchmarks.md: run with -benchtime 300000x).
func BenchmarkMadeUpWorkspaceIDs(b *testing.B) {
	for _, pools := range []bool{true, false} {
		name := "pools=on"
		if !pools {
			name = "pools=off"
		}
		b.Run(name, func(b *testing.B) { benchmarkMadeUpWorkspaceIDs(b, pools) })
	}
}

func benchmarkMadeUpWorkspaceIDs(b *testing.B, pools bool) {
	ctx := context.Background()
	e := newEnv(b, func(c *broker.Config) {
		c.NegativeCacheTTL = time.Hour
		if !pools {
			c.Pools = nil
		}
	})
	e.setHosted(b, "openai", newKey(b, "openai"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: "made-up-" + strconv.Itoa(i), Provider: "openai"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	keys, negative := e.b.CacheSize()
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1e6, "heap-MB-kept")
	b.ReportMetric(float64(negative), "negative-entries")
	b.ReportMetric(float64(keys), "keys")
}

// BenchmarkResolveDerivedHit puts a hit of a derived credential (minted
// once, then served from memory) beside a hit of an api_key key, in one
// run (docs/credentials.md: the goal is within 10 %).
func BenchmarkResolveDerivedHit(b *testing.B) {
	for _, kind := range []string{"api_key", "derived"} {
		b.Run("kind="+kind, func(b *testing.B) {
			ctx := context.Background()
			clock := newTestClock()
			e := newEnv(b, onDerivingCloud(clock, newMinter(b, clock), nil))
			req := broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}
			if kind == "api_key" {
				if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(b, "openai"))}); err != nil {
					b.Fatal(err)
				}
			} else {
				e.putCloud(b, broker.DefaultKeyID, cloudCredential(b))
				req.Provider = "testcloud"
			}
			if _, err := e.b.Resolve(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.b.Resolve(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkColdHerdOfADerivedKey: each op drops the key's cached answer
// and minted credential, then 100 resolves of it run at once; mints/op
// is how many mints the herd made (1 with one mint per key).
func BenchmarkColdHerdOfADerivedKey(b *testing.B) {
	ctx := context.Background()
	clock := newTestClock()
	m := newMinter(b, clock)
	e := newEnv(b, onDerivingCloud(clock, m, nil))
	e.putCloud(b, broker.DefaultKeyID, cloudCredential(b))
	req := broker.ResolveRequest{Workspace: e.workspc, Provider: "testcloud"}
	ref := broker.WorkspaceKey(e.workspc, "testcloud", broker.DefaultKeyID)
	b.ResetTimer()
	for b.Loop() {
		e.b.Evict(ref)
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if _, err := e.b.Resolve(ctx, req); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(m.calls.Load())/float64(b.N), "mints/op")
}
