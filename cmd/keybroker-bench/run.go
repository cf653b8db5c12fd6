package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/devenv"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

var providerIDs = []string{"anthropic", "exa", "google", "mistral", "openai"}

// keyFor makes a valid key of provider's format.
func keyFor(provider string) string {
	b := make([]byte, 40)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	switch provider {
	case "openai":
		return "sk-proj-" + h[:48]
	case "anthropic":
		return "sk-ant-api03-" + h[:48]
	case "google":
		return "AIza" + h[:35]
	case "exa":
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	default:
		return h[:32]
	}
}

// ground is everything the scenarios run against.
type ground struct {
	vaultAddr, readerToken, writerToken string
	vaultWriter                         *vault.Client
	pool                                *pgxpool.Pool
	st                                  *store.Store
	tokens                              *auth.Service
	reads                               *devenv.VaultReadCounter
	b                                   *broker.Broker
	url, resolverToken                  string
	steady                              *instance   // scenario 6: the same server with a short TTL
	keys                                [][2]string // (workspace, provider)
	platform                            *platformStore
}

// instance is one keybroker server on loopback.
type instance struct {
	b     *broker.Broker
	url   string
	reads *devenv.VaultReadCounter // Vault reads of key material by its reader
}

// serve starts a keybroker HTTP server with cache TTL ttl on the ground's
// Vault and PostgreSQL.
func (g *ground) serve(ttl time.Duration) (*instance, func(), error) {
	in := &instance{reads: devenv.NewVaultReadCounter()}
	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken, Transport: in.reads})
	if err != nil {
		return nil, nil, err
	}
	in.b, err = broker.New(broker.Config{Reader: reader.KV("byok"), Writer: g.vaultWriter.KV("byok"), Store: g.st,
		Pepper: []byte("bench-pepper-0123456789abcdef"), CacheTTL: ttl, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, err
	}
	// The access log as in production (JSON, one line per request), to a
	// sink: it is part of the cost.
	router := handlers.NewRouter(handlers.Options{Keys: in.b, Tokens: g.tokens, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	in.url = "http://" + ln.Addr().String()
	return in, func() { _ = srv.Close() }, nil
}

func policyToken(ctx context.Context, root *vaultapi.Client, policy string) (string, error) {
	s, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{policy}, TTL: "24h", NoDefaultPolicy: true})
	if err != nil {
		return "", fmt.Errorf("create a %s token: %w", policy, err)
	}
	return s.Auth.ClientToken, nil
}

func setUp(ctx context.Context, o options, log *slog.Logger) (*ground, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) (*ground, func(), error) { cleanup(); return nil, func() {}, err }

	log.Info("starting PostgreSQL and Vault")
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, pg.Stop)
	vs, err := devenv.StartVault(ctx)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, vs.Stop)
	op, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		return fail(err)
	}
	if _, err := op.Bootstrap(ctx, vault.BootstrapConfig{KVMount: "byok"}); err != nil {
		return fail(err)
	}
	g := &ground{vaultAddr: vs.Addr}
	// The broker uses tokens carrying keybroker's policies (as its AppRole
	// logins would); scenario 2 reads Vault with the reader's.
	if g.readerToken, err = policyToken(ctx, vs.Client(), policies.Reader); err != nil {
		return fail(err)
	}
	if g.writerToken, err = policyToken(ctx, vs.Client(), policies.Writer); err != nil {
		return fail(err)
	}
	writer, err := vault.New(vault.Config{Address: vs.Addr, Token: g.writerToken})
	if err != nil {
		return fail(err)
	}
	if g.st, err = store.Open(ctx, pg.URL); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.st.Close)
	if err := g.st.Migrate(ctx); err != nil {
		return fail(err)
	}
	g.vaultWriter = writer
	g.tokens = auth.NewService(g.st, 0)
	if g.resolverToken, _, err = g.tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleResolver, CreatedBy: "bench"}, broker.ValidID); err != nil {
		return fail(err)
	}
	primary, stopPrimary, err := g.serve(o.ttl)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, stopPrimary)
	g.b, g.url, g.reads = primary.b, primary.url, primary.reads
	steady, stopSteady, err := g.serve(o.steadyTTL)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, stopSteady)
	g.steady = steady

	if g.pool, err = pgxpool.New(ctx, pg.URL+"&pool_max_conns="+strconv.Itoa(o.concurrency+4)); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.pool.Close)
	if g.platform, err = newPlatformStore(ctx, g.pool); err != nil {
		return fail(err)
	}

	log.Info("loading keys", "workspaces", o.workspaces, "keys", o.workspaces*len(providerIDs))
	for w := range o.workspaces {
		for _, p := range providerIDs {
			g.keys = append(g.keys, [2]string{fmt.Sprintf("ws-%05d", w), p})
		}
	}
	var wg sync.WaitGroup
	var loadErr atomic.Value
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(g.keys) {
					return
				}
				ws, p := g.keys[i][0], g.keys[i][1]
				k := keyFor(p)
				if _, err := g.b.SetKey(ctx, broker.Actor{Subject: "bench"}, ws, p, k, 0); err != nil {
					loadErr.Store(err)
					return
				}
				if err := g.platform.put(ctx, ws, p, k); err != nil {
					loadErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := loadErr.Load().(error); ok {
		return fail(fmt.Errorf("load keys: %w", err))
	}
	return g, cleanup, nil
}

