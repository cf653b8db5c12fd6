package broker_test

import (
	"context"
	"testing"

	"github.com/keybroker/keybroker/broker"
)

// BenchmarkResolveHit is the execution path's common case: the key is in
// memory.
func BenchmarkResolveHit(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, nil)
	if _, err := e.b.SetKey(ctx, broker.SetKeyRequest{Actor: alice, Workspace: e.workspc, Provider: "openai", APIKey: newKey(b, "openai")}); err != nil {
		b.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, e.workspc, "openai"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.b.Resolve(ctx, e.workspc, "openai"); err != nil {
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
	if _, err := e.b.SetKey(ctx, broker.SetKeyRequest{Actor: alice, Workspace: e.workspc, Provider: "openai", APIKey: newKey(b, "openai")}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.b.Evict(e.workspc, "openai")
		if _, err := e.b.Resolve(ctx, e.workspc, "openai"); err != nil {
			b.Fatal(err)
		}
	}
}
