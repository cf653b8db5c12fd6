package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
)

// The failed-authentication limit stops guessing, not tokens that work:
// once an address has used up its failures, a token this replica has
// validated before (answered from memory, or looked up again when its
// validation is older than Fresh) and a proxy token (checked by its
// signature) are still served from that address, IPv6 /64 included. What
// stays bounded: bad tokens, and lookups of tokens never validated on
// this replica (429 until the address's failures refill).
func TestAValidTokenIsNotRefusedByTheFailedAuthLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fresh time.Duration
	}{{"validated recently", 0}, {"validated longer ago than Fresh", time.Nanosecond}} {
		t.Run(tc.name, func(t *testing.T) {
			provider := newStandIn(t)
			a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
				withProxy(t, o, g, proxy.Config{BaseURLs: map[string]string{"openai": provider.srv.URL}})
				o.Limiter = auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 5}, nil)
				o.TrustedProxies = []string{"127.0.0.1"} // X-Forwarded-For names IPv6 clients below
				if tc.fresh > 0 {
					o.Tokens = auth.NewService(g.st, auth.Options{Keys: kbtest.RowKeys(), Fresh: tc.fresh})
				}
			})
			a.addPoolKey("ws1", "openai", "k", openaiTestKey("auth-limit"), 0)
			tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
			bogus := "kbt_" + strings.Repeat("b", len(a.tokens["resolver"])-4)
			from := func(addr string) []string {
				if addr == "" {
					return nil
				}
				return []string{"X-Forwarded-For", addr}
			}
			burn := func(addr string) {
				t.Helper()
				for i := range 8 {
					r := a.call(bogus[:len(bogus)-1]+string(rune('a'+i)), "GET", "/v1/whoami", nil, from(addr)...)
					want := http.StatusUnauthorized
					if i >= 5 {
						want = http.StatusTooManyRequests
					}
					if r.status != want {
						t.Fatalf("bad token %d from %q: %d %s; want %d", i+1, addr, r.status, r.body, want)
					}
				}
			}
			served := func(addr string) {
				t.Helper()
				if r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}, from(addr)...); r.status != http.StatusOK {
					t.Fatalf("the resolver token from %q after its failures were used up: %d %s", addr, r.status, r.body)
				}
				if r := a.call("operator", "GET", "/v1/whoami", nil, from(addr)...); r.status != http.StatusOK {
					t.Fatalf("the operator token from %q after its failures were used up: %d %s", addr, r.status, r.body)
				}
				headers := append([]string{"Authorization", "Bearer " + tok.Token}, from(addr)...)
				if resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, headers...); resp.StatusCode != http.StatusOK {
					t.Fatalf("a proxy token from %q after its failures were used up: %d %s", addr, resp.StatusCode, body)
				}
				headers = append([]string{"Authorization", "Bearer " + a.tokens["resolver"], "X-Keybroker-Workspace", "ws1"}, from(addr)...)
				if resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, headers...); resp.StatusCode != http.StatusOK {
					t.Fatalf("the resolver token on the proxy from %q after its failures were used up: %d %s", addr, resp.StatusCode, body)
				}
			}
			bounded := func(addr, never string) {
				t.Helper()
				if r := a.call(bogus, "GET", "/v1/whoami", nil, from(addr)...); r.status != http.StatusTooManyRequests || r.code() != "rate_limited" {
					t.Fatalf("a bad token from %q: %d %s", addr, r.status, r.body)
				}
				if r := a.call(never, "GET", "/v1/whoami", nil, from(addr)...); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
					t.Fatalf("a token never validated here, from %q: %d %s; a lookup that could fail is bounded", addr, r.status, r.body)
				}
			}

			burn("")
			served("")
			bounded("", "admin")
			// An IPv6 /64 is one budget: failures from one address of it
			// use it up for the others, and valid tokens still pass.
			burn("fd00:1::2")
			served("fd00:1::1")
			bounded("fd00:1::1", "reader")
		})
	}
}

// gatedLookups holds the token lookups the router makes until every
// request of the test has reached the router, and counts them.
type gatedLookups struct {
	handlers.Authenticator
	expect        int32
	arrived       atomic.Int32
	allIn         chan struct{}
	inside, most  atomic.Int32
	lookups       atomic.Int32
	closeAllInOne sync.Once
}

func (g *gatedLookups) Recall(token string) (auth.Principal, auth.Remembered) {
	if g.arrived.Add(1) == g.expect {
		g.closeAllInOne.Do(func() { close(g.allIn) })
	}
	return g.Authenticator.Recall(token)
}

func (g *gatedLookups) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	g.lookups.Add(1)
	n := g.inside.Add(1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	defer g.inside.Add(-1)
	<-g.allIn
	return g.Authenticator.Authenticate(ctx, token)
}

// Valid tokens never seen on the replica, presented at once from one
// address, are all accepted: a lookup that finds the address's failures
// all reserved by lookups under way waits for them (good tokens give
// theirs back) instead of being refused. Never more lookups run at once
// than the address's burst.
func TestFreshValidTokensAtOnceAreAllAccepted(t *testing.T) {
	const n, burst = 60, 5
	gate := &gatedLookups{expect: n, allIn: make(chan struct{})}
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) {
		gate.Authenticator = o.Tokens
		o.Tokens = gate
		o.Limiter = auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: burst}, nil)
	})
	tokens := make([]string, n)
	for i := range tokens {
		tok, _, err := a.ground.minter.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleReader,
			Workspaces: []string{"ws1"}, CreatedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = remember(tok)
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	start := make(chan struct{})
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", a.srv.URL+"/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("valid token %d of %d presented at once: %d", i+1, n, s)
		}
	}
	if m := gate.most.Load(); m > burst {
		t.Fatalf("%d lookups from one address at once; its burst of failures is %d", m, burst)
	}
	if l := gate.lookups.Load(); l != n {
		t.Fatalf("%d lookups for %d tokens", l, n)
	}
}
