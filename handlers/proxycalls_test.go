package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

// The records of proxied calls, as the platform's billing reads them: a
// call made through the proxy is listed for its workspace with the key
// that served it; pages walk newest first without repeating a call; the
// filters narrow; the workspace's readers and admins see its calls and no
// one else's; the operator sees every workspace's; bad queries are
// refused with a clear error.
func TestProxiedCallsAreListedForBilling(t *testing.T) {
	provider := newStandIn(t)
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL})
	a.addPoolKey("ws1", "openai", "main", openaiTestKey("billing"), 0)
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proxied call: %d %s", resp.StatusCode, body)
	}
	var page client.ProxyCallPage
	waitFor(t, "the proxied call is listed", 5*time.Second, func() bool {
		r := a.call("reader", "GET", "/v1/workspaces/ws1/proxy-calls", nil)
		page = client.ProxyCallPage{}
		r.decode(t, &page)
		return r.status == http.StatusOK && len(page.Calls) == 1
	})
	c := page.Calls[0]
	if c.Workspace != "ws1" || c.Provider != "openai" || c.Scope != "workspace" || c.KeyID != "main" || c.KeyVersion != 1 || c.Status != 200 ||
		!c.BYOK || c.Retried || c.Caller != tok.ID || c.RequestID == "" || c.ID == "" || c.BytesOut == 0 || c.At.IsZero() || page.NextCursor != "" {
		t.Fatalf("listed %+v (next %q)", c, page.NextCursor)
	}

	// More calls, of both workspaces, an hour ago and now.
	now := time.Now().UTC()
	var batch []broker.ProxyCall
	for i := range 25 {
		batch = append(batch, broker.ProxyCall{At: now.Add(-time.Hour + time.Duration(i)*time.Second), Workspace: []string{"ws1", "ws2"}[i%2],
			Provider: []string{"openai", "anthropic"}[i%4/2], Status: 200, Caller: "ptk_0000000000000000"})
	}
	if err := a.store.AddProxyCalls(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// ws1: 13 + the proxied one, in pages of 5.
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		q := url.Values{"limit": {"5"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := a.call("admin", "GET", "/v1/workspaces/ws1/proxy-calls?"+q.Encode(), nil)
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		var p client.ProxyCallPage
		r.decode(t, &p)
		pages++
		for _, c := range p.Calls {
			if c.Workspace != "ws1" || seen[c.ID] {
				t.Fatalf("page %d lists %+v again or of another workspace", pages, c)
			}
			seen[c.ID] = true
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 14 || pages != 3 {
		t.Fatalf("%d calls in %d pages, want 14 in 3", len(seen), pages)
	}
	// Filters: ws1's Anthropic calls of the past hour's first 10 s (i = 2, 6).
	q := url.Values{"provider": {"anthropic"}, "since": {now.Add(-time.Hour - time.Second).Format(time.RFC3339Nano)},
		"until": {now.Add(-time.Hour + 10*time.Second).Format(time.RFC3339Nano)}}
	r := a.call("reader", "GET", "/v1/workspaces/ws1/proxy-calls?"+q.Encode(), nil)
	var filtered client.ProxyCallPage
	r.decode(t, &filtered)
	if r.status != http.StatusOK || len(filtered.Calls) != 2 || filtered.Calls[0].Provider != "anthropic" || !filtered.Calls[0].At.After(filtered.Calls[1].At) {
		t.Fatalf("filtered: %d %s", r.status, r.body)
	}
	// The operator's export: every workspace.
	r = a.call("operator", "GET", "/v1/proxy-calls?limit=1000", nil)
	var all client.ProxyCallPage
	r.decode(t, &all)
	if r.status != http.StatusOK || len(all.Calls) != 26 || all.NextCursor != "" {
		t.Fatalf("the operator's export: %d, %d calls", r.status, len(all.Calls))
	}
	// A workspace with no calls has an empty list, not an error.
	if r := a.call("operator", "GET", "/v1/workspaces/ws9/proxy-calls", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"calls":[]`) {
		t.Fatalf("a workspace without calls: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		as, path string
		status   int
		code     string
	}{
		{"", "/v1/workspaces/ws1/proxy-calls", 401, "unauthenticated"},
		{"kbt_not-a-token", "/v1/workspaces/ws1/proxy-calls", 401, "unauthenticated"},
		{"expired", "/v1/workspaces/ws1/proxy-calls", 401, "unauthenticated"},
		{"admin-ws2", "/v1/workspaces/ws1/proxy-calls", 403, "forbidden"},
		{"resolver", "/v1/workspaces/ws1/proxy-calls", 403, "forbidden"},
		{"org-admin", "/v1/workspaces/ws1/proxy-calls", 403, "forbidden"},
		{"admin", "/v1/proxy-calls", 403, "forbidden"},
		{"reader", "/v1/proxy-calls", 403, "forbidden"},
		{"resolver", "/v1/proxy-calls", 403, "forbidden"},
		{"operator", "/v1/workspaces/WS%201/proxy-calls", 400, "invalid_id"},
		{"operator", "/v1/proxy-calls?limit=0", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?limit=1001", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?limit=ten", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?cursor=-3", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?cursor=abc", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?since=yesterday", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?until=2026-13-01T00:00:00Z", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", 400, "invalid_request"},
		{"operator", "/v1/proxy-calls?provider=nosuch", 400, "unknown_provider"},
	} {
		r := a.call(tc.as, "GET", tc.path, nil)
		if r.status != tc.status || r.code() != tc.code {
			t.Errorf("%s as %q: %d %s, want %d %s", tc.path, tc.as, r.status, r.body, tc.status, tc.code)
		}
	}
}

// Only the replicas that serve the admin API list proxied calls.
func TestProxiedCallsAreNotListedOnAResolverReplica(t *testing.T) {
	a := newAPIOpts(t, "resolver", nil, func(o *handlers.Options, g *keyGround) { o.ProxyCalls = g.st })
	if r := a.call("operator", "GET", "/v1/proxy-calls", nil); r.status != http.StatusNotFound {
		t.Fatalf("a resolver replica answers the export: %d %s", r.status, r.body)
	}
}
