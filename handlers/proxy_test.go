package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// newProxyAPI is newAPI (mode all) with the credential proxy, its calls
// forwarded to baseURLs (provider id → stand-in) and recorded every 20 ms;
// tune may change the proxy's settings.
func newProxyAPI(t *testing.T, baseURLs map[string]string, tune ...func(*proxy.Config)) *api {
	t.Helper()
	return newProxyAPIGround(t, kbtest.Options{}, baseURLs, tune...)
}

// newProxyAPIGround is newProxyAPI with the harness's options (the
// broker's token-service addresses: gopts.Broker).
func newProxyAPIGround(t *testing.T, gopts kbtest.Options, baseURLs map[string]string, tune ...func(*proxy.Config)) *api {
	t.Helper()
	return newAPIGround(t, handlers.ModeAll, gopts, func(o *handlers.Options, g *keyGround) {
		signer, err := proxytoken.NewSigner([]byte("handlers-test-pepper"), nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := proxy.NewRecorder(g.st, 20*time.Millisecond, o.Logger)
		t.Cleanup(rec.Close)
		cfg := proxy.Config{Keys: g.keys, Providers: g.keys.Providers(), BaseURLs: baseURLs, Recorder: rec, Logger: o.Logger}
		for _, f := range tune {
			f(&cfg)
		}
		p, err := proxy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		o.Proxy, o.ProxyTokens, o.ProxyCalls = p, signer, g.st
	})
}

// standIn is a provider's API as far as the proxy can tell: it checks
// the key header the provider expects, records the keys it saw and any
// credential that should never have reached it, and answers by path.
type standIn struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	seen     []string // keys, in order
	leaks    []string // headers that must not arrive
	refuse   map[string]int
	events   int
	interval time.Duration
}

func newStandIn(t *testing.T) *standIn {
	s := &standIn{t: t, refuse: map[string]int{}, events: 5, interval: 60 * time.Millisecond}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *standIn) serve(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.seen = append(s.seen, key)
	for _, h := range []string{"X-Api-Key", "X-Goog-Api-Key", "Cookie", "X-Keybroker-Workspace", "Proxy-Authorization", "Openai-Organization", "Openai-Project"} {
		if r.Header.Get(h) != "" {
			s.leaks = append(s.leaks, h)
		}
	}
	for h, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, "kbt_") || strings.Contains(v, "kbp_") {
				s.leaks = append(s.leaks, h+" carries a keybroker token")
			}
		}
	}
	if r.URL.Query().Has("key") {
		s.leaks = append(s.leaks, "?key=")
	}
	status := s.refuse[key]
	s.mu.Unlock()
	if !ok || key == "" {
		http.Error(w, `{"error":{"message":"missing key"}}`, http.StatusUnauthorized)
		return
	}
	if status != 0 {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":{"message":"refused"}}`)
		return
	}
	// The call's body says how to misbehave (a real provider's paths are
	// all the proxy forwards).
	var body struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Scenario string `json:"scenario"`
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	switch body.Scenario {
	case "hang":
		// The body is read first: only then does net/http notice that the
		// proxy hung up (and end the request's context).
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		return
	case "redirect":
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		return
	case "big":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"pad":"`+strings.Repeat("b", 5000)+`"}`)
		return
	case "reset":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			if tcp, ok := conn.(*net.TCPConn); ok {
				_ = tcp.SetLinger(0) // a reset, not a clean close
			}
			conn.Close()
		}
		return
	}
	// As OpenAI does: the account behind the key, and a cookie.
	w.Header().Set("Openai-Organization", "org-keyowner")
	w.Header().Set("Openai-Project", "proj_keyowner")
	w.Header().Set("Set-Cookie", "__cf_bm=keyowner; path=/")
	if !body.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"id":"cmpl-1","model":%q,"path":%q,"query":%q}`, body.Model, r.URL.Path, r.URL.RawQuery)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for i := range s.events {
		_, _ = fmt.Fprintf(w, "data: {\"chunk\":%d}\n\n", i)
		w.(http.Flusher).Flush()
		time.Sleep(s.interval)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

func (s *standIn) keysSeen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *standIn) leaked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.leaks...)
}

