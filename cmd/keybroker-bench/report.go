package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// scenarioResult is the median of a scenario's rounds.
type scenarioResult struct {
	ID     string       `json:"id"`
	Name   string       `json:"name"`
	Median loadResult   `json:"median"`
	Rounds []loadResult `json:"rounds"`
}

type report struct {
	Machine          string           `json:"machine"`
	Keys             int              `json:"keys"`
	Concurrency      int              `json:"concurrency"`
	Duration         string           `json:"duration_per_run"`
	CacheTTL         string           `json:"cache_ttl"`
	LoadGenerator    string           `json:"load_generator"`
	AnswerBytes      int              `json:"answer_bytes"`
	HitRunMisses     int64            `json:"cache_misses_during_scenario_1"`
	AccessLog        string           `json:"keybroker_access_log"`
	KeybrokerEnv     []string         `json:"keybroker_env,omitempty"`
	Load             []scenarioResult `json:"load"`
	RatioVault       float64          `json:"ratio_keybroker_vs_vault"`
	RatioPlatform    float64          `json:"ratio_keybroker_vs_platform"`
	RatioPlatformHop float64          `json:"ratio_keybroker_vs_platform_http"`
	RatioFloor       float64          `json:"ratio_http_floor_vs_platform"`
	P99Goal          time.Duration    `json:"p99_goal_ns"`
	Capacity         []capacity       `json:"capacity_at_p99_goal"`
	HitNs            float64          `json:"inprocess_hit_ns_per_op"`
	HitAllocs        int64            `json:"inprocess_hit_allocs_per_op"`
	MissNs           float64          `json:"inprocess_miss_ns_per_op"`
	MissAllocs       int64            `json:"inprocess_miss_allocs_per_op"`
	Library          libraryCosts     `json:"library"`
	ColdHerdReads    int64            `json:"cold_herd_vault_reads"`
	Derived          derivedCosts     `json:"derived_credentials"`
	VaultReadsPerS   float64          `json:"steady_vault_reads_per_s"`
	KeysPerTTL       float64          `json:"keys_per_ttl_per_s"`
	SteadyTTL        string           `json:"steady_ttl"`
	SteadyThroughput float64          `json:"steady_resolves_per_s"`
	MemRSSMB         float64          `json:"rss_mb_100k_keys"`
	MemHeapMB        float64          `json:"heap_mb_100k_keys"`
	WriteP50         time.Duration    `json:"admin_write_p50_ns"`
	WriteP99         time.Duration    `json:"admin_write_p99_ns"`
}

func median(rounds []loadResult) loadResult {
	pick := func(f func(loadResult) float64) float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return loadResult{
		Requests:    int(pick(func(r loadResult) float64 { return float64(r.Requests) })),
		Errors:      int(pick(func(r loadResult) float64 { return float64(r.Errors) })),
		Seconds:     pick(func(r loadResult) float64 { return r.Seconds }),
		Throughput:  pick(func(r loadResult) float64 { return r.Throughput }),
		P50:         time.Duration(pick(func(r loadResult) float64 { return float64(r.P50) })),
		P90:         time.Duration(pick(func(r loadResult) float64 { return float64(r.P90) })),
		P99:         time.Duration(pick(func(r loadResult) float64 { return float64(r.P99) })),
		ServerCPU:   time.Duration(pick(func(r loadResult) float64 { return float64(r.ServerCPU) })),
		PostgresCPU: time.Duration(pick(func(r loadResult) float64 { return float64(r.PostgresCPU) })),
	}
}

