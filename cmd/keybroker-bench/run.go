package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/policies"
	"github.com/keybroker/keybroker/providers"
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
	dbURL, pprofAddr                    string
	keybrokerEnv                        []string // --keybroker-env
	vaultWriter                         *vault.Client
	pool                                *pgxpool.Pool
	st                                  *store.Store
	tokens                              *auth.Service
	b                                   *broker.Broker // in process: loads the keys; scenarios 4, 5, 7, 8
	url, resolverToken                  string
	primary                             *child      // scenario 1
	steady                              *child      // scenario 6: keybroker with a short TTL
	keys                                [][2]string // (workspace, provider)
	platform                            *platformStore
	platformURL, floorURL               string // scenarios 3b and 0
	answerBytes                         int    // keybroker's resolve answer, which the floor's matches
	floorChild, platformChild           *child // the reference servers' processes
	providerChild, proxyChild           *child // scenario 10: the provider stand-in, keybroker in proxy mode
	proxyFloorChild                     *child // scenario 10d: a bare Go reverse proxy in front of the stand-in
	postgresPID                         int    // the postmaster, whose CPU (and its backends') is counted
	proxyToken                          string
	aws                                 *awsstub.Stub // scenarios 10c and 11: STS and Bedrock, verifying SigV4
}

// The Bedrock key of scenarios 10c and 11: an IAM user's key pair that the
// AWS stand-in knows, in the first workspace. Resolve and the proxy hand
// out or sign with STS sessions minted from it.
const (
	benchAWSRegion    = "eu-west-1"
	benchAWSKeyID     = "AKIABENCHKEY00000001"
	benchAWSSecret    = "benchSecretAccessKey/0123456789abcdefABC"
	benchBedrockModel = "anthropic.claude-3-haiku-20240307-v1:0"
)

// startKeybroker runs `keybroker serve --mode resolver` as production runs
// it (JSON log to stderr, metrics, invalidation listener), with the
// reader's Vault token and cache TTL ttl.
// benchResolverKeys sign the bench's resolver token and the proxy tokens
// (a throw-away keyring of the bench's own deployment).
const benchResolverKeys = "bench:bench-resolver-signing-key-0123456789abcdef"

// benchAdminKeys verify organization links (none here; every replica needs them).
const benchAdminKeys = "bench:bench-admin-signing-key-0123456789abcdef0123"

func (g *ground) startKeybroker(ctx context.Context, dir, bin, name string, ttl time.Duration, pprofAddr, accessLog string, extraEnv ...string) (*child, error) {
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	metricsAddr := ml.Addr().String()
	ml.Close()
	c, err := startChild(ctx, dir, name, bin, func(listen string) ([]string, []string) {
		return []string{"serve"}, append([]string{
			"KEYBROKER_LISTEN_ADDR=" + listen, "KEYBROKER_MODE=resolver", "DATABASE_URL=" + g.dbURL,
			"VAULT_ADDR=" + g.vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + g.readerToken,
			"KEYBROKER_KV_MOUNT=byok", "KEYBROKER_CACHE_TTL=" + ttl.String(), "KEYBROKER_PPROF_ADDR=" + pprofAddr,
			"KEYBROKER_RESOLVER_KEYS=" + benchResolverKeys, "KEYBROKER_ADMIN_TOKEN_KEYS=" + benchAdminKeys,
			"KEYBROKER_ACCESS_LOG=" + accessLog, "KEYBROKER_METRICS_ADDR=" + metricsAddr,
			// The rate limiter is on, as in production, with limits no run
			// reaches (one token sends every request): its cost per
			// request is counted, and nothing is refused.
			"KEYBROKER_RATE_LIMIT_PER_TOKEN=1000000000", "KEYBROKER_RATE_LIMIT_BURST=1000000000",
		}, append(extraEnv, g.keybrokerEnv...)...)
	}, "/readyz")
	if err != nil {
		return nil, err
	}
	c.metricsURL = "http://" + metricsAddr
	return c, nil
}