// proxyCall sends a call to the proxy with a plain client (the answers
// are the provider's, not the API's); headers are name, value pairs.
func (a *api) proxyCall(method, path, body string, headers ...string) (*http.Response, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// noRedirects is the test's client: a redirect the proxy passes back is
// looked at, not followed.
var noRedirects = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (a *api) mintProxyToken(as string, req client.ProxyTokenRequest) client.ProxyToken {
	a.t.Helper()
	r := a.call(as, "POST", "/v1/proxy-tokens", req)
	if r.status != http.StatusCreated {
		a.t.Fatalf("mint a proxy token: %d %s", r.status, r.body)
	}
	var tok client.ProxyToken
	if err := json.Unmarshal(r.body, &tok); err != nil {
		a.t.Fatal(err)
	}
	remember(tok.Token)
	return tok
}

func (a *api) addPoolKey(ws, provider, keyID, key string, priority int) {
	a.t.Helper()
	remember(key)
	if r := a.call("operator", "POST", "/v1/workspaces/"+ws+"/providers/"+provider+"/keys", client.AddKeyRequest{APIKey: key, KeyID: keyID, Priority: &priority}); r.status != http.StatusCreated {
		a.t.Fatalf("add key %s: %d %s", keyID, r.status, r.body)
	}
}

func openaiTestKey(tag string) string { return "sk-proj-proxy-" + tag + strings.Repeat("x", 30) }

// A sandbox's proxy token reaches the provider with the workspace's key
// in the provider's header and none of its own credentials, and a
// streamed completion comes back event by event.
func TestTheProxyInjectsTheKeyAndStreamsTheAnswer(t *testing.T) {
	provider := newStandIn(t)
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL})
	key := openaiTestKey("a")
	a.addPoolKey("ws1", "openai", "a", key, 0)
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 60})
	if tok.Workspace != "ws1" || !strings.HasPrefix(tok.ID, "ptk_") || time.Until(tok.ExpiresAt) > 61*time.Second {
		t.Fatalf("minted %+v", tok)
	}

	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions?key=sk-callers-own-query", `{"model":"gpt-4o"}`,
		"Authorization", "Bearer "+tok.Token, "X-Api-Key", "sk-callers-own-key", "Cookie", "session=1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"model":"gpt-4o"`) || !strings.Contains(body, `"path":"/v1/chat/completions"`) {
		t.Fatalf("proxied call: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(fmt.Sprint(resp.Header), "keyowner") {
		t.Errorf("the key owner's account reached the caller: %v", resp.Header)
	}
	if resp.Header.Get("X-Keybroker-Key-Id") != "a" || resp.Header.Get("X-Keybroker-Scope") != "workspace" || resp.Header.Get("X-Keybroker-Byok") != "true" {
		t.Errorf("provenance headers %v", resp.Header)
	}
	if seen := provider.keysSeen(); len(seen) != 1 || seen[0] != key {
		t.Fatalf("the provider saw %d keys; want the workspace's one", len(seen))
	}
	if leaks := provider.leaked(); len(leaks) != 0 {
		t.Fatalf("reached the provider: %v", leaks)
	}
	if strings.Contains(body, key) || strings.Contains(fmt.Sprint(resp.Header), key) {
		t.Fatal("the answer carries the key")
	}

	// A streamed completion: each event arrives when the provider sends
	// it (60 ms apart), not all at the end.
	req, _ := http.NewRequest("POST", a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	var arrivals []time.Time
	sc := bufio.NewScanner(sresp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			arrivals = append(arrivals, time.Now())
		}
	}
	if len(arrivals) != 6 {
		t.Fatalf("%d events, want 6", len(arrivals))
	}
	for i := 1; i < 5; i++ {
		if gap := arrivals[i].Sub(arrivals[i-1]); gap < 40*time.Millisecond {
			t.Fatalf("events %d and %d arrived %v apart; the provider sent them 60 ms apart (buffered?)", i-1, i, gap)
		}
	}

	// Every call is recorded for billing: key, scope, version, status, BYOK.
	var calls []broker.ProxyCall
	waitFor(t, "the proxied calls are recorded", 5*time.Second, func() bool {
		calls, err = a.store.QueryProxyCalls(context.Background(), broker.ProxyCallQuery{Workspace: "ws1", Limit: 10})
		return err == nil && len(calls) == 2
	})
	for _, c := range calls {
		if c.KeyID != "a" || c.Scope != "workspace" || c.KeyVersion != 1 || c.Status != http.StatusOK || !c.BYOK || c.Retried || c.Caller != tok.ID || c.Provider != "openai" {
			t.Errorf("recorded %+v", c)
		}
	}
}

