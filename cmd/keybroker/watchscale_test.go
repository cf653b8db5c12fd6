package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/client/resolver"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// resolvesPerSecond runs 16 callers against the resolve route for d.
func resolvesPerSecond(t *testing.T, c *client.Client, d time.Duration) float64 {
	t.Helper()
	var n atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := c.Resolve(context.Background(), "ws1", "openai"); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// TestInvalidationReachesAThousandLibraryClients connects 1,000 library
// Resolvers (1,000 watch streams) to a resolver replica, rotates the key
// through the admin replica, and measures how long each takes to drop the
// old key; and what the watchers cost the server in memory and in
// resolves per second. The figures are logged (docs/benchmarks.md); the
// test asserts that every client drops the key and serves the new one.
func TestInvalidationReachesAThousandLibraryClients(t *testing.T) {
	ctx := context.Background()
	g := newApproleGround(t, nil)
	adminAddr, _ := startServe(t, g.modeEnv(t, "admin"))
	// One token opens all 1,000 streams here: the caps (8 a token, 1,000 a
	// replica by default) are raised for this measurement.
	resolverAddr, _, proc := startServeProcess(t, g.modeEnv(t, "resolver", "KEYBROKER_RATE_LIMIT_PER_TOKEN=1000000", "KEYBROKER_RATE_LIMIT_BURST=1000000",
		"KEYBROKER_WATCH_STREAMS_PER_TOKEN=2000", "KEYBROKER_WATCH_STREAMS_PER_REPLICA=2000"))
	admin, _ := client.New(client.Config{Address: "http://" + adminAddr, Token: g.opToken})
	first := "sk-proj-scale-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, first, 0); err != nil {
		t.Fatal(err)
	}
	api, _ := client.New(client.Config{Address: "http://" + resolverAddr, Token: g.resolverToken})
	servesKey(t, api, first)
	before := rssKB(t, proc.Pid)
	quiet := resolvesPerSecond(t, api, 2*time.Second)

	const n = 1000
	rs := make([]*resolver.Resolver, n)
	for i := range rs {
		r, err := resolver.New(resolver.Config{Client: api})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		rs[i] = r
	}
	waitUntil(t, "1,000 streams connect", 60*time.Second, func() bool {
		return !slices.ContainsFunc(rs, func(r *resolver.Resolver) bool { return !r.Connected() })
	})
	for _, r := range rs {
		if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || got.APIKey != first {
			t.Fatalf("warm-up resolve: %v", err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	with := rssKB(t, proc.Pid)
	busy := resolvesPerSecond(t, api, 2*time.Second)

	second := "sk-proj-scale-" + testenv.RandomID(t) + testenv.RandomID(t)
	reach := make([]time.Duration, n)
	start := time.Now()
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, second, 0); err != nil {
		t.Fatal(err)
	}
	left := n
	for left > 0 {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%d of %d clients still hold the old key after 30 s", left, n)
		}
		for i, r := range rs {
			if reach[i] == 0 && r.Len() == 0 {
				reach[i] = time.Since(start)
				left--
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	for _, r := range rs {
		if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || got.APIKey != second {
			t.Fatalf("after the rotation a client resolves %v", err)
		}
	}
	slices.Sort(reach)
	q := func(p float64) time.Duration { return reach[int(p*float64(n-1))].Round(100 * time.Microsecond) }
	t.Logf("invalidation reach over %d library clients (rotation through the admin replica, watchers on the resolver replica): p50 %v, p90 %v, p99 %v, max %v",
		n, q(0.5), q(0.9), q(0.99), reach[n-1].Round(100*time.Microsecond))
	t.Logf("server memory with %d watchers: RSS %d kB -> %d kB, %.1f kB per watcher", n, before, with, float64(with-before)/n)
	t.Logf("resolves per second on the resolver replica (16 callers, HTTP, same machine): %.0f with no watcher, %.0f with %d watchers connected (%.2fx)",
		quiet, busy, n, busy/quiet)
}
