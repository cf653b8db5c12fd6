package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/client/resolver"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
	"github.com/keybroker/keybroker/providers"
)

// sharedKeyProvider is OpenAI as far as keybroker can tell: the models
// listing (keybroker's own key check) and chat completions, both with
// Authorization: Bearer <key> as OpenAI requires. It accepts the keys it
// was given, except that it refuses every completion whose "user" is
// refusedUser with a 401 — one tenant's calls only, as OpenAI does for a
// call whose OpenAI-Organization header names an organization the key is
// not in.
type sharedKeyProvider struct {
	srv         *httptest.Server
	mu          sync.Mutex
	accepted    map[string]bool
	refusedUser string
	served      map[string]int // key → completions answered 200
	refused     map[string]int // key → completions answered 401
}

func newSharedKeyProvider(t *testing.T, refusedUser string) *sharedKeyProvider {
	p := &sharedKeyProvider{accepted: map[string]bool{}, refusedUser: refusedUser, served: map[string]int{}, refused: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *sharedKeyProvider) accept(key string) {
	p.mu.Lock()
	p.accepted[key] = true
	p.mu.Unlock()
}

// revoke refuses key from now on, as the provider does with a key revoked
// in its console.
func (p *sharedKeyProvider) revoke(key string) {
	p.mu.Lock()
	p.accepted[key] = false
	p.mu.Unlock()
}

func (p *sharedKeyProvider) servedWith(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served[key]
}

func (p *sharedKeyProvider) refusedWith(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused[key]
}

func (p *sharedKeyProvider) serve(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	good := ok && p.accepted[key]
	p.mu.Unlock()
	refuse := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}`)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		if !good {
			refuse()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		var body struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
			User     string            `json:"user"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Model == "" || len(body.Messages) == 0 {
			http.Error(w, `{"error":{"message":"invalid body"}}`, http.StatusBadRequest)
			return
		}
		if !good || body.User == p.refusedUser {
			p.mu.Lock()
			p.refused[key]++
			p.mu.Unlock()
			refuse()
			return
		}
		p.mu.Lock()
		p.served[key]++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	default:
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
	}
}

// newSharedKeyAPI is newAPI (mode all) whose key checks and proxied calls
// go to provider, with workspace-limited resolver tokens for the tenants
// ws-a, ws-b and ws-c (named like them), and the organization acme's key
// and the hosted key, both accepted by the provider; ws-a and ws-b belong
// to acme, ws-c to no organization. It returns the two keys.
func newSharedKeyAPI(t *testing.T, provider *sharedKeyProvider) (a *api, orgKey, hostedKey string) {
	t.Helper()
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": provider.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	a = newAPIOpts(t, handlers.ModeAll, checker, func(o *handlers.Options, g *keyGround) {
		signer, err := proxytoken.NewSigner([]byte("handlers-test-pepper"), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := proxy.NewRecorder(g.st, 20*time.Millisecond, o.Logger)
		t.Cleanup(rec.Close)
		p, err := proxy.New(proxy.Config{Keys: g.keys, Providers: g.keys.Providers(), BaseURLs: map[string]string{"openai": provider.srv.URL},
			Recorder: rec, Logger: o.Logger})
		if err != nil {
			t.Fatal(err)
		}
		o.Proxy, o.ProxyTokens, o.ProxyCalls = p, signer, g.st
	})
	for _, ws := range []string{"ws-a", "ws-b", "ws-c"} {
		tok, rec, err := a.ground.minter.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{ws},
			CreatedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		a.tokens[ws], a.ids[ws] = remember(tok), rec.ID
	}
	orgKey, hostedKey = openaiKey(t), openaiKey(t)
	provider.accept(orgKey)
	provider.accept(hostedKey)
	for path, key := range map[string]string{"/v1/organizations/acme/providers/openai/keys": orgKey, "/v1/hosted/providers/openai/keys": hostedKey} {
		if r := a.call("operator", "POST", path, client.AddKeyRequest{KeyID: "main", APIKey: key}); r.status != http.StatusCreated {
			t.Fatalf("add %s: %d %s", path, r.status, r.body)
		}
	}
	for _, ws := range []string{"ws-a", "ws-b"} {
		if r := a.call("operator", "PUT", "/v1/workspaces/"+ws+"/settings", map[string]any{"organization": "acme"}); r.status != http.StatusOK {
			t.Fatalf("link %s: %d %s", ws, r.status, r.body)
		}
	}
	return a, orgKey, hostedKey
}

// resolveAs resolves for ws with its tenant's token.
func (a *api) resolveAs(t *testing.T, ws string) (answer, client.ResolveResponse) {
	t.Helper()
	r := a.call(ws, "POST", "/v1/resolve", client.ResolveRequest{Workspace: ws, Provider: "openai"})
	var res client.ResolveResponse
	if r.status == http.StatusOK {
		r.decode(t, &res)
		remember(res.APIKey)
	}
	return r, res
}

