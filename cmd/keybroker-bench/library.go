package main

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/client/resolver"
	"github.com/keybroker/keybroker/vault"
)

// libraryCosts is scenario 9: one caller's cost of getting a key, side by
// side in one run with Go's benchmark harness — from the Go library's
// memory (client/resolver, a hit), from keybroker over HTTP (the Go
// client, a kept-alive connection, a cache hit on the server), and
// straight from Vault (a KV v2 read with the reader's token).
type libraryCosts struct {
	ResolverHitNs     float64 `json:"resolver_hit_ns_per_op"`
	ResolverHitAllocs int64   `json:"resolver_hit_allocs_per_op"`
	HTTPResolveNs     float64 `json:"http_resolve_ns_per_op"`
	HTTPResolveAllocs int64   `json:"http_resolve_allocs_per_op"`
	VaultReadNs       float64 `json:"vault_read_ns_per_op"`
	VaultReadAllocs   int64   `json:"vault_read_allocs_per_op"`
}

func (g *ground) libraryCosts(ctx context.Context) (libraryCosts, error) {
	ws, p := g.keys[0][0], g.keys[0][1]
	c, err := client.New(client.Config{Address: g.url, Token: g.resolverToken})
	if err != nil {
		return libraryCosts{}, err
	}
	r, err := resolver.New(resolver.Config{Client: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return libraryCosts{}, err
	}
	defer r.Close()
	for deadline := time.Now().Add(10 * time.Second); !r.Connected(); {
		if time.Now().After(deadline) {
			return libraryCosts{}, fmt.Errorf("the Go library's watch stream did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := r.Resolve(ctx, ws, p, ""); err != nil {
		return libraryCosts{}, fmt.Errorf("library resolve: %w", err)
	}
	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken})
	if err != nil {
		return libraryCosts{}, err
	}
	kv, ref := reader.KV("byok"), broker.WorkspaceKey(ws, p, broker.DefaultKeyID)
	var failed error
	bench := func(get func() error) testing.BenchmarkResult {
		return testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := get(); err != nil {
					failed = err
					b.Fatal(err)
				}
			}
		})
	}
	hit := bench(func() error { _, err := r.Resolve(ctx, ws, p, ""); return err })
	httpResolve := bench(func() error {
		_, err := c.ResolveFor(ctx, client.ResolveRequest{Workspace: ws, Provider: p})
		return err
	})
	vaultRead := bench(func() error { _, err := kv.Get(ctx, ref.VaultPath()); return err })
	if failed != nil {
		return libraryCosts{}, failed
	}
	if r.Requests() != 1 {
		return libraryCosts{}, fmt.Errorf("the library sent %d resolve requests for one key, want 1", r.Requests())
	}
	return libraryCosts{
		ResolverHitNs: float64(hit.T.Nanoseconds()) / float64(hit.N), ResolverHitAllocs: hit.AllocsPerOp(),
		HTTPResolveNs: float64(httpResolve.NsPerOp()), HTTPResolveAllocs: httpResolve.AllocsPerOp(),
		VaultReadNs: float64(vaultRead.NsPerOp()), VaultReadAllocs: vaultRead.AllocsPerOp(),
	}, nil
}
