package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv(envReference); kind != "" {
		// The smoke test's reference servers re-execute this test binary.
		if err := serveReference(kind); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseWrkReadsTheScriptsResultLine(t *testing.T) {
	out := []byte("Running 1s test @ http://127.0.0.1:1\n  1 threads and 2 connections\nWRKRESULT 1000 2000000 10 150 900 2500\n")
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{Requests: 990, Errors: 10, Seconds: 2, Throughput: 495,
		P50: 150 * time.Microsecond, P90: 900 * time.Microsecond, P99: 2500 * time.Microsecond}
	if r != want {
		t.Fatalf("parseWrk = %+v, want %+v", r, want)
	}
	for _, bad := range []string{"", "Running 1s test\n", "WRKRESULT 1 2 x 4 5 6\n"} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("parseWrk(%q) did not fail", bad)
		}
	}
}

func requireWrk(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatal("wrk is not installed: run scripts/tools.sh wrk (make test does)")
	}
}

// TestWrkSendsTheTargetsRequestsInSequence checks the script wrk runs: the
// method, headers and body of each key, and only the keys of the sequence.
func TestWrkSendsTheTargetsRequestsInSequence(t *testing.T) {
	requireWrk(t)
	var mu sync.Mutex
	seen := map[string]int{}
	var bad []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer t0ken" || r.URL.Path != "/v1/resolve" {
			bad = append(bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		}
		seen[string(body)]++
		if strings.Contains(string(body), "fail") {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	target := httpTarget{base: srv.URL, method: http.MethodPost, paths: []string{"/v1/resolve", "/v1/resolve", "/v1/resolve"},
		bodies:  []string{`{"k":"zero"}`, `{"k":"one"}`, `{"k":"fail"}`},
		headers: map[string]string{"Authorization": "Bearer t0ken", "Host": strings.TrimPrefix(srv.URL, "http://")}}
	r, err := runWrk(t.Context(), t.TempDir(), target, []int{0, 1, 0, 1}, 2, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	badSeen, seenCopy := append([]string(nil), bad...), fmt.Sprint(seen)
	keysOK := seen[`{"k":"zero"}`] > 0 && seen[`{"k":"one"}`] > 0 && len(seen) == 2
	mu.Unlock()
	if len(badSeen) > 0 {
		t.Fatalf("wrong requests: %q", badSeen[:min(3, len(badSeen))])
	}
	if !keysOK {
		t.Fatalf("bodies seen: %s; want keys 0 and 1 of the sequence only", seenCopy)
	}
	if r.Requests == 0 || r.Errors != 0 || r.P99 <= 0 {
		t.Fatalf("result %+v", r)
	}

	// A failing status counts as an error.
	r, err = runWrk(t.Context(), t.TempDir(), target, []int{2}, 1, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors == 0 || r.Requests != 0 {
		t.Fatalf("503 answers gave %+v; want every request counted as an error", r)
	}
}

// TestBenchmarkRunsEveryScenario runs the whole benchmark, small and short,
// on the real servers with wrk: every scenario answers without an error,
// the cold herd makes one Vault read, and the report holds every row.
func TestBenchmarkRunsEveryScenario(t *testing.T) {
	requireWrk(t)
	o := options{workspaces: 4, duration: time.Second, concurrency: 2, rounds: 1, ttl: 30 * time.Second,
		steadyTTL: time.Second, load: "wrk", wrkThreads: 1, sweepDuration: time.Second, p99Goal: time.Second, accessLog: "all"}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	rep, err := run(ctx, o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, s := range rep.Load {
		ids = append(ids, s.ID)
		if s.Median.Requests == 0 || s.Median.Errors != 0 {
			t.Errorf("scenario %s: %+v; want requests and no error", s.ID, s.Median)
		}
		if counted := s.ID != "2" && s.ID != "3a"; counted != (s.Median.ServerCPU > 0) {
			t.Errorf("scenario %s: server CPU per request %v", s.ID, s.Median.ServerCPU)
		}
	}
	if got := strings.Join(ids, ","); got != "0,1a,1b,2,3a,3b,10a,10b,10c,10d" {
		t.Errorf("scenarios %s", got)
	}
	if !strings.HasPrefix(rep.LoadGenerator, "wrk") {
		t.Errorf("load generator %q; want wrk", rep.LoadGenerator)
	}
	if rep.HitRunMisses != 0 {
		t.Errorf("%d cache misses during scenario 1 (keys warmed, TTL 30s); want 0", rep.HitRunMisses)
	}
	if rep.ColdHerdReads != 1 {
		t.Errorf("cold herd made %d Vault reads; want 1", rep.ColdHerdReads)
	}
	if rep.VaultReadsPerS <= 0 {
		t.Errorf("steady state counted %v Vault reads/s; the TTL is 1s, so the keys must have been re-read", rep.VaultReadsPerS)
	}
	if len(rep.Capacity) != 9 || len(rep.Capacity[0].Points) != 2 {
		t.Errorf("capacity sweep %+v; want 9 scenarios at concurrency 1 and 2", rep.Capacity)
	}
	// The proxy is measured against the Go proxy floor, with PostgreSQL's
	// CPU (the records of proxied calls) counted for the proxy's runs.
	if m, levels := rep.proxyFloor(); m == nil || m.Throughput <= 0 || m.FloorCPU <= 0 || m.ProxyCPU <= 0 || m.PostgresCPU <= 0 || len(levels) != 2 || levels[1].P99 <= 0 {
		t.Errorf("the proxy against the Go proxy floor: %+v %+v", m, levels)
	}
	if d := rep.Derived; d.DerivedHitNs <= 0 || d.APIKeyHitNs <= 0 || d.ColdHerdMints != 1 {
		t.Errorf("derived credentials: %+v; want both hits measured and one STS call for the cold herd", d)
	}
	if n := rep.scenario("10c"); n == nil || rep.scenario("10b") == nil || n.Median.ServerCPU <= 0 {
		t.Errorf("the Bedrock call through the proxy was not measured beside the plain one")
	}
	if levels := rep.proxyOverhead(); len(levels) != 2 || levels[0].Direct <= 0 || levels[0].Proxied <= 0 || levels[0].AddedP50 <= 0 {
		t.Errorf("the proxy's overhead by load: %+v; want 2 levels, each call slower through the proxy", levels)
	}
	if rep.HitNs <= 0 || rep.MissNs <= rep.HitNs || rep.WriteP50 <= 0 || rep.MemHeapMB <= 0 {
		t.Errorf("in-process results: hit %v ns, miss %v ns, write p50 %v, heap %v MB", rep.HitNs, rep.MissNs, rep.WriteP50, rep.MemHeapMB)
	}
	if l := rep.Library; l.ResolverHitNs <= 0 || l.HTTPResolveNs <= l.ResolverHitNs || l.VaultReadNs <= l.ResolverHitNs {
		t.Errorf("library, HTTP and Vault: %+v; the library's hit must be the cheapest", l)
	}
	if rep.AnswerBytes < 200 {
		t.Errorf("keybroker's resolve answer measured %d bytes", rep.AnswerBytes)
	}
	var table strings.Builder
	rep.print(&table)
	for _, want := range []string{"HTTP floor", "platform-style behind an HTTP hop", "capacity: best throughput", "cold herd", "Go library hit", "the floor answers as many", "credential proxy overhead", "SigV4 re-signing", "derived credentials", "against the Go proxy floor"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the printed table lacks %q", want)
		}
	}
}

func TestTheFloorAnswersAsManyBytesAsAsked(t *testing.T) {
	for _, size := range []int{300, 317, 400, 1000} {
		if got := len(floorAnswer(size)); got != size {
			t.Errorf("floorAnswer(%d) is %d bytes", size, got)
		}
	}
}

// TestTheScaleScenarioRuns runs the platform-scale scenario in its short
// form (2,000 workspaces of 5 keys, 20 organizations of 3): both replicas
// start, resolve without an error, answer the admin routes, and the report
// counts the keys and pools the database holds.
func TestTheScaleScenarioRuns(t *testing.T) {
	o := options{duration: time.Second, concurrency: 4, rounds: 1, load: "go", accessLog: "all"}
	so := scaleOptions{workspaces: 2000, organizations: 20, keysPerWorkspace: 5, resolvable: 50, warm: 100}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	rep, err := runScale(ctx, o, so, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The resolvable keys: 50 (one pool each); the rest: 1,990 workspaces
	// of 5 keys in 3 pools, and 20 organizations of 3 keys in 3 pools.
	if rep.Small.Keys != 50 || rep.Small.Pools != 50 || rep.Large.Keys != 50+1990*5+20*3 || rep.Large.Pools != 50+1990*3+20*3 {
		t.Errorf("keys and pools: small %d/%d, large %d/%d", rep.Small.Keys, rep.Small.Pools, rep.Large.Keys, rep.Large.Pools)
	}
	for name, s := range map[string]scaleSide{"small": rep.Small, "large": rep.Large} {
		if s.ReadySeconds <= 0 || s.RSSMB <= 0 || s.HeapMB <= 0 || s.Resolve.Requests == 0 || s.Resolve.Errors != 0 ||
			s.Effective <= 0 || s.ListKeys <= 0 || s.ListScopes <= 0 {
			t.Errorf("%s replica: %+v", name, s)
		}
	}
	if rep.ResolveRatio <= 0 {
		t.Errorf("resolve ratio %v", rep.ResolveRatio)
	}
	// Warming 100 workspaces (3 pools of keys each, two empty providers,
	// and the hosted pools) makes the large replica hold them.
	if rep.Warm != 100 || rep.HeldKeys != 500 || rep.HeldPools < 100*5 || rep.HeldHeapMB <= 0 {
		t.Errorf("warming: %d workspaces, %v pools held, %d keys, %v MB", rep.Warm, rep.HeldPools, rep.HeldKeys, rep.HeldHeapMB)
	}
	var table strings.Builder
	rep.print(&table)
	if !strings.Contains(table.String(), "live heap per key") {
		t.Errorf("the printed report: %s", table.String())
	}
}

// TestTheBurstScenarioRuns runs the burst scenario in its short form (300
// writes, 30 of them replacing keys two serving replicas hold): every
// tracked write is served by both replicas (the lag is measured), the
// resolves during the burst answer without an error, and no replica serves
// a replaced key after it.
func TestTheBurstScenarioRuns(t *testing.T) {
	o := options{duration: time.Second, accessLog: "all"}
	bo := burstOptions{writes: 300, tracked: 30, replicas: 2, writers: 4}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	rep, err := runBurst(ctx, o, bo, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if rep.LagP50 <= 0 || rep.LagMax < rep.LagP99 || rep.WritesPerS <= 0 {
		t.Errorf("lag p50 %v p99 %v max %v, %v writes/s", rep.LagP50, rep.LagP99, rep.LagMax, rep.WritesPerS)
	}
	if rep.ResolveBefore.Requests == 0 || rep.ResolveDuring.Requests == 0 || rep.ResolveBefore.Errors+rep.ResolveDuring.Errors != 0 {
		t.Errorf("resolves before %+v, during %+v", rep.ResolveBefore, rep.ResolveDuring)
	}
	if rep.StaleAfter != 0 {
		t.Errorf("%d stale serves after the burst", rep.StaleAfter)
	}
	var table strings.Builder
	rep.print(&table)
	if !strings.Contains(table.String(), "lag from a write's acknowledgement") {
		t.Errorf("the printed report: %s", table.String())
	}
}

// The bench runs keybroker's collector as the Helm chart runs every
// replica, unless told otherwise.
func TestTheBenchRunsTheChartsCollectorSettings(t *testing.T) {
	b, err := os.ReadFile("../../deploy/helm/keybroker/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		GoRuntime struct {
			GCPercent   string `json:"gcPercent"`
			MemoryLimit string `json:"memoryLimit"`
		} `json:"goRuntime"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	if want := "GOGC=" + values.GoRuntime.GCPercent + " GOMEMLIMIT=" + values.GoRuntime.MemoryLimit; productionGC != want {
		t.Fatalf("the bench runs keybroker with %q, the chart with %q", productionGC, want)
	}
	if got := strings.Join(withProductionGC(nil), " "); got != productionGC {
		t.Fatalf("by default: %q", got)
	}
	if got := strings.Join(withProductionGC([]string{"GOGC=100", "X=1"}), " "); got != "GOMEMLIMIT=450MiB GOGC=100 X=1" {
		t.Fatalf("with GOGC named: %q", got)
	}
}