// healthOf is a key's health as an operator reads it.
func (a *api) healthOf(t *testing.T, path string) string {
	t.Helper()
	var meta client.KeyMetadata
	r := a.call("operator", "GET", path, nil)
	r.decode(t, &meta)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return meta.Health
}

const (
	orgKeyPath    = "/v1/organizations/acme/providers/openai/keys/main"
	hostedKeyPath = "/v1/hosted/providers/openai/keys/main"
)

// TestOneTenantsReportsLeaveSharedKeysServingTheOthers: issue 28, item 2.
// A resolver token limited to ws-a resolves its organization's key and
// the hosted key and reports them unauthorized, many times. keybroker
// checks them with the provider, which accepts them: both stay healthy,
// every other tenant is served by them, and ws-a alone is not (429
// keys_cooling_down with Retry-After, as the provider itself would say).
func TestOneTenantsReportsLeaveSharedKeysServingTheOthers(t *testing.T) {
	provider := newSharedKeyProvider(t, "")
	a, orgKey, hostedKey := newSharedKeyAPI(t, provider)
	_, res := a.resolveAs(t, "ws-a")
	if res.Scope != "organization" {
		t.Fatalf("ws-a before its reports: %+v", res)
	}
	for i := range 30 {
		var rep client.ReportResult
		r := a.call("ws-a", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "unauthorized"})
		r.decode(t, &rep)
		if r.status != http.StatusOK || rep.Health != "cooling_down" || rep.Changed != (i == 0) {
			t.Fatalf("report %d of the organization's key: %d %s", i, r.status, r.body)
		}
	}
	_, res = a.resolveAs(t, "ws-a")
	if res.Scope != "hosted" || res.FallbackReason != "organization_keys_unavailable" {
		t.Fatalf("ws-a after reporting the organization's key: %+v", res)
	}
	for range 30 {
		if r := a.call("ws-a", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "unauthorized"}); r.status != http.StatusOK {
			t.Fatalf("report of the hosted key: %d %s", r.status, r.body)
		}
	}
	// ws-a: nothing else may serve it; it is told to come back later.
	r, _ := a.resolveAs(t, "ws-a")
	retry, _ := strconv.Atoi(r.header.Get("Retry-After"))
	var eb client.ErrorBody
	r.decode(t, &eb)
	if r.status != http.StatusTooManyRequests || eb.Error.Code != "keys_cooling_down" || retry < 1 || retry > 37 ||
		eb.Error.Reason != "organization_keys_cooling_down" && eb.Error.Reason != "hosted_keys_cooling_down" {
		t.Fatalf("ws-a with both shared keys cooling down for it: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if err := a.ground.keys.WaitVerifications(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{orgKeyPath, hostedKeyPath} {
		if h := a.healthOf(t, path); h != "healthy" {
			t.Fatalf("%s after one tenant's reports: %s, want healthy", path, h)
		}
	}
	for range 5 {
		if _, res := a.resolveAs(t, "ws-b"); res.Scope != "organization" || res.APIKey != orgKey {
			t.Fatalf("ws-b after ws-a's reports: %+v", res)
		}
		if _, res := a.resolveAs(t, "ws-c"); res.Scope != "hosted" || res.APIKey != hostedKey {
			t.Fatalf("ws-c after ws-a's reports: %+v", res)
		}
	}
}

