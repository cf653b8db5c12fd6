package broker_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
)

// BenchmarkResolveHit is the execution path's common case: the key is in
// memory.
func BenchmarkResolveHit(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, nil)
	if _, err := e.b.SetKey(ctx, broker.SetKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), APIKey: newKey(b, "openai")}); err != nil {
		b.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil {
		b.Fatal(err)
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
}

// BenchmarkResolveMiss pays a real Vault read per call: the entry is
// evicted before each resolve.
func BenchmarkResolveMiss(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, nil)
	if _, err := e.b.SetKey(ctx, broker.SetKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), APIKey: newKey(b, "openai")}); err != nil {
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
// (each a Vault read that finds no key, then the cached hosted key) and
// reports the heap the cache keeps afterwards: bounded by
// MaxNegativeEntries (default 10,000) however large b.N grows
// (docs/benchmarks.md: run with -benchtime 300000x).
func BenchmarkMadeUpWorkspaceIDs(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, func(c *broker.Config) { c.NegativeCacheTTL = time.Hour })
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
