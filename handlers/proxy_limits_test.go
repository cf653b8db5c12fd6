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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// gateProvider is a provider whose answers wait for the test: each call
// is held (after its body is read) until release is closed. It checks the
// key and counts the calls it holds at once.
type gateProvider struct {
	srv     *httptest.Server
	key     string
	release chan struct{}

	mu                sync.Mutex
	held, most, total int
	wrongKey          int
}

func newGateProvider(t *testing.T, key string) *gateProvider {
	g := &gateProvider{key: key, release: make(chan struct{})}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	t.Cleanup(g.open)
	return g
}

func (g *gateProvider) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+g.key {
		g.mu.Lock()
		g.wrongKey++
		g.mu.Unlock()
		http.Error(w, `{"error":{"message":"invalid key"}}`, http.StatusUnauthorized)
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return // the caller's body broke off
	}
	g.mu.Lock()
	g.held++
	g.total++
	g.most = max(g.most, g.held)
	release := g.release
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.held--
		g.mu.Unlock()
	}()
	select {
	case <-release:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"cmpl-held"}`)
}

// open releases every held call; later calls are held again.
func (g *gateProvider) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

func (g *gateProvider) counts() (held, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.most
}

// background sends a call whose answer is held; its status arrives on
// the channel when the call ends.
func (a *api) background(path, body string, headers ...string) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", a.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

func mistralTestKey(tag string) string { return remember((tag + strings.Repeat("M", 32))[:32]) }

// Slow calls cannot pile up: a proxy token, a workspace and the replica
// each have a bound of calls in flight, and a call past one is refused at
// once with 429 and Retry-After, naming the bound. However many calls
// come at once, the provider never holds more than the replica's bound.
func TestProxyCallsInFlightAreBounded(t *testing.T) {
	key := mistralTestKey("gate")
	gate := newGateProvider(t, key)
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"mistral": gate.srv.URL}, func(c *proxy.Config) {
		c.MaxInFlight, c.MaxInFlightPerWorkspace, c.MaxInFlightPerToken, c.Registerer = 4, 3, 2, reg
	})
	for _, ws := range []string{"ws1", "ws2", "ws3"} {
		a.addPoolKey(ws, "mistral", "m", key, 0)
	}
	mint := func(ws string) string {
		return "Bearer " + a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"mistral"}}).Token
	}
	a1, a2, a3, b, c := mint("ws1"), mint("ws1"), mint("ws1"), mint("ws2"), mint("ws3")
	const path, body = "/proxy/mistral/v1/chat/completions", `{"model":"mistral-large-latest"}`
	var pending []<-chan int
	hold := func(auth string, want int) {
		t.Helper()
		pending = append(pending, a.background(path, body, "Authorization", auth))
		waitFor(t, fmt.Sprintf("%d calls held by the provider", want), 10*time.Second, func() bool { held, _ := gate.counts(); return held == want })
	}
	refused := func(auth, bound string, header ...string) {
		t.Helper()
		resp, answer := a.proxyCall("POST", path, body, append([]string{"Authorization", auth}, header...)...)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
			!strings.Contains(answer, `"code":"too_many_calls"`) || !strings.Contains(answer, bound) {
			t.Fatalf("past the %s bound: %d %s (Retry-After %q)", bound, resp.StatusCode, answer, resp.Header.Get("Retry-After"))
		}
	}
	hold(a1, 1)
	hold(a1, 2)
	refused(a1, "this proxy token")
	hold(a2, 3)
	refused(a3, "this workspace")
	refused("Bearer "+a.tokens["resolver"], "this workspace", "X-Keybroker-Workspace", "ws1") // a resolver token's own calls too
	hold(b, 4)
	refused(c, "this replica")

	// Many more at once change nothing: all refused, none reaches the
	// provider.
	var wg sync.WaitGroup
	var over atomic.Int32
	for range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", a.srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", c)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests {
					over.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := over.Load(); n != 24 {
		t.Fatalf("%d of 24 calls past the replica's bound were refused", n)
	}
	gate.open()
	for i, done := range pending {
		if status := <-done; status != http.StatusOK {
			t.Fatalf("held call %d: %d", i+1, status)
		}
	}
	if _, most := gate.counts(); most != 4 {
		t.Fatalf("the provider held %d calls at once; the replica's bound is 4", most)
	}
	// The bounds are given back when calls end.
	if resp, answer := a.proxyCall("POST", path, body, "Authorization", c); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the held calls ended: %d %s", resp.StatusCode, answer)
	}
	for bound, want := range map[string]float64{"token": 1, "workspace": 2, "replica": 25} {
		if got := counterValue(t, reg, "keybroker_proxy_bounded_total", "bound", bound); got != want {
			t.Errorf("keybroker_proxy_bounded_total{bound=%q} = %v, want %v", bound, got, want)
		}
	}
}

// A few workspaces cannot take every call slot of a replica: the last
// quarter is kept for workspaces with few calls in flight (fewer than an
// eighth of their own bound, at least one). Here a replica of 8 calls and
// 4 per workspace: two workspaces holding 6 calls leave the last 2 to
// workspaces with no call in flight: one already calling gets neither, a
// new one does.
func TestAFewWorkspacesCannotTakeEveryCallSlot(t *testing.T) {
	key := mistralTestKey("reserve")
	gate := newGateProvider(t, key)
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"mistral": gate.srv.URL}, func(c *proxy.Config) {
		c.MaxInFlight, c.MaxInFlightPerWorkspace, c.MaxInFlightPerToken, c.Registerer = 8, 4, 4, reg
	})
	auths := map[string]string{}
	for _, ws := range []string{"heavy1", "heavy2", "light1", "light2"} {
		a.addPoolKey(ws, "mistral", "m", key, 0)
		auths[ws] = "Bearer " + a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"mistral"}}).Token
	}
	const path, body = "/proxy/mistral/v1/chat/completions", `{"model":"mistral-large-latest"}`
	var pending []<-chan int
	hold := func(ws string) {
		t.Helper()
		want := len(pending) + 1
		pending = append(pending, a.background(path, body, "Authorization", auths[ws]))
		waitFor(t, fmt.Sprintf("%d calls held by the provider", want), 10*time.Second, func() bool { held, _ := gate.counts(); return held == want })
	}
	for range 4 {
		hold("heavy1")
	}
	hold("heavy2")
	hold("heavy2")
	resp, answer := a.proxyCall("POST", path, body, "Authorization", auths["heavy2"])
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(answer, "kept for workspaces with no call in flight") {
		t.Fatalf("a third call of a workspace calling already, into the last quarter: %d %s", resp.StatusCode, answer)
	}
	hold("light1")
	hold("light2")
	resp, answer = a.proxyCall("POST", path, body, "Authorization", auths["light1"])
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(answer, "this replica forwards 8 calls at once") {
		t.Fatalf("a call on a full replica: %d %s", resp.StatusCode, answer)
	}
	gate.open()
	for i, done := range pending {
		if status := <-done; status != http.StatusOK {
			t.Fatalf("held call %d: %d", i+1, status)
		}
	}
	if got := counterValue(t, reg, "keybroker_proxy_bounded_total", "bound", "replica_reserve"); got != 1 {
		t.Errorf("keybroker_proxy_bounded_total{bound=replica_reserve} = %v, want 1", got)
	}
}

// The bodies kept for retries are bounded across the calls in flight: a
// call whose body would pass the bound is refused (429), a body too large
// to keep streams through as before.
func TestTheRetryBufferIsBounded(t *testing.T) {
	key := mistralTestKey("buffer")
	gate := newGateProvider(t, key)
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"mistral": gate.srv.URL}, func(c *proxy.Config) {
		c.RetryBodyLimit, c.RetryBufferBytes, c.Registerer = 2048, 2500, reg
	})
	auths := map[string]string{}
	for _, ws := range []string{"ws1", "ws2", "ws3"} {
		a.addPoolKey(ws, "mistral", "m", key, 0)
		auths[ws] = "Bearer " + a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"mistral"}}).Token
	}
	const path = "/proxy/mistral/v1/chat/completions"
	body := func(size int) string {
		b := `{"model":"mistral-large-latest","pad":"`
		return b + strings.Repeat("p", size-len(b)-2) + `"}`
	}
	var pending []<-chan int
	for i, ws := range []string{"ws1", "ws2"} {
		pending = append(pending, a.background(path, body(1000), "Authorization", auths[ws]))
		waitFor(t, "a call held", 10*time.Second, func() bool { held, _ := gate.counts(); return held == i+1 })
	}
	if got := gaugeValue(t, reg, "keybroker_proxy_retry_buffer_bytes"); got != 2000 {
		t.Fatalf("retry buffer %v bytes, want 2000", got)
	}
	resp, answer := a.proxyCall("POST", path, body(1000), "Authorization", auths["ws3"])
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(answer, "request bodies for retries") {
		t.Fatalf("a body past the retry buffer: %d %s", resp.StatusCode, answer)
	}
	// Too large to keep: it streams through, outside the buffer.
	pending = append(pending, a.background(path, body(3000), "Authorization", auths["ws1"]))
	waitFor(t, "the large call held", 10*time.Second, func() bool { held, _ := gate.counts(); return held == 3 })
	gate.open()
	for _, done := range pending {
		if status := <-done; status != http.StatusOK {
			t.Fatalf("a held call: %d", status)
		}
	}
	if got := gaugeValue(t, reg, "keybroker_proxy_retry_buffer_bytes"); got != 0 {
		t.Fatalf("retry buffer %v bytes after every call ended", got)
	}
	if got := counterValue(t, reg, "keybroker_proxy_bounded_total", "bound", "retry_buffer"); got != 1 {
		t.Errorf("keybroker_proxy_bounded_total{bound=retry_buffer} = %v, want 1", got)
	}
}

