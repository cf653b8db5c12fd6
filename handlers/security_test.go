package handlers_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/vault"
)

func TestStrictJSONRefusesDuplicateAndMiscasedNames(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	k1, k2 := openaiKey(t), openaiKey(t)
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: k1}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	before := a.snapshot(t)
	for _, tc := range []struct{ path, method, body, want string }{
		{"/v1/workspaces/ws1/keys/openai", "PUT", `{"apiKey":"` + k1 + `","apiKey":"` + k2 + `"}`, `duplicate field "apiKey"`},
		{"/v1/workspaces/ws1/keys/openai", "PUT", `{"APIKEY":"` + k2 + `"}`, `did you mean "apiKey"`},
		{"/v1/workspaces/ws1/keys/openai/rollback", "POST", `{"Version":1}`, `did you mean "version"`},
		{"/v1/resolve", "POST", `{"workspace":"ws1","provider":"openai","workspace":"ws2"}`, `duplicate field "workspace"`},
		{"/v1/resolve", "POST", `{"workspace":"ws1","Provider":"openai"}`, `did you mean "provider"`},
	} {
		as := "admin"
		if tc.path == "/v1/resolve" {
			as = "resolver"
		}
		r := a.call(as, tc.method, tc.path, tc.body)
		if r.status != http.StatusBadRequest || r.code() != "malformed_json" || !strings.Contains(r.message(), tc.want) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %s", tc.method, tc.path, tc.body[:12], r.status, r.body, tc.want)
		}
		if strings.Contains(string(r.body), k1) || strings.Contains(string(r.body), k2) {
			t.Fatal("the error quotes the key")
		}
	}
	if after := a.snapshot(t); after != before {
		t.Fatalf("refused requests changed something:\n%s\n%s", before, after)
	}
}

func TestResolveIsForResolversAndTheirWorkspaces(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	k := openaiKey(t)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: k})
	tok, _, err := a.ground.minter.Create(context.Background(), auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	limited := remember(tok)
	if r := a.call(limited, "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != http.StatusOK {
		t.Fatalf("resolve of its own workspace: %d %s", r.status, r.body)
	}
	if r := a.call(limited, "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws2", Provider: "openai"}); r.status != http.StatusForbidden {
		t.Fatalf("resolve of another workspace: %d %s", r.status, r.body)
	}
	r := a.call("operator", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	if r.status != http.StatusForbidden || strings.Contains(string(r.body), k) || !strings.Contains(r.message(), "only resolver tokens") {
		t.Fatalf("an operator resolving: %d %s", r.status, r.body)
	}
}

func TestCallerRequestIDIsKeptBesideKeybrokers(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	r := a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}, "X-Request-Id", "caller-chosen-1")
	own := r.header.Get("X-Request-Id")
	if r.status != http.StatusCreated || own == "" || own == "caller-chosen-1" || r.header.Get("X-Client-Request-Id") != "caller-chosen-1" {
		t.Fatalf("ids: %d X-Request-Id=%q X-Client-Request-Id=%q", r.status, own, r.header.Get("X-Client-Request-Id"))
	}
	var page client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit", nil).decode(t, &page)
	if len(page.Events) == 0 || page.Events[0].RequestID != own || page.Events[0].ClientRequestID != "caller-chosen-1" {
		t.Fatalf("audit event: %+v", page.Events)
	}
	// A bearer token sent as a request id by mistake is not kept.
	r = a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}, "X-Request-Id", a.tokens["admin"])
	if r.status != http.StatusOK || r.header.Get("X-Client-Request-Id") != "" {
		t.Fatalf("a token as request id: %d, echoed back: %v", r.status, r.header.Get("X-Client-Request-Id") != "")
	}
	var after client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit", nil).decode(t, &after)
	if len(after.Events) == 0 || after.Events[0].Action != "key.rotate" || after.Events[0].ClientRequestID != "" {
		t.Fatal("a token sent as request id reached the audit trail")
	}
}