// profile writes a CPU profile of the profiled server process over d to
// path.
func (g *ground) profile(ctx context.Context, path string, d time.Duration) error {
	if g.pprofAddr == "" {
		return errors.New("no server was started with a pprof listener")
	}
	return saveURL(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", g.pprofAddr, max(1, int(d.Seconds()))), path)
}

// saveURL writes the answer of a GET of u (a pprof profile) to path.
func saveURL(ctx context.Context, u, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof answered %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// buildKeybroker builds cmd/keybroker into dir (the benchmark runs from the
// module, as `make bench` does).
func buildKeybroker(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "keybroker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/keybroker/keybroker/cmd/keybroker")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build keybroker (or pass --keybroker-bin): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
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
	g := &ground{vaultAddr: vs.Addr, dbURL: pg.URL, keybrokerEnv: o.keybrokerEnv, postgresPID: postmasterPID(pg.Dir)}
	g.aws = awsstub.Start(benchAWSRegion)
	cleanups = append(cleanups, g.aws.Close)
	g.aws.AddKey(benchAWSKeyID, benchAWSSecret)
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
	resolverKeys, err := keyring.Parse(benchResolverKeys)
	if err != nil {
		return fail(err)
	}
	g.tokens = auth.NewService(g.st, auth.Options{Keys: auth.RowKeys{Resolver: resolverKeys}})
	if g.resolverToken, _, err = g.tokens.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "bench"}); err != nil {
		return fail(err)
	}
	// The in-process broker loads the keys (Vault write + PostgreSQL
	// transaction each) and runs the in-process scenarios.
	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken})
	if err != nil {
		return fail(err)
	}
	if g.b, err = broker.New(broker.Config{Reader: reader.KV("byok"), Writer: writer.KV("byok"), Store: g.st, Pools: g.st,
		Pepper: []byte("bench-pepper-0123456789abcdef"), CacheTTL: o.ttl, Logger: slog.New(slog.DiscardHandler),
		MintHTTP: g.aws.Client(), MintEndpoints: g.awsEndpoints()}); err != nil {
		return fail(err)
	}
	if err := g.b.Load(ctx); err != nil {
		return fail(err)
	}

	dir, err := os.MkdirTemp("", "keybroker-bench-")
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	bin := o.keybrokerBin
	if bin == "" {
		log.Info("building keybroker")
		if bin, err = buildKeybroker(ctx, dir); err != nil {
			return fail(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	aesKey := make([]byte, 32)
	if _, err := rand.Read(aesKey); err != nil {
		return fail(err)
	}
	if g.pool, err = pgxpool.New(ctx, pg.URL+"&pool_max_conns="+strconv.Itoa(o.concurrency+4)); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.pool.Close)
	if g.platform, err = newPlatformStore(ctx, g.pool, aesKey); err != nil {
		return fail(err)
	}

	log.Info("starting keybroker and the reference servers")
	if o.cpuProfile != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		g.pprofAddr = ln.Addr().String()
		ln.Close()
	}
	reference := func(kind string) func(string) ([]string, []string) {
		return func(listen string) ([]string, []string) {
			return nil, []string{envReference + "=" + kind, envListen + "=" + listen, "DATABASE_URL=" + g.dbURL,
				envAESKey + "=" + hex.EncodeToString(aesKey), envToken + "=" + g.resolverToken, envPoolSize + "=" + strconv.Itoa(o.concurrency+4)}
		}
	}
	// The profiled server serves /debug/pprof on g.pprofAddr: keybroker
	// with --pprof-addr, a floor with envPprof.
	var primaryPprof, proxyPprof, floorPprof, proxyFloorPprof string
	switch o.profileScenario {
	case "0":
		floorPprof = g.pprofAddr
	case "10b":
		proxyPprof = g.pprofAddr
	case "10d":
		proxyFloorPprof = g.pprofAddr
	default:
		primaryPprof = g.pprofAddr
	}
	if g.primary, err = g.startKeybroker(ctx, dir, bin, "keybroker", o.ttl, primaryPprof, o.accessLog); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.primary.stop)
	g.url = g.primary.url
	platform, err := startChild(ctx, dir, "platform", self, reference("platform"), "/ready")
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, platform.stop)
	g.platformChild, g.platformURL = platform, platform.url
	if g.steady, err = g.startKeybroker(ctx, dir, bin, "keybroker-steady", o.steadyTTL, "", o.accessLog); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.steady.stop)

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
				if _, err := g.b.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "bench"}, Ref: broker.WorkspaceKey(ws, p, broker.DefaultKeyID), Credential: providers.APIKey(k)}); err != nil {
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
	bedrockKey := providers.New(providers.KindAWSBedrock, map[string]string{"region": benchAWSRegion, "accessKeyId": benchAWSKeyID, "secretAccessKey": benchAWSSecret})
	if _, err := g.b.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "bench"}, Ref: broker.WorkspaceKey(g.keys[0][0], "bedrock", broker.DefaultKeyID), Credential: bedrockKey}); err != nil {
		return fail(fmt.Errorf("put the Bedrock key: %w", err))
	}
	// The floor answers as many bytes as keybroker's resolve answer.
	if g.answerBytes, err = g.resolveAnswerSize(ctx); err != nil {
		return fail(err)
	}
	floorEnv := func(listen string) ([]string, []string) {
		_, env := reference("floor")(listen)
		return nil, append(env, envAnswerSize+"="+strconv.Itoa(g.answerBytes), envPprof+"="+floorPprof)
	}
	floor, err := startChild(ctx, dir, "floor", self, floorEnv, "/ready")
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, floor.stop)
	g.floorChild, g.floorURL = floor, floor.url

	// Scenario 10: a provider stand-in, called directly and through a
	// keybroker in proxy mode.
	if g.providerChild, err = startChild(ctx, dir, "provider", self, reference("provider"), "/ready"); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.providerChild.stop)
	proxyFloorEnv := func(listen string) ([]string, []string) {
		_, env := reference("proxyfloor")(listen)
		return nil, append(env, envUpstream+"="+g.providerChild.url, envUpstreamKey+"="+keyFor("openai"), envPprof+"="+proxyFloorPprof)
	}
	if g.proxyFloorChild, err = startChild(ctx, dir, "proxyfloor", self, proxyFloorEnv, "/ready"); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.proxyFloorChild.stop)
	if g.proxyChild, err = g.startKeybroker(ctx, dir, bin, "keybroker-proxy", o.ttl, proxyPprof, o.accessLog, "KEYBROKER_MODE=proxy",
		"KEYBROKER_PROVIDER_OPENAI_BASE_URL="+g.providerChild.url,
		"KEYBROKER_PROVIDER_BEDROCK_BASE_URL="+g.aws.URL, "KEYBROKER_PROVIDER_BEDROCK_STS_URL="+g.aws.URL,
		// The bench measures the forwarding, not the bounds that protect a
		// replica from one tenant (one workspace and one token make every
		// call here): they are lifted, as the rate limit is for resolves.
		"KEYBROKER_RATE_LIMIT_PER_WORKSPACE=-1", "KEYBROKER_PROXY_MAX_IN_FLIGHT=100000",
		"KEYBROKER_PROXY_MAX_IN_FLIGHT_PER_WORKSPACE=100000", "KEYBROKER_PROXY_MAX_IN_FLIGHT_PER_TOKEN=100000"); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, g.proxyChild.stop)
	if g.proxyToken, err = g.mintProxyToken(ctx); err != nil {
		return fail(err)
	}
	return g, cleanup, nil
}

