package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// loadResult is one scenario run of the load generator.
type loadResult struct {
	Requests   int           `json:"requests"`
	Errors     int           `json:"errors"`
	Seconds    float64       `json:"seconds"`
	Throughput float64       `json:"throughput_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	// ServerCPU is the CPU time (user and system) the server process spent
	// per request during the run: 0 when the server is not one of the
	// benchmark's own processes.
	ServerCPU time.Duration `json:"server_cpu_per_request_ns,omitempty"`
	// PostgresCPU is the CPU time PostgreSQL spent per request during the
	// run (its postmaster and backends; whatever the run made it do, such
	// as the records of proxied calls).
	PostgresCPU time.Duration `json:"postgres_cpu_per_request_ns,omitempty"`
}

// keyPicker chooses which (workspace, provider) a request asks for.
type keyPicker func(r *rand.Rand) int

func uniform(n int) keyPicker { return func(r *rand.Rand) int { return r.IntN(n) } }

// zipf picks key i with probability ∝ 1/(i+1)^1.1: a few hot keys, a long
// tail, as real workspaces are.
func zipf(n int) func(seed uint64) keyPicker {
	return func(seed uint64) keyPicker {
		z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b9)), 1.1, 1, uint64(n-1))
		return func(*rand.Rand) int { return int(z.Uint64()) }
	}
}

// runLoad runs do from concurrency workers for duration and measures each
// call. do gets the worker's random source and the key index to ask for.
func runLoad(ctx context.Context, concurrency int, duration time.Duration, pick func(worker int) keyPicker, do func(ctx context.Context, key int) error) loadResult {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	lat := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		lat[w] = make([]time.Duration, 0, 1<<16)
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w)+1, 42))
			p := pick(w)
			for ctx.Err() == nil {
				k := p(r)
				t0 := time.Now()
				err := do(ctx, k)
				d := time.Since(t0)
				if ctx.Err() != nil {
					return // cut off by the end of the run: not a result
				}
				if err != nil {
					errs[w]++
					continue
				}
				lat[w] = append(lat[w], d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	res := loadResult{Seconds: elapsed.Seconds()}
	for w := range concurrency {
		all = append(all, lat[w]...)
		res.Errors += errs[w]
	}
	slices.Sort(all)
	res.Requests = len(all)
	res.Throughput = float64(len(all)) / elapsed.Seconds()
	if len(all) > 0 {
		res.P50, res.P90, res.P99 = all[len(all)*50/100], all[len(all)*90/100], all[len(all)*99/100]
	}
	return res
}
