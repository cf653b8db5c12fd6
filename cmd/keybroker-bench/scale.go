package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// The platform-scale scenario (--scale, docs/benchmarks.md): one replica
// over a database of platform size (workspaces × keysPerWorkspace keys in
// pools, plus organizations' keys) beside one over the same resolvable keys
// alone, in the same run. The key rows are metadata: only the keys the run
// resolves have secrets in Vault (written through keybroker, the real
// path); the rest are written straight into PostgreSQL by SQL, as the
// metadata of keys whose secrets the run never reads, so that the run fits
// one machine.

// scaleOptions size the scenario.
type scaleOptions struct {
	workspaces, organizations, keysPerWorkspace, resolvable int
	// warm is how many workspaces' pools the large replica is then made
	// to hold (GET .../effective of each), to measure a held pool's cost.
	warm int
	// heapProfile, when set, is where the large replica's heap profile is
	// written after the warming (go tool pprof FILE).
	heapProfile string
}

// scaleSide is one replica of the scenario and what was measured of it.
type scaleSide struct {
	Keys         int           `json:"keys"`
	Pools        int           `json:"pools"`
	ReadySeconds float64       `json:"start_to_ready_s"`
	RSSMB        float64       `json:"rss_mb"`
	HeapMB       float64       `json:"live_heap_mb"`
	Resolve      loadResult    `json:"resolve"`
	Effective    time.Duration `json:"effective_p50_ns"`
	ListKeys     time.Duration `json:"list_workspace_keys_p50_ns"`
	ListScopes   time.Duration `json:"list_scopes_p50_ns"`
}

// scaleReport is the scenario's result: the large replica against the
// small one.
type scaleReport struct {
	Machine     string    `json:"machine"`
	Workspaces  int       `json:"workspaces"`
	Orgs        int       `json:"organizations"`
	FillSeconds float64   `json:"metadata_fill_s"`
	Large       scaleSide `json:"large"`
	Small       scaleSide `json:"small"`
	// HeapPerKey is the live heap the large replica holds beyond the small
	// one, per key beyond the small one's.
	HeapPerKey float64 `json:"heap_bytes_per_key"`
	// ResolveRatio is the large replica's resolve throughput over the
	// small one's.
	ResolveRatio float64 `json:"resolve_throughput_ratio"`
	// Held: the large replica after GET .../effective of Warm workspaces
	// (every provider's pool of each, read and held): the pools and keys
	// it then holds, its live heap, the heap per held key beyond its cold
	// heap, and how long the warming took.
	Warm           int     `json:"warmed_workspaces"`
	HeldPools      float64 `json:"held_pools"`
	HeldKeys       int     `json:"held_keys"`
	HeldHeapMB     float64 `json:"held_live_heap_mb"`
	HeapPerHeldKey float64 `json:"heap_bytes_per_held_key"`
	WarmSeconds    float64 `json:"warm_s"`
}