func TestGlobalTrailIsTheOperators(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	var page client.AuditPage
	r := a.call("operator", "GET", "/v1/audit?limit=200", nil)
	r.decode(t, &page)
	var operatorWide int
	for _, ev := range page.Events {
		if ev.Scope == "" && ev.Action == "token.create" {
			operatorWide++
		}
	}
	// kbtest's ground made an operator and a resolver token, newAPI three
	// operators ("operator", "revoked", "expired") and two resolvers: events
	// of no workspace, which only this trail has.
	if r.status != http.StatusOK || operatorWide != 7 {
		t.Fatalf("global trail: %d, %d operator-wide token events: %s", r.status, operatorWide, r.body)
	}
	if r := a.call("admin", "GET", "/v1/audit", nil); r.status != http.StatusForbidden {
		t.Fatalf("an admin reading the global trail: %d", r.status)
	}
}

func TestDeleteLeavesOlderVersionsUnlessDestroyed(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx := context.Background()
	path := broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath()
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	if r := a.call("admin", "DELETE", "/v1/workspaces/ws1/keys/openai?destroy=perhaps", nil); r.status != http.StatusBadRequest {
		t.Fatalf("destroy=perhaps: %d", r.status)
	}
	if r := a.call("admin", "DELETE", "/v1/workspaces/ws1/keys/openai", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	md, err := a.kv.Metadata(ctx, path)
	if err != nil || len(md.Versions) != 2 || !md.Versions[0].Alive() || md.Versions[1].Alive() {
		t.Fatalf("after a plain delete Vault holds %+v (%v): version 1 stays readable, as documented", md, err)
	}
	if r := a.call("admin", "DELETE", "/v1/workspaces/ws1/keys/openai?destroy=true", nil); r.status != http.StatusNoContent {
		t.Fatalf("destroy what a plain delete left: %d %s", r.status, r.body)
	}
	if _, err := a.kv.Metadata(ctx, path); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after destroy: %v, want no secret at all", err)
	}
}

func TestMaskedPreviewIsRefusedAsAKey(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	k := openaiKey(t)
	var meta client.KeyMetadata
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: k}).decode(t, &meta)
	r := a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: meta.MaskedKey})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.message(), "masked preview") {
		t.Fatalf("writing the mask back: %d %s", r.status, r.body)
	}
	a.call("reader", "GET", "/v1/workspaces/ws1/keys/openai", nil).decode(t, &meta)
	if meta.Version != 1 {
		t.Fatalf("the refused write changed the key: version %d", meta.Version)
	}
}

func TestBurstsAreAnswered429WithRetryAfter(t *testing.T) {
	ctx := context.Background()
	g := newKeyGround(t, slog.New(slog.DiscardHandler))
	limiter := auth.NewLimiter(auth.RateLimits{PerToken: 0.01, PerTokenBurst: 3, FailedAuthPerAddr: 0.01, FailedAuthBurst: 5}, nil)
	srv := httptest.NewServer(handlers.NewRouter(handlers.Options{Keys: g.keys, Tokens: g.tokens, Limiter: limiter, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	tok, _, err := g.tokens.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleReader, Workspaces: []string{"ws1"}, CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(bearer string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/workspaces/ws1/keys", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		if resp := get(tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d of the burst: %d", i+1, resp.StatusCode)
		}
	}
	resp := get(tok)
	if secs, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || secs < 1 {
		t.Fatalf("past the burst: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Made-up tokens from one address: 401 five times, then 429 for every
	// request from it that is not yet authenticated, before any lookup.
	for i := range 5 {
		if resp := get("kbt_" + strings.Repeat(strconv.Itoa(i), 43)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("made-up token %d: %d", i+1, resp.StatusCode)
		}
	}
	if resp := get("kbt_" + strings.Repeat("z", 43)); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the 6th failure from one address: %d", resp.StatusCode)
	}
}