// The review's case: 128 calls of two workspaces (8 proxy tokens), each
// declaring a body of 1 MiB and sending one byte, held the whole retry
// buffer (128 MiB), and every other workspace's call was refused with 429.
// A body's bytes are now reserved as they arrive: the 128 hold their first
// steps (64 KiB each) and a third workspace's small call is served.
func TestSlowBodiesOfTwoWorkspacesDoNotDenyAThird(t *testing.T) {
	provider := newStandIn(t)
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL}, func(c *proxy.Config) { c.Registerer = reg })
	a.addPoolKey("victim", "openai", "k", openaiTestKey("victim"), 0)
	var tokens []string
	for i := range 8 {
		ws := []string{"tena", "tenb"}[i%2]
		tokens = append(tokens, a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"openai"}}).Token)
	}
	host := strings.TrimPrefix(a.srv.URL, "http://")
	for i := range 128 {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := fmt.Fprintf(conn, "POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{",
			host, tokens[i%8]); err != nil {
			t.Fatal(err)
		}
	}
	const step = 64 << 10
	waitFor(t, "128 slow bodies being read", 20*time.Second, func() bool {
		return gaugeValue(t, reg, "keybroker_proxy_retry_buffer_bytes") >= 128*step
	})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "victim", Providers: []string{"openai"}})
	resp, answer := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a third workspace's 18-byte call while two workspaces' 128 bodies arrive slowly: %d %s", resp.StatusCode, answer)
	}
	if got := gaugeValue(t, reg, "keybroker_proxy_retry_buffer_bytes"); got != 128*step {
		t.Fatalf("128 bodies with one byte sent hold %v bytes of the retry buffer; want %d", got, 128*step)
	}
}

