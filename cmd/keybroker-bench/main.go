// Command keybroker-bench measures keybroker against what a team would do
// without it, side by side in one run, on real servers it starts itself: a
// Vault dev server, PostgreSQL, `keybroker serve --mode resolver` as its own
// process, and two reference servers (this program, re-executed):
//
//	0   the HTTP floor: net/http answering a constant
//	1   keybroker HTTP resolve, cache hit (uniform and Zipf-skewed keys)
//	2   a direct Vault KV v2 read of the same paths with a reader token
//	3a  the platform-style lookup in process: one PostgreSQL row, AES-256-GCM
//	3b  the same lookup behind an HTTP hop like keybroker's
//	4   in-process broker.Resolve, hit and miss (ns/op, allocs/op)
//	5   a cold herd: 1,000 concurrent resolves of one uncached key
//	6   Vault reads per second under scenario 1's load
//	7   memory with 100,000 cached keys
//	8   the cost of an admin write
//	9   one caller getting a key: the Go library, HTTP, Vault
//	10  a provider call straight to a stand-in (a), through keybroker's
//	    credential proxy (b), and a Bedrock call through the proxy, which
//	    re-signs it with SigV4 and an STS session (c), and the call of (b)
//	    through a bare Go httputil.ReverseProxy that adds the key, as its
//	    own process: the floor of any Go proxy (d), with PostgreSQL's CPU
//	    per call counted beside keybroker's
//	11  derived credentials: a resolve hit of a Bedrock key beside an
//	    api_key hit, and a cold herd of a Bedrock key (STS calls)
//
// wrk drives the HTTP scenarios (Go's client with --load go). Scenarios 0–3
// run interleaved for several rounds and the table quotes medians; a sweep
// over the number of connections finds each one's throughput under a p99
// goal. Run it with `make bench` (see docs/benchmarks.md).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// productionGC is how the Helm chart runs every replica (goRuntime in
// deploy/helm/keybroker/values.yaml): keybroker is measured as production
// runs it, unless --keybroker-env names GOGC or GOMEMLIMIT.
const productionGC = "GOGC=400 GOMEMLIMIT=450MiB"

// withProductionGC adds productionGC's variables that env does not name.
func withProductionGC(env []string) []string {
	var out []string
	for _, v := range strings.Fields(productionGC) {
		name, _, _ := strings.Cut(v, "=")
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") }) {
			out = append(out, v)
		}
	}
	return append(out, env...)
}

type options struct {
	workspaces      int
	duration        time.Duration
	concurrency     int
	rounds          int
	ttl             time.Duration
	steadyTTL       time.Duration
	jsonOut         bool
	cpuProfile      string
	profileScenario string
	load            string
	wrkThreads      int
	sweepDuration   time.Duration
	p99Goal         time.Duration
	keybrokerBin    string
	accessLog       string
	keybrokerEnv    []string
}