// runScale runs the platform-scale scenario.
func runScale(ctx context.Context, o options, so scaleOptions, log *slog.Logger) (*scaleReport, error) {
	srv, err := startServers(ctx, o, "scale", log)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	writerToken, err := policyToken(ctx, srv.vs.Client(), policies.Writer)
	if err != nil {
		return nil, err
	}
	rep := &scaleReport{Machine: machine(), Workspaces: so.workspaces, Orgs: so.organizations}
	var keys [][2]string
	for i := range so.resolvable {
		keys = append(keys, [2]string{fmt.Sprintf("ws-%06d", i/len(providerIDs)), providerIDs[i%len(providerIDs)]})
	}
	// Two databases on one server: the small one holds the resolvable keys
	// alone, the large one the same keys and the platform's metadata.
	tokens, urls := map[string]string{}, map[string]string{}
	for _, name := range []string{"small", "large"} {
		dbURL, st, resolverToken, operatorToken, err := srv.database(ctx, "kb_"+name)
		if err != nil {
			return nil, err
		}
		urls[name], tokens[name+"/resolver"], tokens[name+"/operator"] = dbURL, resolverToken, operatorToken
		writer, err := vault.New(vault.Config{Address: srv.vs.Addr, Token: writerToken})
		if err != nil {
			return nil, err
		}
		b, err := broker.New(broker.Config{Writer: writer.KV("byok"), Store: st, Pools: st, Pepper: []byte("bench-pepper-0123456789abcdef"),
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, err
		}
		log.Info("writing the resolvable keys", "database", name, "keys", len(keys))
		for _, k := range keys {
			if _, err := b.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "bench"}, Ref: broker.WorkspaceKey(k[0], k[1], broker.DefaultKeyID),
				Credential: providers.APIKey(keyFor(k[1]))}); err != nil {
				return nil, fmt.Errorf("put a resolvable key: %w", err)
			}
		}
	}
	smallURL, largeURL := urls["small"], urls["large"]
	log.Info("filling the large database", "workspaces", so.workspaces, "keys per workspace", so.keysPerWorkspace, "organizations", so.organizations)
	t0 := time.Now()
	if err := fillPlatform(ctx, largeURL, so, len(keys)); err != nil {
		return nil, err
	}
	rep.FillSeconds = time.Since(t0).Seconds()

	readyTimeout = 15 * time.Minute
	sides := map[string]*scaleSide{"small": &rep.Small, "large": &rep.Large}
	children := map[string]*child{}
	for _, name := range []string{"small", "large"} {
		dbURL := map[string]string{"small": smallURL, "large": largeURL}[name]
		log.Info("starting a replica", "database", name)
		c, ready, err := srv.serve(ctx, o, "keybroker-"+name, "all", dbURL)
		if err != nil {
			return nil, err
		}
		children[name] = c
		s := sides[name]
		s.ReadySeconds = ready.Seconds()
		if s.Keys, s.Pools, err = countKeys(ctx, dbURL); err != nil {
			return nil, err
		}
	}

	client := httpClient(o.concurrency)
	resolveOf := func(name string) httpTarget {
		g := &ground{keys: keys, resolverToken: tokens[name+"/resolver"]}
		return g.resolveTarget(children[name].url)
	}
	// Interleaved rounds of the resolve load, medians quoted.
	rounds := map[string][]loadResult{}
	for _, name := range []string{"small", "large"} {
		if err := warmUp(ctx, goRequests(resolveOf(name), client), len(keys)); err != nil {
			return nil, fmt.Errorf("warm the %s replica: %w", name, err)
		}
	}
	for round := range o.rounds {
		for _, name := range []string{"small", "large"} {
			log.Info("resolve load", "round", round+1, "replica", name)
			t := resolveOf(name)
			before := children[name].cpuTime()
			r := runLoad(ctx, o.concurrency, o.duration, func(int) keyPicker { return uniform(len(keys)) }, goRequests(t, client))
			if r.Requests > 0 {
				r.ServerCPU = (children[name].cpuTime() - before) / time.Duration(r.Requests)
			}
			rounds[name] = append(rounds[name], r)
		}
	}
	for _, name := range []string{"small", "large"} {
		s := sides[name]
		s.Resolve = median(rounds[name])
		op := tokens[name+"/operator"]
		base := children[name].url
		ws := keys[0][0]
		if s.Effective, err = p50Of(ctx, client, base+"/v1/workspaces/"+ws+"/effective", op); err != nil {
			return nil, err
		}
		if s.ListKeys, err = p50Of(ctx, client, base+"/v1/workspaces/"+ws+"/keys", op); err != nil {
			return nil, err
		}
		if s.ListScopes, err = p50Of(ctx, client, base+"/v1/scopes", op); err != nil {
			return nil, err
		}
		if s.HeapMB, s.RSSMB, err = memoryOf(ctx, children[name]); err != nil {
			return nil, err
		}
	}
	if so.warm > 0 {
		log.Info("warming the large replica", "workspaces", so.warm)
		large := children["large"]
		op := tokens["large/operator"]
		var next atomic.Int64
		var failed atomic.Int64
		t0 := time.Now()
		var wg sync.WaitGroup
		for range o.concurrency {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < so.warm; i = int(next.Add(1) - 1) {
					u := fmt.Sprintf("%s/v1/workspaces/ws-%06d/effective", large.url, so.workspaces-1-i)
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
					req.Header.Set("Authorization", "Bearer "+op)
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			return nil, fmt.Errorf("warming: %d GET .../effective failed", n)
		}
		rep.Warm, rep.WarmSeconds = so.warm, time.Since(t0).Seconds()
		if rep.HeldPools, err = large.metricSum("keybroker_pool_cache_pools"); err != nil {
			return nil, err
		}
		if rep.HeldHeapMB, _, err = memoryOf(ctx, large); err != nil {
			return nil, err
		}
		if so.heapProfile != "" {
			if err := saveHeapProfile(ctx, large, so.heapProfile); err != nil {
				return nil, err
			}
		}
		conn, err := pgx.Connect(ctx, largeURL)
		if err != nil {
			return nil, err
		}
		err = conn.QueryRow(ctx, `SELECT count(*) FROM provider_keys WHERE scope = 'workspace' AND scope_id >= $1 AND kv_version > 0`,
			fmt.Sprintf("ws-%06d", so.workspaces-so.warm)).Scan(&rep.HeldKeys)
		conn.Close(ctx)
		if err != nil {
			return nil, err
		}
		if rep.HeldKeys > 0 {
			rep.HeapPerHeldKey = (rep.HeldHeapMB - rep.Large.HeapMB) * (1 << 20) / float64(rep.HeldKeys)
		}
	}
	if d := rep.Large.Keys - rep.Small.Keys; d > 0 {
		rep.HeapPerKey = (rep.Large.HeapMB - rep.Small.HeapMB) * (1 << 20) / float64(d)
	}
	if rep.Small.Resolve.Throughput > 0 {
		rep.ResolveRatio = rep.Large.Resolve.Throughput / rep.Small.Resolve.Throughput
	}
	return rep, nil
}