// awsEndpoints point the Bedrock provider's token service at the stand-in.
func (g *ground) awsEndpoints() map[string]map[string]string {
	return map[string]map[string]string{"bedrock": {"sts": g.aws.URL}}
}

// mintProxyToken mints a proxy token on the proxy keybroker for the first
// workspace's OpenAI and Bedrock keys.
func (g *ground) mintProxyToken(ctx context.Context) (string, error) {
	body := `{"workspace":"` + g.keys[0][0] + `","providers":["openai","bedrock"],"ttlSeconds":3600}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.proxyChild.url+"/v1/proxy-tokens", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+g.resolverToken)
	resp, err := httpClient(1).Do(req)
	if err != nil {
		return "", fmt.Errorf("mint a proxy token: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("mint a proxy token: %d %v", resp.StatusCode, err)
	}
	return tok.Token, nil
}

// bedrockTarget is scenario 10c: one Converse call through the proxy,
// which signs it with SigV4 and an STS session for the AWS stand-in.
func (g *ground) bedrockTarget() httpTarget {
	return httpTarget{base: g.proxyChild.url, method: http.MethodPost, paths: []string{"/proxy/bedrock/model/" + url.PathEscape(benchBedrockModel) + "/converse"},
		bodies:  []string{`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`},
		headers: map[string]string{"Authorization": "Bearer " + g.proxyToken, "Content-Type": "application/json", "Host": strings.TrimPrefix(g.proxyChild.url, "http://")}}
}

// postmasterPID is the PostgreSQL server's pid, from its data folder's
// postmaster.pid (0 when it cannot be read: PostgreSQL's CPU is then not
// counted).
func postmasterPID(dir string) int {
	for _, path := range []string{filepath.Join(dir, "data", "postmaster.pid"), filepath.Join(dir, "postmaster.pid")} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
			return pid
		}
	}
	return 0
}

// proxyFloorTarget is scenario 10d: the call of 10b through the bare Go
// reverse proxy, with the same headers (the proxy token, which the floor
// replaces by the key without looking at it).
func (g *ground) proxyFloorTarget() httpTarget {
	_, proxied := g.providerTargets()
	proxied.base, proxied.paths = g.proxyFloorChild.url, []string{"/v1/chat/completions"}
	proxied.headers["Host"] = strings.TrimPrefix(g.proxyFloorChild.url, "http://")
	return proxied
}

// providerTargets are scenario 10: one completion call, straight to the
// stand-in with the key, and through the proxy with the proxy token.
func (g *ground) providerTargets() (direct, proxied httpTarget) {
	body := []string{`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`}
	direct = httpTarget{base: g.providerChild.url, method: http.MethodPost, paths: []string{"/v1/chat/completions"}, bodies: body,
		headers: map[string]string{"Authorization": "Bearer " + keyFor("openai"), "Content-Type": "application/json", "Host": strings.TrimPrefix(g.providerChild.url, "http://")}}
	proxied = httpTarget{base: g.proxyChild.url, method: http.MethodPost, paths: []string{"/proxy/openai/v1/chat/completions"}, bodies: body,
		headers: map[string]string{"Authorization": "Bearer " + g.proxyToken, "Content-Type": "application/json", "Host": strings.TrimPrefix(g.proxyChild.url, "http://")}}
	return direct, proxied
}

// resolveAnswerSize is the length of keybroker's answer to a resolve of
// the first key.
func (g *ground) resolveAnswerSize(ctx context.Context) (int, error) {
	t := g.resolveTarget(g.url)
	req, err := http.NewRequestWithContext(ctx, t.method, t.base+t.paths[0], strings.NewReader(t.bodies[0]))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", t.headers["Authorization"])
	resp, err := httpClient(1).Do(req)
	if err != nil {
		return 0, fmt.Errorf("resolve one key: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("resolve one key: %d %v", resp.StatusCode, err)
	}
	return len(body), nil
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
		t.paths[i] = "/v1/byok/data/" + broker.WorkspaceKey(k[0], k[1], broker.DefaultKeyID).VaultPath()
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
	if _, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: p}); err != nil {
		return testing.BenchmarkResult{}
	}
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if miss {
				g.b.Evict(broker.WorkspaceKey(ws, p, broker.DefaultKeyID))
			}
			if _, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: p}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// coldHerd resolves one key nobody has asked for yet from 1,000 goroutines
// at once, on a fresh broker, and counts Vault reads.
func (g *ground) coldHerd(ctx context.Context) (int64, error) {
	counting := testenv.NewVaultReadCounter()
	reader, err := vault.New(vault.Config{Address: g.vaultAddr, Token: g.readerToken, Transport: counting})
	if err != nil {
		return 0, err
	}
	fresh, err := broker.New(broker.Config{Reader: reader.KV("byok"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, err
	}
	ws, p := g.keys[len(g.keys)-1][0], g.keys[len(g.keys)-1][1]
	if err := herd(ctx, fresh, broker.ResolveRequest{Workspace: ws, Provider: p}); err != nil {
		return 0, err
	}
	return counting.Reads(), nil
}

// herd resolves req from 1,000 goroutines released at once.
func herd(ctx context.Context, b *broker.Broker, req broker.ResolveRequest) error {
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 1000 {
		wg.Go(func() {
			<-start
			if _, err := b.Resolve(ctx, req); err != nil {
				failed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of 1000 cold resolves of %s/%s failed", n, req.Workspace, req.Provider)
	}
	return nil
}

// syntheticReader answers any path with a key of realistic size, so that
// the memory scenario measures the cache, not Vault.
type syntheticReader struct{}

func (syntheticReader) Get(_ context.Context, path string) (vault.Secret, error) {
	return vault.Secret{Data: map[string]string{providers.VaultFieldAPIKey: "sk-proj-" + strings.Repeat("x", 156) + path[len(path)-4:]}, Version: 1}, nil
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
		if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: fmt.Sprintf("ws-%06d", i/5), Provider: providerIDs[i%5]}); err != nil {
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
		if _, err := g.b.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "bench"}, Ref: broker.WorkspaceKey(k[0], k[1], broker.DefaultKeyID), Credential: providers.APIKey(keyFor(k[1]))}); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}