func main() {
	if kind := os.Getenv(envReference); kind != "" {
		// A reference server of scenarios 0 and 3b (see child.go).
		if err := serveReference(kind); err != nil {
			fmt.Fprintln(os.Stderr, "keybroker-bench reference:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.workspaces, "workspaces", 1000, "workspaces to load (each gets 5 provider keys)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run")
	flag.IntVar(&o.concurrency, "concurrency", 32, "concurrent connections of the load generator")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds of scenarios 1-3 (medians are quoted)")
	flag.DurationVar(&o.ttl, "ttl", 30*time.Second, "keybroker's cache TTL in scenarios 1-3 (production's default)")
	flag.DurationVar(&o.steadyTTL, "steady-ttl", 2*time.Second, "the cache TTL of scenario 6, which runs for three of them and expects about keys/TTL Vault reads per second")
	flag.BoolVar(&o.jsonOut, "json", false, "print JSON instead of a table")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the server process of --cpuprofile-scenario during its first run to this file (go tool pprof FILE)")
	flag.StringVar(&o.profileScenario, "cpuprofile-scenario", "1a", "the scenario of --cpuprofile: 1a (the resolver), 10b (the credential proxy), or their floors 0 and 10d")
	flag.StringVar(&o.load, "load", "auto", "load generator of the HTTP scenarios: wrk, go (Go's HTTP client), or auto (wrk when it is installed)")
	flag.IntVar(&o.wrkThreads, "wrk-threads", 2, "wrk's threads")
	flag.DurationVar(&o.sweepDuration, "sweep-duration", 3*time.Second, "length of each run of the capacity sweep (concurrency 1, 2, 4, ... up to --concurrency); 0 skips the sweep")
	flag.DurationVar(&o.p99Goal, "p99-goal", 2*time.Millisecond, "the latency goal of the capacity sweep")
	flag.StringVar(&o.keybrokerBin, "keybroker-bin", "", "the keybroker binary to benchmark (default: build cmd/keybroker)")
	flag.StringVar(&o.accessLog, "access-log", "all", "keybroker's --access-log: all (production's default) or errors")
	flag.Func("keybroker-env", "NAME=VALUE added to keybroker's environment, e.g. GOGC=100 for Go's default collector (repeatable; GOGC and GOMEMLIMIT default to the Helm chart's "+productionGC+")", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		o.keybrokerEnv = append(o.keybrokerEnv, v)
		return nil
	})
	var so scaleOptions
	var scale bool
	flag.BoolVar(&scale, "scale", false, "run the platform-scale scenario instead (docs/benchmarks.md): a replica over --scale-workspaces workspaces of keys beside one over the resolved keys alone")
	flag.IntVar(&so.workspaces, "scale-workspaces", 200_000, "workspaces of the scale scenario")
	flag.IntVar(&so.keysPerWorkspace, "scale-keys-per-workspace", 5, "keys per workspace of the scale scenario")
	flag.IntVar(&so.organizations, "scale-organizations", 1000, "organizations of the scale scenario (three keys each)")
	flag.IntVar(&so.resolvable, "scale-resolved-keys", 1000, "keys the scale scenario resolves (the only ones with secrets in Vault)")
	var bo burstOptions
	var burst bool
	flag.BoolVar(&burst, "burst", false, "run the burst scenario instead (docs/benchmarks.md): --burst-writes key writes through one admin replica while --burst-replicas serve resolves")
	flag.IntVar(&bo.writes, "burst-writes", 50_000, "key writes of the burst scenario")
	flag.IntVar(&bo.tracked, "burst-tracked", 1000, "writes of the burst that replace a key every serving replica holds, whose lag is measured")
	flag.IntVar(&bo.replicas, "burst-replicas", 3, "replicas serving resolves during the burst")
	flag.IntVar(&bo.writers, "burst-writers", 16, "concurrent writers of the burst")
	flag.StringVar(&so.heapProfile, "scale-heap-profile", "", "write the scale scenario's large replica's heap profile, after the warming, to this file")
	flag.IntVar(&so.warm, "scale-warm-workspaces", 40_000, "workspaces whose pools the scale scenario's large replica is then made to hold, to measure a held pool's cost")
	flag.Parse()
	o.keybrokerEnv = withProductionGC(o.keybrokerEnv)
	if !slices.Contains([]string{"0", "1a", "10b", "10d"}, o.profileScenario) {
		fmt.Fprintln(os.Stderr, "keybroker-bench: --cpuprofile-scenario is 0 (the HTTP floor), 1a (the resolver), 10b (the credential proxy) or 10d (the Go proxy floor)")
		os.Exit(2)
	}
	if o.load != "auto" && o.load != "wrk" && o.load != "go" {
		fmt.Fprintln(os.Stderr, "keybroker-bench: --load must be auto, wrk or go")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var rep interface{ print(io.Writer) }
	var err error
	switch {
	case burst:
		rep, err = runBurst(ctx, o, bo, log)
	case scale:
		rep, err = runScale(ctx, o, so, log)
	default:
		rep, err = run(ctx, o, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keybroker-bench:", err)
		os.Exit(1)
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	rep.print(os.Stdout)
}