// A kept body is given back to the retry buffer once no retry can happen:
// when the provider's answer starts to go back, not when it ends (a
// stream may last minutes).
func TestAKeptBodyIsReleasedWhenTheAnswerStarts(t *testing.T) {
	key := openaiTestKey("release")
	finish := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "data: {\"chunk\":0}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-finish:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() {
		select {
		case <-finish:
		default:
			close(finish)
		}
	})
	reg := prometheus.NewRegistry()
	a := newProxyAPI(t, map[string]string{"openai": upstream.URL}, func(c *proxy.Config) { c.Registerer = reg })
	a.addPoolKey("ws1", "openai", "k", key, 0)
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	req, _ := http.NewRequest("POST", a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true,"pad":"`+strings.Repeat("p", 5000)+`"}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the stream: %d", resp.StatusCode)
	}
	// The answer's headers have come back and its stream is open.
	if got := gaugeValue(t, reg, "keybroker_proxy_retry_buffer_bytes"); got != 0 {
		t.Fatalf("a streaming answer under way holds %v bytes of the retry buffer; its body can no longer be retried", got)
	}
	close(finish)
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A body that stops half-way is cut at the body's deadline (408), not
// held for the call's 15 minutes, whether it was to be kept or to stream
// through; a call whose body has arrived gets its whole time (a stream
// longer than the body's deadline flows to its end).
func TestAHalfSentBodyIsCutAtTheBodyDeadline(t *testing.T) {
	key := mistralTestKey("slow")
	gate := newGateProvider(t, key)
	gate.open()
	stream := newStandIn(t)
	stream.events, stream.interval = 6, 100*time.Millisecond
	a := newProxyAPI(t, map[string]string{"mistral": gate.srv.URL, "openai": stream.srv.URL}, func(c *proxy.Config) {
		c.BodyTimeout, c.RetryBodyLimit = 300*time.Millisecond, 1024
	})
	a.addPoolKey("ws1", "mistral", "m", key, 0)
	a.addPoolKey("ws1", "openai", "o", openaiTestKey("slow"), 0)
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"mistral", "openai"}})
	host := strings.TrimPrefix(a.srv.URL, "http://")

	for _, declared := range []int{500, 5000} { // kept for a retry; streamed through
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(conn, "POST /proxy/mistral/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"model\":\"mistral-large-latest\",\"messages\":[",
			host, tok.Token, declared)
		if err != nil {
			t.Fatal(err)
		}
		// The test's patience is far beyond the body's deadline and far
		// below the call's.
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("a half-sent body of %d bytes: no answer (%v); the connection is held", declared, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(answer), `"code":"body_timeout"`) {
			t.Fatalf("a half-sent body of %d bytes: %d %s; want 408 body_timeout", declared, resp.StatusCode, answer)
		}
	}
	if _, most := gate.counts(); most != 0 {
		t.Fatal("a call whose body never arrived was answered by the provider")
	}

	req, _ := http.NewRequest("POST", a.srv.URL+"/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(events), "data: ") != 7 {
		t.Fatalf("a stream longer than the body's deadline: %v, %d events; want all 7", err, strings.Count(string(events), "data: "))
	}
}