// createDatabase creates database name on the server of adminURL and
// returns its URL.
func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// fillPlatform writes the platform's metadata into the large database:
// keysPerWorkspace keys in each workspace beyond the resolvable ones (two
// keys in a pool for the first providers, one in the last), and three keys
// in each organization; then ANALYZE.
func fillPlatform(ctx context.Context, dbURL string, so scaleOptions, resolvable int) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	firstWS := (resolvable + len(providerIDs) - 1) / len(providerIDs)
	insert := `INSERT INTO provider_keys (scope, scope_id, provider, key_id, state, kv_version, masked_key, fingerprint,
		masked_fields, name, priority, created_by, updated_by)
	SELECT $1::text, s.id, p.provider, p.key_id, 'active', 1, 'sk-...0000', md5(s.id || p.provider || p.key_id) || md5(p.key_id || s.id),
		jsonb_build_object('apiKey', 'sk-...0000'), 'Key ' || p.key_id, p.priority, 'bench', 'bench'
	FROM (SELECT $2::text || lpad(n::text, 6, '0') AS id FROM generate_series($3::int, $4::int - 1) n) s
	CROSS JOIN (SELECT * FROM unnest($5::text[], $6::text[], $7::int[]) AS t(provider, key_id, priority)) p`
	var provs, ids []string
	var prios []int
	for i := range so.keysPerWorkspace {
		provs = append(provs, providerIDs[(i/2)%len(providerIDs)])
		ids = append(ids, "k"+strconv.Itoa(i%2))
		prios = append(prios, 100+100*(i%2))
	}
	// In batches, so that one statement's memory stays small.
	for from := firstWS; from < so.workspaces; from += 20_000 {
		to := min(so.workspaces, from+20_000)
		if _, err := conn.Exec(ctx, insert, "workspace", "ws-", from, to, provs, ids, prios); err != nil {
			return fmt.Errorf("fill workspaces %d-%d: %w", from, to, err)
		}
	}
	if so.organizations > 0 {
		if _, err := conn.Exec(ctx, insert, "organization", "org-", 0, so.organizations,
			[]string{"openai", "anthropic", "google"}, []string{"k0", "k0", "k0"}, []int{100, 100, 100}); err != nil {
			return fmt.Errorf("fill organizations: %w", err)
		}
	}
	_, err = conn.Exec(ctx, "ANALYZE")
	return err
}

