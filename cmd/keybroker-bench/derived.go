package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/vault"
)

// derivedCosts is scenario 11: what a derived credential costs on the
// execution path, side by side in one run. A hit resolves the Bedrock key
// (its answer is the cached STS session) against an api_key hit of the
// same workspace, interleaved over five rounds (medians); a cold herd resolves
// the Bedrock key from 1,000 goroutines on a fresh broker and counts the
// STS calls the stand-in answered.
type derivedCosts struct {
	DerivedHitNs     float64 `json:"derived_hit_ns_per_op"`
	DerivedHitAllocs int64   `json:"derived_hit_allocs_per_op"`
	APIKeyHitNs      float64 `json:"api_key_hit_ns_per_op"`
	APIKeyHitAllocs  int64   `json:"api_key_hit_allocs_per_op"`
	ColdHerdMints    int     `json:"cold_herd_sts_calls"`
}

// ratio is the derived hit's time over the api_key hit's.
func (d derivedCosts) ratio() float64 {
	if d.APIKeyHitNs == 0 {
		return 0
	}
	return d.DerivedHitNs / d.APIKeyHitNs
}

func (g *ground) derivedCosts(ctx context.Context) (derivedCosts, error) {
	ws := g.keys[0][0]
	apiKey := broker.ResolveRequest{Workspace: ws, Provider: "openai"}
	derived := broker.ResolveRequest{Workspace: ws, Provider: "bedrock"}
	for _, req := range []broker.ResolveRequest{apiKey, derived} {
		res, err := g.b.Resolve(ctx, req)
		if err != nil {
			return derivedCosts{}, fmt.Errorf("resolve %s: %w", req.Provider, err)
		}
		if req.Provider == "bedrock" && res.ExpiresAt.IsZero() {
			return derivedCosts{}, fmt.Errorf("the Bedrock key was handed out without an expiry: not a derived credential")
		}
	}
	var failed error
	var mu sync.Mutex
	bench := func(req broker.ResolveRequest) testing.BenchmarkResult {
		return testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.b.Resolve(ctx, req); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					b.FailNow()
				}
			}
		})
	}
	var apiNs, derivedNs []float64
	var d derivedCosts
	for range 5 {
		a, r := bench(apiKey), bench(derived)
		apiNs, derivedNs = append(apiNs, float64(a.NsPerOp())), append(derivedNs, float64(r.NsPerOp()))
		d.APIKeyHitAllocs, d.DerivedHitAllocs = a.AllocsPerOp(), r.AllocsPerOp()
	}
	if failed != nil {
		return derivedCosts{}, fmt.Errorf("resolve during the benchmark: %w", failed)
	}
	slices.Sort(apiNs)
	slices.Sort(derivedNs)
	d.APIKeyHitNs, d.DerivedHitNs = apiNs[len(apiNs)/2], derivedNs[len(derivedNs)/2]

	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken})
	if err != nil {
		return derivedCosts{}, err
	}
	fresh, err := broker.New(broker.Config{Reader: reader.KV("byok"), Logger: slog.New(slog.DiscardHandler), MintHTTP: g.aws.Client(), MintEndpoints: g.awsEndpoints()})
	if err != nil {
		return derivedCosts{}, err
	}
	before := g.aws.STSCalls()
	if err := herd(ctx, fresh, derived); err != nil {
		return derivedCosts{}, err
	}
	d.ColdHerdMints = g.aws.STSCalls() - before
	return d, nil
}