func run(ctx context.Context, o options, log *slog.Logger) (*report, error) {
	g, cleanup, err := setUp(ctx, o, log)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	n := len(g.keys)
	rep := &report{Machine: machine(), Keys: n, Concurrency: o.concurrency, Duration: o.duration.String(), CacheTTL: o.ttl.String(), AccessLog: o.accessLog, KeybrokerEnv: o.keybrokerEnv}

	client := httpClient(o.concurrency)
	same := func(p keyPicker) func(int) keyPicker { return func(int) keyPicker { return p } }
	zipfPick := zipf(n)
	resolve, vaultKV := g.resolveTarget(g.url), g.vaultTarget()
	platformHop, floor := g.resolveTarget(g.platformURL), g.resolveTarget(g.floorURL)
	providerDirect, providerProxied := g.providerTargets()
	bedrockProxied, proxyFloor := g.bedrockTarget(), g.proxyFloorTarget()
	only := func(*rand.Rand) int { return 0 } // scenario 10 sends one call
	scenarios := []scenario{
		{"0", "HTTP floor: net/http answering a constant", same(uniform(n)), &floor, nil, nil, g.floorChild},
		{"1a", "keybroker HTTP resolve, cache hit, uniform", same(uniform(n)), &resolve, nil, g.primary, g.primary},
		{"1b", "keybroker HTTP resolve, cache hit, Zipf", func(w int) keyPicker { return zipfPick(uint64(w) + 7) }, &resolve, nil, g.primary, g.primary},
		{"2", "direct Vault KV v2 read (reader token)", same(uniform(n)), &vaultKV, nil, nil, nil},
		{"3a", "platform-style in process: PostgreSQL row + AES-256-GCM", same(uniform(n)), nil, g.platformRead, nil, nil},
		{"3b", "platform-style behind an HTTP hop", same(uniform(n)), &platformHop, nil, nil, g.platformChild},
		{"10a", "provider stand-in, called directly with the key", same(only), &providerDirect, nil, nil, g.providerChild},
		{"10b", "the same call through keybroker's credential proxy", same(only), &providerProxied, nil, nil, g.proxyChild},
		{"10c", "a Bedrock Converse call through the proxy (SigV4 re-signed)", same(only), &bedrockProxied, nil, nil, g.proxyChild},
		{"10d", "the call of 10b through a bare Go httputil.ReverseProxy adding the key (the Go proxy floor)", same(only), &proxyFloor, nil, nil, g.proxyFloorChild},
	}
	useWrk := o.load == "wrk" || (o.load == "auto" && wrkAvailable())
	rep.AnswerBytes = g.answerBytes
	rep.LoadGenerator = "Go net/http client, one connection per worker"
	if useWrk {
		rep.LoadGenerator = fmt.Sprintf("wrk, %d thread(s)", max(1, min(o.wrkThreads, o.concurrency)))
	}
	wrkDir, err := os.MkdirTemp("", "keybroker-bench-wrk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(wrkDir)
	missMetric := `keybroker_cache_lookups_total{result="miss"}`
	drive := func(s scenario, concurrency int, d time.Duration) (res loadResult, err error) {
		if s.hitsOn != nil {
			// Scenario 1 measures cache hits, and the other scenarios run
			// for longer than the TTL in between: warm every key first, and
			// count the misses that happen anyway.
			if err := warmUp(ctx, goRequests(*s.target, client), n); err != nil {
				return loadResult{}, fmt.Errorf("warm the cache: %w", err)
			}
			before, err := s.hitsOn.metricSum(missMetric)
			if err != nil {
				return loadResult{}, err
			}
			defer func() {
				if after, err := s.hitsOn.metricSum(missMetric); err == nil {
					rep.HitRunMisses += int64(after - before)
				}
			}()
		}
		if g.postgresPID != 0 {
			before := postgresCPU(g.postgresPID)
			defer func() {
				if res.Requests > 0 && before > 0 {
					res.PostgresCPU = (postgresCPU(g.postgresPID) - before) / time.Duration(res.Requests)
				}
			}()
		}
		if s.server != nil {
			before := s.server.cpuTime()
			defer func() {
				if res.Requests > 0 && before > 0 {
					res.ServerCPU = (s.server.cpuTime() - before) / time.Duration(res.Requests)
				}
			}()
		}
		switch {
		case s.target != nil && useWrk:
			return runWrk(ctx, wrkDir, *s.target, sequence(s.pick(0), 200_000), concurrency, o.wrkThreads, d)
		case s.target != nil:
			return runLoad(ctx, concurrency, d, s.pick, goRequests(*s.target, client)), nil
		default:
			return runLoad(ctx, concurrency, d, s.pick, s.do), nil
		}
	}
	// One short untimed pass first: connection pools (PostgreSQL's, in 3a
	// and 3b) open their connections, and the servers warm up.
	for _, s := range scenarios {
		log.Info("warm-up", "scenario", s.id)
		if _, err := drive(s, o.concurrency, time.Second); err != nil {
			return nil, fmt.Errorf("warm-up of scenario %s: %w", s.id, err)
		}
	}
	rep.HitRunMisses = 0
	rounds := make([][]loadResult, len(scenarios))
	for round := range o.rounds {
		for i, s := range scenarios {
			log.Info("run", "round", round+1, "scenario", s.id)
			profiled := make(chan error, 1)
			if round == 0 && s.id == o.profileScenario && o.cpuProfile != "" {
				go func() { profiled <- g.profile(ctx, o.cpuProfile, o.duration) }()
			} else {
				profiled <- nil
			}
			r, err := drive(s, o.concurrency, o.duration)
			if perr := <-profiled; perr != nil {
				log.Warn("no CPU profile", "error", perr)
			}
			if err != nil {
				return nil, fmt.Errorf("scenario %s: %w", s.id, err)
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	for i, s := range scenarios {
		rep.Load = append(rep.Load, scenarioResult{ID: s.id, Name: s.name, Median: median(rounds[i]), Rounds: rounds[i]})
	}
	rep.RatioVault = rep.throughput("1a") / rep.throughput("2")
	rep.RatioPlatform = rep.throughput("1a") / rep.throughput("3a")
	rep.RatioPlatformHop = rep.throughput("1a") / rep.throughput("3b")
	rep.RatioFloor = rep.throughput("0") / rep.throughput("3a")

	// Capacity: each scenario's throughput at the highest load whose p99
	// stays under the goal, interleaved over the same concurrency levels.
	if o.sweepDuration > 0 {
		rep.P99Goal = o.p99Goal
		var swept []scenario
		for _, s := range scenarios {
			if s.id != "1b" {
				swept = append(swept, s)
			}
		}
		points := make([][]sweepPoint, len(swept))
		for c := 1; c <= o.concurrency; c *= 2 {
			for i, s := range swept {
				log.Info("run", "sweep", s.id, "concurrency", c)
				r, err := drive(s, c, o.sweepDuration)
				if err != nil {
					return nil, fmt.Errorf("sweep %s at %d: %w", s.id, c, err)
				}
				points[i] = append(points[i], sweepPoint{Concurrency: c, Throughput: r.Throughput, P50: r.P50, P99: r.P99, Errors: r.Errors,
					ServerCPU: r.ServerCPU, PostgresCPU: r.PostgresCPU})
			}
		}
		for i, s := range swept {
			rep.Capacity = append(rep.Capacity, capacityOf(s.id, s.name, points[i], o.p99Goal))
		}
	}

	// Scenario 6: scenario 1's load on a server with a short TTL, for three
	// TTLs: Vault reads should follow keys/TTL, not the traffic.
	log.Info("run", "scenario", "6 steady Vault load", "ttl", o.steadyTTL)
	steady := g.resolveTarget(g.steady.url)
	steadyScenario := scenario{"6", "steady", same(uniform(n)), &steady, nil, nil, nil}
	if err := warmUp(ctx, goRequests(steady, client), n); err != nil {
		return nil, fmt.Errorf("warm the steady-state server: %w", err)
	}
	vaultReads := func() (float64, error) {
		return g.steady.metricSum(`keybroker_vault_request_duration_seconds_count{operation="kv_get",`)
	}
	before, err := vaultReads()
	if err != nil {
		return nil, fmt.Errorf("read the steady server's metrics: %w", err)
	}
	sr, err := drive(steadyScenario, o.concurrency, 3*o.steadyTTL)
	if err != nil {
		return nil, fmt.Errorf("steady state: %w", err)
	}
	after, err := vaultReads()
	if err != nil {
		return nil, fmt.Errorf("read the steady server's metrics: %w", err)
	}
	rep.VaultReadsPerS = (after - before) / sr.Seconds
	rep.KeysPerTTL = float64(n) / o.steadyTTL.Seconds()
	rep.SteadyTTL, rep.SteadyThroughput = o.steadyTTL.String(), sr.Throughput

	log.Info("run", "scenario", "4 in-process Resolve")
	hit, miss := g.inProcess(ctx, false), g.inProcess(ctx, true)
	rep.HitNs, rep.HitAllocs = float64(hit.NsPerOp()), hit.AllocsPerOp()
	rep.MissNs, rep.MissAllocs = float64(miss.NsPerOp()), miss.AllocsPerOp()
	log.Info("run", "scenario", "9 the Go library, HTTP and Vault")
	if rep.Library, err = g.libraryCosts(ctx); err != nil {
		return nil, err
	}
	log.Info("run", "scenario", "11 derived credentials")
	if rep.Derived, err = g.derivedCosts(ctx); err != nil {
		return nil, err
	}
	log.Info("run", "scenario", "5 cold herd")
	if rep.ColdHerdReads, err = g.coldHerd(ctx); err != nil {
		return nil, err
	}
	log.Info("run", "scenario", "8 admin writes")
	if rep.WriteP50, rep.WriteP99, err = g.adminWrites(ctx, 200); err != nil {
		return nil, err
	}
	log.Info("run", "scenario", "7 memory")
	if rep.MemRSSMB, rep.MemHeapMB, err = memory(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}

// scenario is one row of the load table.
type scenario struct {
	id, name string
	pick     func(worker int) keyPicker
	target   *httpTarget                      // HTTP scenarios: driven by the load generator
	do       func(context.Context, int) error // in-process scenarios
	hitsOn   *child                           // scenario 1: the keybroker whose cache must be warm
	server   *child                           // the server process whose CPU time is counted
}

// sweepPoint is one load level of the capacity sweep.
type sweepPoint struct {
	Concurrency int           `json:"concurrency"`
	Throughput  float64       `json:"throughput_per_s"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	Errors      int           `json:"errors"`
	ServerCPU   time.Duration `json:"server_cpu_per_request_ns,omitempty"`
	PostgresCPU time.Duration `json:"postgres_cpu_per_request_ns,omitempty"`
}

// capacity is a scenario's best throughput with p99 under the goal.
type capacity struct {
	ID          string        `json:"id"`
	Name        string        `json:"name"`
	Throughput  float64       `json:"throughput_per_s"`
	P99         time.Duration `json:"p99_ns"`
	Concurrency int           `json:"concurrency"`
	Points      []sweepPoint  `json:"points"`
}

func capacityOf(id, name string, points []sweepPoint, goal time.Duration) capacity {
	c := capacity{ID: id, Name: name, Points: points}
	for _, p := range points {
		if p.Errors == 0 && p.P99 < goal && p.Throughput > c.Throughput {
			c.Throughput, c.P99, c.Concurrency = p.Throughput, p.P99, p.Concurrency
		}
	}
	return c
}

func (r *report) scenario(id string) *scenarioResult {
	for i := range r.Load {
		if r.Load[i].ID == id {
			return &r.Load[i]
		}
	}
	return nil
}

func (r *report) throughput(id string) float64 {
	for _, s := range r.Load {
		if s.ID == id {
			return s.Median.Throughput
		}
	}
	return 0
}

// proxyLevel is the credential proxy's cost at one load level of the
// sweep: what it adds to the direct call's latency, side by side.
type proxyLevel struct {
	Concurrency        int
	AddedP50, AddedP99 time.Duration
	Direct, Proxied    float64
}

// proxyOverhead compares the sweep's points of 10b with 10a's, level by
// level.
func (r *report) proxyOverhead() []proxyLevel {
	var direct, proxied *capacity
	for i := range r.Capacity {
		switch r.Capacity[i].ID {
		case "10a":
			direct = &r.Capacity[i]
		case "10b":
			proxied = &r.Capacity[i]
		}
	}
	if direct == nil || proxied == nil {
		return nil
	}
	var out []proxyLevel
	for i := range min(len(direct.Points), len(proxied.Points)) {
		d, p := direct.Points[i], proxied.Points[i]
		out = append(out, proxyLevel{Concurrency: d.Concurrency, AddedP50: p.P50 - d.P50, AddedP99: p.P99 - d.P99, Direct: d.Throughput, Proxied: p.Throughput})
	}
	return out
}

// floorLevel is keybroker's credential proxy (10b) against the Go proxy
// floor (10d) at one load level: ratios of throughput, p50 and p99, and of
// CPU per call, keybroker's alone and with PostgreSQL's.
type floorLevel struct {
	Concurrency                          int
	Throughput, P50, P99, CPU, CPUWithDB float64
	ProxyCPU, FloorCPU, PostgresCPU      time.Duration
}

// ratios of a against b.
func floorRatios(c int, a, b loadResult) floorLevel {
	div := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	return floorLevel{Concurrency: c, Throughput: div(a.Throughput, b.Throughput), P50: div(float64(a.P50), float64(b.P50)),
		P99: div(float64(a.P99), float64(b.P99)), CPU: div(float64(a.ServerCPU), float64(b.ServerCPU)),
		CPUWithDB: div(float64(a.ServerCPU+a.PostgresCPU), float64(b.ServerCPU)),
		ProxyCPU:  a.ServerCPU, FloorCPU: b.ServerCPU, PostgresCPU: a.PostgresCPU}
}

// proxyFloor compares 10b with 10d: the medians of the rounds, then each
// level of the sweep.
func (r *report) proxyFloor() (medians *floorLevel, levels []floorLevel) {
	p, f := r.scenario("10b"), r.scenario("10d")
	if p == nil || f == nil {
		return nil, nil
	}
	m := floorRatios(r.Concurrency, p.Median, f.Median)
	var pc, fc *capacity
	for i := range r.Capacity {
		switch r.Capacity[i].ID {
		case "10b":
			pc = &r.Capacity[i]
		case "10d":
			fc = &r.Capacity[i]
		}
	}
	if pc != nil && fc != nil {
		for i := range min(len(pc.Points), len(fc.Points)) {
			a, b := pc.Points[i], fc.Points[i]
			levels = append(levels, floorRatios(a.Concurrency,
				loadResult{Throughput: a.Throughput, P50: a.P50, P99: a.P99, ServerCPU: a.ServerCPU, PostgresCPU: a.PostgresCPU},
				loadResult{Throughput: b.Throughput, P50: b.P50, P99: b.P99, ServerCPU: b.ServerCPU}))
		}
	}
	return &m, levels
}

func (r *report) capacity(id string) float64 {
	for _, c := range r.Capacity {
		if c.ID == id {
			return c.Throughput
		}
	}
	return 0
}

// warmUp asks once for every key, from 8 workers.
func warmUp(ctx context.Context, do func(context.Context, int) error, n int) error {
	var next atomic.Int64
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				if err := do(ctx, k); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func envNote(env []string) string {
	if len(env) == 0 {
		return ""
	}
	return ", keybroker env " + strings.Join(env, " ")
}

func machine() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s, %d CPUs, %s, host %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), host)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "keybroker-bench: %d keys, %d connections, %s per run, medians of the rounds, cache TTL %s, access log %s%s\nmachine: %s\nload generator: %s\nresolve answer: %d bytes (the floor answers as many)\n\n",
		r.Keys, r.Concurrency, r.Duration, r.CacheTTL, r.AccessLog, envNote(r.KeybrokerEnv), r.Machine, r.LoadGenerator, r.AnswerBytes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\t\treq/s\tp50\tp90\tp99\terrors\tserver CPU/req\t")
	for _, s := range r.Load {
		m := s.Median
		cpu := "-"
		if m.ServerCPU > 0 {
			cpu = fmt.Sprintf("%.1f µs", float64(m.ServerCPU)/float64(time.Microsecond))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t\n", s.ID, s.Name, m.Throughput, ms(m.P50), ms(m.P90), ms(m.P99), m.Errors, cpu)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nratios (throughput, scenario 1a over): direct Vault %.1fx, platform-style in process %.1fx, platform-style behind HTTP %.1fx\n",
		r.RatioVault, r.RatioPlatform, r.RatioPlatformHop)
	fmt.Fprintf(w, "ceiling: the HTTP floor (0) is %.1fx the in-process platform lookup (3a)\n", r.RatioFloor)
	if f := r.throughput("0"); f > 0 {
		fmt.Fprintf(w, "keybroker against the floor (throughput): 1a %.0f%%, 1b %.0f%%\n", 100*r.throughput("1a")/f, 100*r.throughput("1b")/f)
	}
	fmt.Fprintf(w, "cache misses during the scenario-1 runs (after warming every key): %d\n", r.HitRunMisses)
	if d, p := r.scenario("10a"), r.scenario("10b"); d != nil && p != nil && d.Median.Throughput > 0 {
		fmt.Fprintf(w, "credential proxy overhead (10b over 10a): p50 +%s, p99 +%s, throughput %.0f%% of the direct call\n",
			ms(p.Median.P50-d.Median.P50), ms(p.Median.P99-d.Median.P99), 100*p.Median.Throughput/d.Median.Throughput)
	}
	if o, b := r.scenario("10b"), r.scenario("10c"); o != nil && b != nil && o.Median.ServerCPU > 0 {
		fmt.Fprintf(w, "SigV4 re-signing: the proxy's CPU per Bedrock Converse call (10c) %.1f µs against a plain proxied call (10b) %.1f µs: %+.1f µs, %.2fx\n",
			us(b.Median.ServerCPU), us(o.Median.ServerCPU), us(b.Median.ServerCPU-o.Median.ServerCPU), float64(b.Median.ServerCPU)/float64(o.Median.ServerCPU))
	}
	floorLine := func(l floorLevel) string {
		return fmt.Sprintf("throughput %.2f, p50 %.2fx, p99 %.2fx, CPU per call %.2fx (%.1f µs against %.1f µs), %.2fx with PostgreSQL's %.1f µs",
			l.Throughput, l.P50, l.P99, l.CPU, us(l.ProxyCPU), us(l.FloorCPU), l.CPUWithDB, us(l.PostgresCPU))
	}
	medians, levels := r.proxyFloor()
	if medians != nil {
		fmt.Fprintf(w, "credential proxy against the Go proxy floor (10b over 10d, %d connections; goals: throughput >= 0.90, p99 <= 1.5x, CPU with PostgreSQL's <= 1.1x): %s\n",
			medians.Concurrency, floorLine(*medians))
	}
	if len(r.Capacity) > 0 {
		fmt.Fprintf(w, "\ncapacity: best throughput with p99 < %s (concurrency 1, 2, 4, ...)\n", ms(r.P99Goal))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\t\treq/s\tp99\tconnections\t")
		for _, c := range r.Capacity {
			if c.Concurrency == 0 {
				fmt.Fprintf(tw, "%s\t%s\t-\tnever under the goal\t-\t\n", c.ID, c.Name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%d\t\n", c.ID, c.Name, c.Throughput, ms(c.P99), c.Concurrency)
		}
		tw.Flush()
		fmt.Fprintln(w, "each level (connections: req/s, p99):")
		for _, c := range r.Capacity {
			fmt.Fprintf(w, "  %-3s", c.ID)
			for _, p := range c.Points {
				fmt.Fprintf(w, "  %d: %.0f, %.2f ms", p.Concurrency, p.Throughput, float64(p.P99)/float64(time.Millisecond))
			}
			fmt.Fprintln(w)
		}
		ratio := func(a, b string) string {
			if r.capacity(b) == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.1fx", r.capacity(a)/r.capacity(b))
		}
		fmt.Fprintf(w, "ratios (capacity, scenario 1a over): direct Vault %s, platform-style in process %s, platform-style behind HTTP %s\n",
			ratio("1a", "2"), ratio("1a", "3a"), ratio("1a", "3b"))
		if levels := r.proxyOverhead(); len(levels) > 0 {
			fmt.Fprintln(w, "credential proxy overhead by load (10b over 10a at the same connections: added p50, added p99, req/s direct and proxied):")
			for _, l := range levels {
				fmt.Fprintf(w, "  %d: p50 +%s, p99 +%s, %.0f and %.0f req/s\n", l.Concurrency, ms(l.AddedP50), ms(l.AddedP99), l.Direct, l.Proxied)
			}
		}
		if len(levels) > 0 {
			fmt.Fprintln(w, "credential proxy against the Go proxy floor by load (10b over 10d at the same connections):")
			for _, l := range levels {
				fmt.Fprintf(w, "  %d: %s\n", l.Concurrency, floorLine(l))
			}
		}
	}
	fmt.Fprintf(w, "4  in-process Resolve: hit %.0f ns/op, %d allocs/op; miss (a Vault read) %.0f ns/op, %d allocs/op\n",
		r.HitNs, r.HitAllocs, r.MissNs, r.MissAllocs)
	fmt.Fprintf(w, "5  cold herd: 1000 concurrent resolves of one uncached key -> %d Vault read(s)\n", r.ColdHerdReads)
	fmt.Fprintf(w, "6  steady Vault load (scenario 1a's load at %.0f resolves/s, TTL %s): %.0f Vault reads/s (keys/TTL = %.0f/s, ratio %.2f)\n",
		r.SteadyThroughput, r.SteadyTTL, r.VaultReadsPerS, r.KeysPerTTL, r.VaultReadsPerS/r.KeysPerTTL)
	fmt.Fprintf(w, "7  memory with 100,000 cached keys: RSS +%.1f MB, live heap +%.1f MB\n", r.MemRSSMB, r.MemHeapMB)
	fmt.Fprintf(w, "8  admin write (Vault write + PostgreSQL transaction): p50 %s, p99 %s\n", ms(r.WriteP50), ms(r.WriteP99))
	d := r.Derived
	fmt.Fprintf(w, "11 derived credentials (a Bedrock key pair; resolve hands out an STS session): hit %.0f ns/op, %d allocs/op against an api_key hit %.0f ns/op, %d allocs/op in the same run (%.2fx); cold herd: 1000 concurrent resolves of an unresolved Bedrock key -> %d STS call(s)\n",
		d.DerivedHitNs, d.DerivedHitAllocs, d.APIKeyHitNs, d.APIKeyHitAllocs, d.ratio(), d.ColdHerdMints)
	l := r.Library
	fmt.Fprintf(w, "9  one caller getting a key: Go library hit %.1f ns/op, %d allocs/op; HTTP resolve (Go client, kept-alive connection) %.0f ns/op, %d allocs/op; direct Vault read %.0f ns/op, %d allocs/op\n",
		l.ResolverHitNs, l.ResolverHitAllocs, l.HTTPResolveNs, l.HTTPResolveAllocs, l.VaultReadNs, l.VaultReadAllocs)
	if l.ResolverHitNs > 0 {
		fmt.Fprintf(w, "   the library's hit is %.0fx cheaper than an HTTP resolve and %.0fx cheaper than a Vault read\n",
			l.HTTPResolveNs/l.ResolverHitNs, l.VaultReadNs/l.ResolverHitNs)
	}
}