// countKeys counts the key rows and pools of a database.
func countKeys(ctx context.Context, dbURL string) (keys, pools int, err error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT (scope, scope_id, provider)) FROM provider_keys WHERE kv_version > 0`).Scan(&keys, &pools)
	return keys, pools, err
}

// p50Of is the median of 50 GETs of u with the bearer token.
func p50Of(ctx context.Context, c *http.Client, u, token string) (time.Duration, error) {
	var ds []time.Duration
	for range 50 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		t := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %d", u, resp.StatusCode)
		}
		ds = append(ds, time.Since(t))
	}
	return median(func() []loadResult {
		out := make([]loadResult, len(ds))
		for i, d := range ds {
			out[i] = loadResult{P50: d}
		}
		return out
	}()).P50, nil
}

// memoryOf is the child's live heap after a garbage collection (its
// pprof listener's heap profile with gc=1 collects first, and its text
// form ends with the runtime's MemStats) and its resident set.
func memoryOf(ctx context.Context, c *child) (heapMB, rssMB float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.pprofURL+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("the replica's heap profile: %w", err)
	}
	defer resp.Body.Close()
	heap := -1.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				heap = f
			}
		}
	}
	if heap < 0 {
		return 0, 0, errors.New("no HeapAlloc in the replica's heap profile")
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 64); err == nil {
					rssMB = v / 1024
				}
			}
		}
	}
	return heap / (1 << 20), rssMB, nil
}

// saveHeapProfile writes the child's heap profile (after a collection) to
// path.
func saveHeapProfile(ctx context.Context, c *child, path string) error {
	if err := saveURL(ctx, c.pprofURL+"/debug/pprof/heap?gc=1", path); err != nil {
		return fmt.Errorf("the replica's heap profile: %w", err)
	}
	return nil
}

func (r *scaleReport) print(w io.Writer) {
	fmt.Fprintf(w, "keybroker-bench --scale: %d workspaces, %d organizations; metadata filled by SQL in %.1f s (secrets in Vault only for the %d keys resolved)\nmachine: %s\n\n",
		r.Workspaces, r.Orgs, r.FillSeconds, r.Small.Keys, r.Machine)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "replica\tkeys\tpools\tstart to ready\tRSS\tlive heap\tresolve req/s\tp99\tCPU/resolve\t/effective p50\tkeys list p50\tscopes list p50\t")
	for _, s := range []struct {
		name string
		s    scaleSide
	}{{"small", r.Small}, {"large", r.Large}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f s\t%.0f MB\t%.0f MB\t%.0f\t%s\t%.1f µs\t%s\t%s\t%s\t\n", s.name, s.s.Keys, s.s.Pools, s.s.ReadySeconds, s.s.RSSMB, s.s.HeapMB,
			s.s.Resolve.Throughput, ms(s.s.Resolve.P99), us(s.s.Resolve.ServerCPU), ms(s.s.Effective), ms(s.s.ListKeys), ms(s.s.ListScopes))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nlive heap per key (large beyond small): %.0f bytes (goal <= 300); start to ready at scale: %.2f s (goal <= 10 s); resolve throughput at scale: %.2f of the small replica's (goal >= 0.90)\n",
		max(r.HeapPerKey, 0), r.Large.ReadySeconds, r.ResolveRatio)
	if r.Warm > 0 {
		fmt.Fprintf(w, "held pools: after GET .../effective of %d workspaces (%.1f s), the large replica holds %.0f pools of %d keys in %.0f MB of live heap: %.0f bytes per held key\n",
			r.Warm, r.WarmSeconds, r.HeldPools, r.HeldKeys, r.HeldHeapMB, r.HeapPerHeldKey)
	}
}