// A refusal before the first byte is retried once with the next key, and
// the first cools down (it no longer resolves); a body too large to keep
// is not retried.
func TestTheProxyFailsOverOnARefusalBeforeTheFirstByte(t *testing.T) {
	provider := newStandIn(t)
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL}, func(c *proxy.Config) { c.RetryBodyLimit, c.Registerer = 256, reg })
	first, second := openaiTestKey("first"), openaiTestKey("second")
	a.addPoolKey("ws1", "openai", "first", first, 0)
	a.addPoolKey("ws1", "openai", "second", second, 1)
	provider.refuse[first] = http.StatusTooManyRequests

	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`,
		"Authorization", "Bearer "+a.tokens["resolver"], "X-Keybroker-Workspace", "ws1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "second" {
		t.Fatalf("after a 429 on the first key: %d, key %q: %s", resp.StatusCode, resp.Header.Get("X-Keybroker-Key-Id"), body)
	}
	if seen := provider.keysSeen(); len(seen) != 2 || seen[0] != first || seen[1] != second {
		t.Fatalf("the provider saw %d calls; want the first key, then the second", len(seen))
	}
	// The first key cools down: a resolve now gives the second.
	r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"keyId":"second"`) {
		t.Fatalf("resolve after the proxy's 429: %d %s", r.status, r.body)
	}
	waitFor(t, "the retried call is recorded", 5*time.Second, func() bool {
		calls, err := a.store.QueryProxyCalls(context.Background(), broker.ProxyCallQuery{Workspace: "ws1", Limit: 10})
		return err == nil && len(calls) == 1 && calls[0].Retried && calls[0].KeyID == "second"
	})

	// In another workspace, a body over the retry limit goes through once:
	// the provider's 429 (and its Retry-After) comes back as it was.
	only := openaiTestKey("only")
	a.addPoolKey("ws2", "openai", "only", only, 0)
	other := openaiTestKey("other")
	a.addPoolKey("ws2", "openai", "other", other, 1)
	provider.refuse[only] = http.StatusTooManyRequests
	big := `{"model":"gpt-4o","pad":"` + strings.Repeat("p", 512) + `"}`
	resp, _ = a.proxyCall("POST", "/proxy/openai/v1/chat/completions", big, "Authorization", "Bearer "+a.tokens["resolver"], "X-Keybroker-Workspace", "ws2")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" || resp.Header.Get("X-Keybroker-Key-Id") != "only" {
		t.Fatalf("a large body refused: %d, Retry-After %q, key %q; want the provider's 429 as it was", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Keybroker-Key-Id"))
	}
	if n := len(provider.keysSeen()); n != 3 {
		t.Fatalf("the provider saw %d calls; a body over the limit must not be retried", n)
	}
	// Prometheus counts them: two calls, one retried, by status class.
	if got := counterValue(t, reg, "keybroker_proxy_retries_total", "provider", "openai"); got != 1 {
		t.Errorf("keybroker_proxy_retries_total = %v, want 1", got)
	}
	if got := counterValue(t, reg, "keybroker_proxy_calls_total", "status_class", "2xx"); got != 1 {
		t.Errorf("keybroker_proxy_calls_total{status_class=2xx} = %v, want 1", got)
	}
	if got := counterValue(t, reg, "keybroker_proxy_calls_total", "status_class", "4xx"); got != 1 {
		t.Errorf("keybroker_proxy_calls_total{status_class=4xx} = %v, want 1", got)
	}
	// Three answers came from the provider (the refused, the retried, the
	// large body's); no call is in flight any more.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		switch f.GetName() {
		case "keybroker_proxy_upstream_header_seconds":
			seen[f.GetName()] = true
			if h := f.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 3 || h.GetSampleSum() <= 0 {
				t.Errorf("upstream header times: %d samples, sum %v; want 3", h.GetSampleCount(), h.GetSampleSum())
			}
		case "keybroker_proxy_calls_in_flight":
			seen[f.GetName()] = true
			if v := f.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Errorf("%v calls in flight after every call ended", v)
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("metrics exported: %v; want the header histogram and the in-flight gauge", seen)
	}
}