// A resolver's proxy tokens share its request rate: the 20 tokens one
// resolver minted cannot make more calls than the resolver itself could.
func TestAResolversProxyTokensShareItsRate(t *testing.T) {
	provider := newStandIn(t)
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
		withProxy(t, o, g, proxy.Config{BaseURLs: map[string]string{"openai": provider.srv.URL}})
		o.Limiter = auth.NewLimiter(auth.RateLimits{PerToken: 0.001, PerTokenBurst: 30}, nil)
	})
	a.addPoolKey("ws1", "openai", "k", openaiTestKey("shared-rate"), 0)
	var tokens []string
	for range 20 { // 20 of the resolver's 30
		tokens = append(tokens, a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}}).Token)
	}
	ok, limited := 0, 0
	for _, tok := range tokens {
		resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok)
		switch {
		case resp.StatusCode == http.StatusOK:
			ok++
		case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" &&
			strings.Contains(body, "the resolver token that minted this proxy token is over its request rate"):
			limited++
		default:
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if ok != 10 || limited != 10 {
		t.Fatalf("%d calls served and %d refused; the resolver had 10 requests left of its burst", ok, limited)
	}
}

// A workspace's proxied calls have a rate of their own, whichever tokens
// make them; a resolver token mints proxy tokens at a bounded rate.
func TestAWorkspacesProxiedCallsAndMintsAreRateLimited(t *testing.T) {
	provider := newStandIn(t)
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
		withProxy(t, o, g, proxy.Config{BaseURLs: map[string]string{"openai": provider.srv.URL}})
		o.Limiter = auth.NewLimiter(auth.RateLimits{PerWorkspace: 0.001, PerWorkspaceBurst: 5, MintsPerToken: 0.001, MintsBurst: 3}, nil)
	})
	a.addPoolKey("ws1", "openai", "k", openaiTestKey("ws-rate-1"), 0)
	a.addPoolKey("ws2", "openai", "k", openaiTestKey("ws-rate-2"), 0)
	one := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	two := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	other := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws2", Providers: []string{"openai"}})
	r := a.call("resolver", "POST", "/v1/proxy-tokens", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.code() != "rate_limited" || !strings.Contains(r.message(), "mints proxy tokens") {
		t.Fatalf("a 4th mint past a burst of 3: %d %s", r.status, r.body)
	}
	call := func(tok string) (*http.Response, string) {
		return a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok)
	}
	for i := range 5 {
		tok := one.Token
		if i%2 == 1 {
			tok = two.Token
		}
		if resp, body := call(tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d of the workspace's burst: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := call(two.Token)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "this workspace's proxied calls are over their rate") {
		t.Fatalf("past the workspace's burst: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(other.Token); resp.StatusCode != http.StatusOK {
		t.Fatalf("another workspace: %d %s", resp.StatusCode, body)
	}
}

// withProxy gives o a credential proxy over g, tuned by cfg.
func withProxy(t *testing.T, o *handlers.Options, g *keyGround, cfg proxy.Config) {
	t.Helper()
	signer, err := proxytoken.NewSigner([]byte("handlers-test-pepper"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys, cfg.Providers, cfg.Logger = g.keys, g.keys.Providers(), o.Logger
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Proxy, o.ProxyTokens, o.ProxyCalls = p, signer, g.st
}

// countingTokens counts the token lookups the router makes.
type countingTokens struct {
	handlers.Authenticator
	lookups atomic.Int32
}

func (c *countingTokens) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	c.lookups.Add(1)
	return c.Authenticator.Authenticate(ctx, token)
}

// Failed authentications are charged before the lookup: 100 bad tokens
// sent at once from one address make no more lookups than the address's
// burst of failures (checking first and charging after let every
// concurrent request through the check).
func TestFailedAuthenticationsAreChargedBeforeTheLookup(t *testing.T) {
	var counting *countingTokens
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
		counting = &countingTokens{Authenticator: o.Tokens}
		o.Tokens = counting
		o.Limiter = auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 10}, nil)
	})
	var wg sync.WaitGroup
	var unauthenticated, limited atomic.Int32
	start := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", a.srv.URL+"/v1/whoami", nil)
			// Well-formed and unknown: each costs a lookup in PostgreSQL.
			bogus := "kbt_" + strconv.Itoa(1000+i) + strings.Repeat("x", len(a.tokens["operator"])-8)
			req.Header.Set("Authorization", "Bearer "+bogus)
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				unauthenticated.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := counting.lookups.Load(); n != 10 {
		t.Fatalf("%d token lookups from one address; its burst of failures is 10", n)
	}
	if unauthenticated.Load() != 10 || limited.Load() != 90 {
		t.Fatalf("%d answered 401 and %d 429; want 10 and 90", unauthenticated.Load(), limited.Load())
	}
	// The address is used up: until its failures refill, a token this
	// replica never validated is refused before any lookup, good or not
	// (a token validated before is not: TestAValidTokenIsNotRefusedByTheFailedAuthLimit).
	before := counting.lookups.Load()
	if r := a.call("operator", "GET", "/v1/whoami", nil); r.status != http.StatusTooManyRequests {
		t.Fatalf("a token never validated here, from a used-up address: %d", r.status)
	}
	if n := counting.lookups.Load(); n != before {
		t.Fatal("a used-up address got a lookup")
	}
}