// proxied sends a chat completion through the proxy with a proxy token,
// as a sandbox's unmodified SDK would, naming user in the body.
func proxied(t *testing.T, a *api, token, user string) (int, http.Header) {
	t.Helper()
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"user":"` + user + `"}`
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		errorBodies.Write(b)
		errorBodies.Write([]byte("\n"))
	}
	return resp.StatusCode, resp.Header
}

// TestOneTenantsProxied401sLeaveSharedKeysServingTheOthers: issue 28,
// item 2, through the credential proxy. The provider answers 401 to every
// call of ws-a's sandbox (and only to those): the proxy reports each
// refusal and retries with the next key, so each call marks two shared
// keys — for that sandbox's token alone. keybroker's own checks find both
// keys accepted: ws-b's sandbox is served by the organization's key and
// ws-c's by the hosted key, both keys stay healthy, and ws-a's own other
// callers (its resolver token, another sandbox) are still served the
// organization's key.
func TestOneTenantsProxied401sLeaveSharedKeysServingTheOthers(t *testing.T) {
	provider := newSharedKeyProvider(t, "tenant-a")
	a, orgKey, hostedKey := newSharedKeyAPI(t, provider)
	token := func(ws string) string {
		r := a.call(ws, "POST", "/v1/proxy-tokens", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"openai"}, TTLSeconds: 600})
		var tok client.ProxyToken
		r.decode(t, &tok)
		if r.status != http.StatusCreated {
			t.Fatalf("mint a proxy token for %s: %d %s", ws, r.status, r.body)
		}
		return remember(tok.Token)
	}
	sandboxA, sandboxB, sandboxC := token("ws-a"), token("ws-b"), token("ws-c")
	for i := range 10 {
		if status, _ := proxied(t, a, sandboxA, "tenant-a"); status == http.StatusOK {
			t.Fatalf("call %d of ws-a's sandbox was served", i)
		}
	}
	if err := a.ground.keys.WaitVerifications(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{orgKeyPath, hostedKeyPath} {
		if h := a.healthOf(t, path); h != "healthy" {
			t.Fatalf("%s after ws-a's refused calls: %s, want healthy", path, h)
		}
	}
	for range 3 {
		if status, h := proxied(t, a, sandboxB, "tenant-b"); status != http.StatusOK || h.Get("X-Keybroker-Scope") != "organization" {
			t.Fatalf("ws-b's sandbox after ws-a's refused calls: %d, scope %q", status, h.Get("X-Keybroker-Scope"))
		}
		if status, h := proxied(t, a, sandboxC, "tenant-c"); status != http.StatusOK || h.Get("X-Keybroker-Scope") != "hosted" {
			t.Fatalf("ws-c's sandbox after ws-a's refused calls: %d, scope %q", status, h.Get("X-Keybroker-Scope"))
		}
	}
	if provider.servedWith(orgKey) != 3 || provider.servedWith(hostedKey) != 3 {
		t.Fatalf("completions served: %d with the organization's key, %d with the hosted key; want 3 and 3",
			provider.servedWith(orgKey), provider.servedWith(hostedKey))
	}
	// The refusals were the sandbox's calls', not ws-a's: ws-a's other
	// callers are served the organization's key as before.
	if _, res := a.resolveAs(t, "ws-a"); res.Scope != "organization" || res.APIKey != orgKey {
		t.Fatalf("ws-a's resolver after its sandbox's refused calls: %+v, want the organization's key", res)
	}
	if status, h := proxied(t, a, token("ws-a"), "tenant-a-other"); status != http.StatusOK || h.Get("X-Keybroker-Scope") != "organization" {
		t.Fatalf("another sandbox of ws-a after the first's refused calls: %d, scope %q", status, h.Get("X-Keybroker-Scope"))
	}
	// The refused sandbox itself is not sent to either key again for the
	// cooldown: nothing else may serve it.
	if status, h := proxied(t, a, sandboxA, "tenant-a"); status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("the refused sandbox's next call: %d, want 429 keys_cooling_down with Retry-After", status)
	}
}

// TestTheGoLibraryFailsOverFromASharedKeyItReports: the Go library holds
// answers in the caller's memory, evicted by the watch stream; a report
// about a shared key changes it for the reporting workspace alone, so no
// change comes back on the stream. The library drops the reported answer
// itself: its next resolve is served the next key, and once nothing else
// may serve, the client's error says when to retry.
func TestTheGoLibraryFailsOverFromASharedKeyItReports(t *testing.T) {
	provider := newSharedKeyProvider(t, "")
	a, orgKey, hostedKey := newSharedKeyAPI(t, provider)
	c, err := client.New(client.Config{Address: a.srv.URL, Token: a.tokens["ws-a"]})
	if err != nil {
		t.Fatal(err)
	}
	lib, err := resolver.New(resolver.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lib.Close)
	for deadline := time.Now().Add(10 * time.Second); !lib.Connected(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the library's watch stream does not connect")
		}
	}
	ctx := context.Background()
	res, err := lib.Resolve(ctx, "ws-a", "openai", "")
	if err != nil || res.APIKey != orgKey {
		t.Fatalf("before the report: %v %v", res, err)
	}
	if _, err := lib.Report(ctx, res.ResolutionID, "rate_limited"); err != nil {
		t.Fatal(err)
	}
	res, err = lib.Resolve(ctx, "ws-a", "openai", "")
	if err != nil || res.APIKey != hostedKey {
		t.Fatalf("after reporting the organization's key: %v %v, want the hosted key", res, err)
	}
	if _, err := lib.Report(ctx, res.ResolutionID, "rate_limited"); err != nil {
		t.Fatal(err)
	}
	_, err = lib.Resolve(ctx, "ws-a", "openai", "")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "keys_cooling_down" ||
		apiErr.RetryAfter < time.Second || apiErr.RetryAfter > 37*time.Second {
		t.Fatalf("with both shared keys cooling down for ws-a: %v, want 429 keys_cooling_down with its Retry-After", err)
	}
}
