package handlers_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
)

// openAIStandIn accepts the keys in accepted on GET /v1/models
// (Authorization: Bearer <key>, as OpenAI requires) and answers 401 to the
// others.
func openAIStandIn(t *testing.T) (*httptest.Server, func(key string)) {
	var mu sync.Mutex
	accepted := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		ok := accepted[key]
		mu.Unlock()
		if r.URL.Path != "/v1/models" || !ok {
			http.Error(w, `{"error":"invalid_api_key"}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"data":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func(key string) { mu.Lock(); accepted[key] = true; mu.Unlock() }
}

func TestReportRouteCoolsAKeyDownAndRefusesWhatItShould(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	pool := "/v1/workspaces/ws1/providers/openai/keys"
	for _, id := range []string{"first", "second"} {
		if r := a.call("admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t), KeyID: id, Priority: new(map[string]int{"first": 1, "second": 2}[id])}); r.status != 201 {
			t.Fatalf("fixture: %d %s", r.status, r.body)
		}
	}
	var res client.ResolveResponse
	a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}).decode(t, &res)
	if res.KeyID != "first" {
		t.Fatalf("resolve: %+v", res)
	}
	before := a.snapshot(t)
	for _, tc := range []struct {
		name, as string
		body     any
		status   int
		code     string
	}{
		{"an admin token", "admin", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited"}, 403, "forbidden"},
		{"another resolver's resolution", "resolver2", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited"}, 404, "unknown_resolution"},
		{"a made-up resolution", "resolver", client.ReportRequest{ResolutionID: "res_made-up", Outcome: "rate_limited"}, 404, "unknown_resolution"},
		{"an unknown outcome", "resolver", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "on_fire"}, 400, "invalid_request"},
		{"a negative Retry-After", "resolver", `{"resolutionId":"` + res.ResolutionID + `","outcome":"rate_limited","retryAfterSeconds":-1}`, 400, "invalid_request"},
		{"a Retry-After of a day", "resolver", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited", RetryAfterSeconds: 86400}, 400, "invalid_request"},
		{"malformed JSON", "resolver", `{"resolutionId":`, 400, "malformed_json"},
		{"an unknown field", "resolver", `{"resolutionId":"x","outcome":"ok","key":"x"}`, 400, "malformed_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := a.call(tc.as, "POST", "/v1/resolve/report", tc.body); r.status != tc.status || r.code() != tc.code {
				t.Fatalf("answered %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	if a.snapshot(t) != before {
		t.Fatal("refused reports changed state")
	}
	var rep client.ReportResult
	r := a.call("resolver", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited", RetryAfterSeconds: 60})
	r.decode(t, &rep)
	if r.status != 200 || !rep.Changed || rep.Health != "cooling_down" || rep.KeyID != "first" {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	a.call("resolver", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited"}).decode(t, &rep)
	if rep.Changed {
		t.Fatal("a repeated report changed the key again")
	}
	var meta client.KeyMetadata
	a.call("reader", "GET", pool+"/first", nil).decode(t, &meta)
	if meta.Health != "cooling_down" || meta.CooldownUntil == nil || !strings.Contains(meta.HealthReason, "rate_limited") {
		t.Fatalf("metadata while cooling down: %+v", meta)
	}
	a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}).decode(t, &res)
	if res.KeyID != "second" {
		t.Fatalf("resolve while the first cools down: %+v", res)
	}
	// Reports are rate limited per token (burst 100).
	limited := 0
	for range 110 {
		if r := a.call("resolver", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "ok"}); r.status == 429 {
			limited++
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if limited == 0 {
		t.Fatal("110 reports at once were never rate limited")
	}
}

func TestTestRouteAndVerifiedWrites(t *testing.T) {
	srv, accept := openAIStandIn(t)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIWith(t, handlers.ModeAll, checker)
	pool := "/v1/workspaces/ws1/providers/openai/keys"
	good, bad := openaiKey(t), openaiKey(t)
	accept(good)
	r := a.call("admin", "POST", pool+"?verify=true", client.AddKeyRequest{APIKey: bad, KeyID: "bad"})
	if r.status != 422 || r.code() != "key_verification_failed" || strings.Contains(string(r.body), bad) {
		t.Fatalf("a refused key: %d %s", r.status, r.body)
	}
	if r := a.call("admin", "POST", pool+"?verify=maybe", client.AddKeyRequest{APIKey: good}); r.status != 400 {
		t.Fatalf("verify=maybe: %d", r.status)
	}
	if r := a.call("admin", "POST", pool+"?verify=true", client.AddKeyRequest{APIKey: good, KeyID: "good"}); r.status != 201 {
		t.Fatalf("an accepted key: %d %s", r.status, r.body)
	}
	if r := a.call("admin", "POST", pool, client.AddKeyRequest{APIKey: bad, KeyID: "unchecked"}); r.status != 201 {
		t.Fatalf("a key stored without verification: %d %s", r.status, r.body)
	}
	var tr client.KeyCheckResult
	r = a.call("admin", "POST", pool+"/good/test", nil)
	r.decode(t, &tr)
	if r.status != 200 || tr.Result != "accepted" || tr.Status != 200 || tr.Health != "healthy" {
		t.Fatalf("test of a good key: %d %s", r.status, r.body)
	}
	r = a.call("admin", "POST", pool+"/unchecked/test", nil)
	r.decode(t, &tr)
	if r.status != 200 || tr.Result != "refused" || tr.Status != 401 || tr.Health != "failing" {
		t.Fatalf("test of a refused key: %d %s", r.status, r.body)
	}
	var meta client.KeyMetadata
	a.call("admin", "GET", pool+"/unchecked", nil).decode(t, &meta)
	if meta.Health != "failing" || meta.HealthChangedAt == nil {
		t.Fatalf("metadata of a failing key: %+v", meta)
	}
	if r := a.call("reader", "POST", pool+"/good/test", nil); r.status != 403 {
		t.Fatalf("a reader testing a key: %d", r.status)
	}
	if r := a.call("admin", "POST", pool+"/nosuch/test", nil); r.status != 404 {
		t.Fatalf("a test of an unknown key: %d", r.status)
	}
	// Without a checker (or the reader identity), a test is not available.
	plain := newAPI(t, handlers.ModeAll)
	plain.call("admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "k"})
	if r := plain.call("admin", "POST", pool+"/k/test", nil); r.status != 501 || r.code() != "not_available_in_mode" {
		t.Fatalf("a test without a checker: %d %s", r.status, r.body)
	}
}

// TestResolveAnswers429WhileEveryKeyCoolsDown: when every key that could
// serve a call is cooling down, resolve answers 429 keys_cooling_down
// with Retry-After (the earliest end of a cooldown) and a reason — what
// the provider itself would answer, so that an SDK backs off and retries —
// and /effective says the same; no_key (404) stays for a pool where
// nothing could ever serve.
func TestResolveAnswers429WhileEveryKeyCoolsDown(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	pool := "/v1/workspaces/ws1/providers/openai/keys"
	if r := a.call("admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "main"}); r.status != 201 {
		t.Fatalf("fixture: %d %s", r.status, r.body)
	}
	var res client.ResolveResponse
	a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}).decode(t, &res)
	if r := a.call("resolver", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "rate_limited",
		RetryAfterSeconds: 120}); r.status != 200 {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	cooling := func(when string) {
		t.Helper()
		r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		if r.status != 429 || r.code() != "keys_cooling_down" || err != nil || retry < 100 || retry > 120 ||
			!strings.Contains(string(r.body), `"reason":"workspace_keys_cooling_down"`) {
			t.Fatalf("%s: %d Retry-After %q %s, want 429 keys_cooling_down after about 120 s", when, r.status, r.header.Get("Retry-After"), r.body)
		}
	}
	cooling("the only key cooling down (there is no hosted key)")
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/settings", map[string]any{"hostedFallback": false}); r.status != 200 {
		t.Fatalf("settings: %d %s", r.status, r.body)
	}
	cooling("the only key cooling down, the hosted fallback off")
	var eff client.EffectiveSources
	a.call("admin", "GET", "/v1/workspaces/ws1/effective", nil).decode(t, &eff)
	for _, s := range eff.Providers {
		if s.Provider == "openai" && (s.Scope != nil || s.Reason != "workspace_keys_cooling_down") {
			t.Fatalf("effective while the key cools down: %+v", s)
		}
	}
	// An early "ok" ends the cooldown.
	a.call("resolver", "POST", "/v1/resolve/report", client.ReportRequest{ResolutionID: res.ResolutionID, Outcome: "ok"})
	if r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != 200 {
		t.Fatalf("after ok: %d %s", r.status, r.body)
	}
	// Disabled: nothing could ever serve: no_key.
	if r := a.call("admin", "PATCH", pool+"/main", map[string]any{"state": "disabled"}); r.status != 200 {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	if r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != 404 || r.code() != "no_key" {
		t.Fatalf("every key disabled: %d %s, want 404 no_key", r.status, r.body)
	}
}