// When every key that could serve is cooling down after the provider's
// 429s, the proxy answers as the provider would: 429 with Retry-After
// (the earliest cooldown's end) and the reason, not 404 no_key, so that
// an unmodified SDK backs off and retries.
func TestEveryKeyCoolingDownIs429WithRetryAfter(t *testing.T) {
	provider := newStandIn(t)
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL})
	first, second := openaiTestKey("cool1"), openaiTestKey("cool2")
	a.addPoolKey("ws1", "openai", "first", first, 0)
	a.addPoolKey("ws1", "openai", "second", second, 1)
	provider.refuse[first], provider.refuse[second] = http.StatusTooManyRequests, http.StatusTooManyRequests
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})

	// Both keys are refused with the provider's 429: the call is retried
	// once, and the second 429 goes back as it came.
	resp, _ := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" || len(provider.keysSeen()) != 2 {
		t.Fatalf("both keys refused: %d, Retry-After %q, %d calls", resp.StatusCode, resp.Header.Get("Retry-After"), len(provider.keysSeen()))
	}
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || e.Error.Code != "keys_cooling_down" || retry < 1 || retry > 30 || !strings.Contains(e.Error.Message, "cooling down") {
		t.Fatalf("every key cooling down: %d %s (Retry-After %q); want 429 keys_cooling_down, Retry-After 1..30", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := len(provider.keysSeen()); n != 2 {
		t.Fatalf("the provider got %d calls; a call with every key cooling down must not reach it", n)
	}
	// A pool where nothing could ever serve is still 404 no_key.
	tok2 := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws-empty", Providers: []string{"openai"}})
	resp, body = a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok2.Token)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"no_key"`) {
		t.Fatalf("an empty pool: %d %s", resp.StatusCode, body)
	}
}