// counterValue sums a counter's series whose label has value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// A proxy token's calls are rate limited: charged to it, as every token's
// requests are, and to the resolver token that minted it; another
// resolver's proxy token is unaffected.
func TestAProxyTokenIsRateLimited(t *testing.T) {
	provider := newStandIn(t)
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
		signer, err := proxytoken.NewSigner([]byte("handlers-test-pepper"), nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := proxy.New(proxy.Config{Keys: g.keys, Providers: g.keys.Providers(), BaseURLs: map[string]string{"openai": provider.srv.URL}, Logger: o.Logger})
		if err != nil {
			t.Fatal(err)
		}
		o.Proxy, o.ProxyTokens, o.ProxyCalls = p, signer, g.st
		o.Limiter = auth.NewLimiter(auth.RateLimits{PerToken: 0.001, PerTokenBurst: 4}, nil)
	})
	a.addPoolKey("ws1", "openai", "k", openaiTestKey("limited"), 0)
	one := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	other := a.mintProxyToken("resolver2", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	// The resolver token spent one request of its burst of 4 minting: its
	// proxy token's calls use up the rest.
	for i := range 3 {
		if resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+one.Token); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d within the burst: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+one.Token)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"rate_limited"`) {
		t.Fatalf("past the burst: %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+other.Token); resp.StatusCode != http.StatusOK {
		t.Fatalf("another proxy token: %d %s", resp.StatusCode, body)
	}
}

// What the proxy must refuse, and the faults of a provider.
func TestTheProxyRefusesWhatItMustNotForwardAndSurvivesABadProvider(t *testing.T) {
	provider := newStandIn(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL, "mistral": closed.URL}, func(c *proxy.Config) {
		c.HeaderTimeout, c.MaxResponseBytes, c.MaxRequestBytes = 300*time.Millisecond, 4096, 8192
	})
	key := openaiTestKey("k")
	a.addPoolKey("ws1", "openai", "k", key, 0)
	a.addPoolKey("ws1", "mistral", "m", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", 0)
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai", "mistral"}, Models: []string{"gpt-4o"}})
	bearer := "Bearer " + tok.Token
	short := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 1})
	byRevoked := a.mintProxyToken("resolver2", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	if r := a.call("operator", "DELETE", "/v1/tokens/"+a.ids["resolver2"], nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke resolver2: %d", r.status)
	}
	time.Sleep(1100 * time.Millisecond) // let the short token expire
	flipped := []byte(tok.Token)
	flipped[12] ^= 1

	gpt := `{"model":"gpt-4o"}`
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
	}{
		{"no token", "POST", "/proxy/openai/v1/chat/completions", gpt, nil, 401, "unauthenticated"},
		{"a tampered token", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", "Bearer " + string(flipped)}, 401, "unauthenticated"},
		{"an expired proxy token", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", "Bearer " + short.Token}, 401, "unauthenticated"},
		{"a token whose issuer was revoked", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", "Bearer " + byRevoked.Token}, 401, "unauthenticated"},
		{"an admin token", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", "Bearer " + a.tokens["admin"], "X-Keybroker-Workspace", "ws1"}, 403, "forbidden"},
		{"a resolver token without a workspace", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", "Bearer " + a.tokens["resolver"]}, 400, "invalid_request"},
		{"an unknown provider", "POST", "/proxy/nosuch/v1/chat/completions", gpt, []string{"Authorization", bearer}, 404, "unknown_provider"},
		{"a provider the token does not allow", "POST", "/proxy/anthropic/v1/messages", gpt, []string{"Authorization", bearer}, 403, "provider_not_allowed"},
		{"another workspace", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", bearer, "X-Keybroker-Workspace", "ws2"}, 403, "forbidden"},
		{"a model the token does not allow", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4.1"}`, []string{"Authorization", bearer}, 403, "model_not_allowed"},
		// The model checked is the one the provider will serve, however
		// the sandbox words its call.
		{"an allowed model named in the header, another in the body", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4.1"}`, []string{"Authorization", bearer, "X-Keybroker-Model", "gpt-4o"}, 403, "model_not_allowed"},
		{"an allowed model under another case", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4.1","Model":"gpt-4o"}`, []string{"Authorization", bearer}, 403, "model_not_allowed"},
		{"an allowed model, then another", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","model":"gpt-4.1"}`, []string{"Authorization", bearer}, 403, "model_not_allowed"},
		{"a model in a body not declared JSON", "POST", "/proxy/openai/v1/chat/completions", gpt, []string{"Authorization", bearer, "Content-Type", "text/plain"}, 403, "model_not_allowed"},
		{"a call naming no model, with the header", "GET", "/proxy/openai/v1/models", "", []string{"Authorization", bearer, "X-Keybroker-Model", "gpt-4o"}, 403, "model_not_allowed"},
		{"a path that is no inference endpoint", "GET", "/proxy/openai/admin/keys", "", []string{"Authorization", bearer, "X-Keybroker-Model", "gpt-4o"}, 403, "endpoint_not_allowed"},
		{"an encoded dot segment", "GET", "/proxy/openai/v1/%2e%2e/admin", "", []string{"Authorization", bearer, "X-Keybroker-Model", "gpt-4o"}, 403, "path_not_allowed"},
		{"a provider that hangs", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","scenario":"hang"}`, []string{"Authorization", bearer}, 504, "upstream_timeout"},
		{"a provider that cannot be reached", "POST", "/proxy/mistral/v1/chat/completions", gpt, []string{"Authorization", bearer}, 502, "upstream_unreachable"},
		{"a body over the bound", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","pad":"` + strings.Repeat("p", 9000) + `"}`, []string{"Authorization", bearer}, 413, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := a.proxyCall(tc.method, tc.path, tc.body, tc.headers...)
			if resp.StatusCode != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
				t.Fatalf("%d %s; want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if strings.Contains(body, key) || strings.Contains(body, tok.Token) {
				t.Fatal("the error carries a secret")
			}
		})
	}
	if leaks := provider.leaked(); len(leaks) != 0 {
		t.Fatalf("reached the provider: %v", leaks)
	}

	// The keybroker token in x-api-key (where Anthropic's SDK puts its
	// key) works as well as in Authorization, which is stripped.
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", gpt, "X-Api-Key", tok.Token, "Authorization", "Bearer sk-callers-own-0123456789")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token in x-api-key: %d %s", resp.StatusCode, body)
	}
	if seen := provider.keysSeen(); seen[len(seen)-1] != key {
		t.Fatal("the caller's own Authorization reached the provider")
	}

	// A redirect is not followed: it goes back to the caller as it came.
	calls := len(provider.keysSeen())
	resp, _ = a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","scenario":"redirect"}`, "Authorization", bearer)
	if resp.StatusCode != http.StatusFound || len(provider.keysSeen()) != calls+1 {
		t.Fatalf("a redirect: %d after %d calls; want the 302 back and one call", resp.StatusCode, len(provider.keysSeen())-calls)
	}

	// An answer over the bound is cut.
	for _, scenario := range []string{"big", "reset"} {
		req, _ := http.NewRequest("POST", a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","scenario":"`+scenario+`"}`))
		req.Header.Set("Authorization", bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // cut before the headers: as good
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: the answer came back complete; want it cut", scenario)
		}
	}

	// A provider that resets the connection mid-stream: the caller's
	// answer is cut, never made to look complete.
	req, _ := http.NewRequest("POST", a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","scenario":"reset"}`))
	req.Header.Set("Authorization", bearer)
	req.Header.Set("Content-Type", "application/json")
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := io.ReadAll(sresp.Body)
	sresp.Body.Close()
	if err == nil {
		t.Fatalf("a stream the provider cut came back complete: %d %q", sresp.StatusCode, cut)
	}

	// Minting: bad input changes nothing and says why.
	for _, tc := range []struct {
		as     string
		body   any
		status int
		code   string
	}{
		{"resolver", `{"workspace":`, 400, "malformed_json"},
		{"resolver", client.ProxyTokenRequest{Workspace: "ws1"}, 400, "invalid_request"},
		{"resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"nosuch"}}, 400, "unknown_provider"},
		{"resolver", client.ProxyTokenRequest{Workspace: "Bad/Id", Providers: []string{"openai"}}, 400, "invalid_id"},
		{"resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 7200}, 400, "invalid_request"},
		{"resolver", `{"workspace":"ws1","providers":["openai"],"extra":1}`, 400, "malformed_json"},
		{"resolver", `{"workspace":"ws1","providers":["openai"],"pad":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "body_too_large"},
		{"admin", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}}, 403, "forbidden"},
		{"", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}}, 401, "unauthenticated"},
	} {
		if r := a.call(tc.as, "POST", "/v1/proxy-tokens", tc.body); r.status != tc.status || !strings.Contains(string(r.body), `"code":"`+tc.code+`"`) {
			t.Errorf("mint as %q with %v: %d %s; want %d %s", tc.as, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
}

// waitFor polls ok every 10 ms until it holds, failing after within.
func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	for start := time.Now(); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}

// The model that picks a key limited to models is the call's own: a
// resolver token's X-Keybroker-Model counts only when the call names
// none (a multipart upload), and a sandbox's proxy token is never taken
// at its word.
func TestTheModelHeaderIsAHintOfTrustedCallersOnly(t *testing.T) {
	provider := newStandIn(t)
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL}, func(c *proxy.Config) {
		c.AllowEndpoints = []string{"openai=POST /v1/audio/transcriptions"} // no inference endpoint by default
	})
	mini, anyModel := openaiTestKey("mini"), openaiTestKey("any")
	remember(mini)
	remember(anyModel)
	prio0 := 0
	if r := a.call("operator", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: mini, KeyID: "mini", Priority: &prio0, Models: []string{"whisper-1"}}); r.status != http.StatusCreated {
		t.Fatalf("add mini: %d %s", r.status, r.body)
	}
	a.addPoolKey("ws1", "openai", "any", anyModel, 1)
	sandbox := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	multipart := func(auth string, header ...string) string {
		t.Helper()
		resp, body := a.proxyCall("POST", "/proxy/openai/v1/audio/transcriptions", "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n",
			append([]string{"Authorization", auth, "Content-Type", "multipart/form-data; boundary=b"}, header...)...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("transcription: %d %s", resp.StatusCode, body)
		}
		return resp.Header.Get("X-Keybroker-Key-Id")
	}
	resolver := "Bearer " + a.tokens["resolver"]
	if got := multipart(resolver, "X-Keybroker-Workspace", "ws1", "X-Keybroker-Model", "whisper-1"); got != "mini" {
		t.Fatalf("a resolver token's hint on a multipart call: key %q, want mini", got)
	}
	if got := multipart(resolver, "X-Keybroker-Workspace", "ws1"); got != "any" {
		t.Fatalf("no hint: key %q, want any (mini serves only its model)", got)
	}
	if got := multipart("Bearer "+sandbox.Token, "X-Keybroker-Model", "whisper-1"); got != "any" {
		t.Fatalf("a proxy token's hint was taken: key %q, want any", got)
	}
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`,
		"Authorization", resolver, "X-Keybroker-Workspace", "ws1", "X-Keybroker-Model", "whisper-1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "any" || !strings.Contains(body, `"model":"gpt-4o"`) {
		t.Fatalf("the body's model must win over the hint: %d key %q %s", resp.StatusCode, resp.Header.Get("X-Keybroker-Key-Id"), body)
	}
}