// httpClient keeps one connection per worker alive.
func httpClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.MaxConnsPerHost = concurrency*2, concurrency*2, concurrency*2
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}

func drain(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// resolveTarget is scenario 1: POST /v1/resolve on the keybroker at url.
func (g *ground) resolveTarget(url string) httpTarget {
	t := httpTarget{base: url, method: http.MethodPost, paths: make([]string, len(g.keys)), bodies: make([]string, len(g.keys)),
		headers: map[string]string{"Authorization": "Bearer " + g.resolverToken, "Content-Type": "application/json", "Host": strings.TrimPrefix(url, "http://")}}
	for i, k := range g.keys {
		t.paths[i] = "/v1/resolve"
		t.bodies[i] = `{"workspace":"` + k[0] + `","provider":"` + k[1] + `"}`
	}
	return t
}

// vaultTarget is scenario 2: a KV v2 read of the same paths with the
// reader's token.
func (g *ground) vaultTarget() httpTarget {
	t := httpTarget{base: g.vaultAddr, method: http.MethodGet, paths: make([]string, len(g.keys)),
		headers: map[string]string{"X-Vault-Token": g.readerToken, "Host": strings.TrimPrefix(g.vaultAddr, "http://")}}
	for i, k := range g.keys {
		t.paths[i] = "/v1/byok/data/" + vault.WorkspaceKeyPath(k[0], k[1])
	}
	return t
}

// goRequests sends t's requests with Go's HTTP client: the built-in load
// generator when wrk is not installed, and the warm-up.
func goRequests(t httpTarget, c *http.Client) func(ctx context.Context, k int) error {
	return func(ctx context.Context, k int) error {
		var body io.Reader
		if t.bodies != nil {
			body = strings.NewReader(t.bodies[k])
		}
		req, _ := http.NewRequestWithContext(ctx, t.method, t.base+t.paths[k], body)
		for h, v := range t.headers {
			if h != "Host" {
				req.Header.Set(h, v)
			}
		}
		return drain(c.Do(req))
	}
}

func (g *ground) platformRead(ctx context.Context, k int) error {
	_, err := g.platform.get(ctx, g.keys[k][0], g.keys[k][1])
	return err
}

// inProcess measures broker.Resolve with Go's benchmark harness.
func (g *ground) inProcess(ctx context.Context, miss bool) testing.BenchmarkResult {
	ws, p := g.keys[0][0], g.keys[0][1]
	if _, err := g.b.Resolve(ctx, ws, p); err != nil {
		return testing.BenchmarkResult{}
	}
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if miss {
				g.b.Evict(ws, p)
			}
			if _, err := g.b.Resolve(ctx, ws, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// coldHerd resolves one key nobody has asked for yet from 1,000 goroutines
// at once, on a fresh broker, and counts Vault reads.
func (g *ground) coldHerd(ctx context.Context) (int64, error) {
	counting := devenv.NewVaultReadCounter()
	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken, Transport: counting})
	if err != nil {
		return 0, err
	}
	fresh, err := broker.New(broker.Config{Reader: reader.KV("byok"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, err
	}
	ws, p := g.keys[len(g.keys)-1][0], g.keys[len(g.keys)-1][1]
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 1000 {
		wg.Go(func() {
			<-start
			if _, err := fresh.Resolve(ctx, ws, p); err != nil {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 {
		return 0, fmt.Errorf("%d cold resolves failed", failed.Load())
	}
	return counting.Reads(), nil
}

// syntheticReader answers any path with a key of realistic size, so that
// the memory scenario measures the cache, not Vault.
type syntheticReader struct{}

func (syntheticReader) Get(_ context.Context, path string) (vault.Secret, error) {
	return vault.Secret{Value: "sk-proj-" + strings.Repeat("x", 156) + path[len(path)-4:], Version: 1}, nil
}
func (s syntheticReader) GetVersion(ctx context.Context, path string, _ int) (vault.Secret, error) {
	return s.Get(ctx, path)
}

// memory resolves 100,000 distinct keys into a fresh broker's cache and
// reports the growth of the process's RSS and live heap.
func memory(ctx context.Context) (rssMB, heapMB float64, err error) {
	b, err := broker.New(broker.Config{Reader: syntheticReader{}, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, 0, err
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rss0 := rssBytes()
	for i := range 100_000 {
		if _, err := b.Resolve(ctx, fmt.Sprintf("ws-%06d", i/5), providerIDs[i%5]); err != nil {
			return 0, 0, err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	rss1 := rssBytes()
	runtime.KeepAlive(b)
	return float64(rss1-rss0) / (1 << 20), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20), nil
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// adminWrites rotates keys one after another and measures each write.
func (g *ground) adminWrites(ctx context.Context, n int) (p50, p99 time.Duration, err error) {
	var lat []time.Duration
	for i := range n {
		k := g.keys[i%len(g.keys)]
		t0 := time.Now()
		if _, err := g.b.SetKey(ctx, broker.Actor{Subject: "bench"}, k[0], k[1], keyFor(k[1]), 0); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}
