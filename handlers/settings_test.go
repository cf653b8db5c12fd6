package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
)

func TestSettingsRolesAndFailClosed(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	hosted := openaiKey(t)
	if _, err := a.ground.keys.PutKey(context.Background(), broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.HostedKey("openai", broker.DefaultKeyID), Credential: providers.APIKey(hosted)}); err != nil {
		t.Fatal(err)
	}
	var set client.Settings
	r := a.call("reader", "GET", "/v1/workspaces/ws1/settings", nil)
	r.decode(t, &set)
	if r.status != http.StatusOK || set.Organization != nil || !set.Inherit || !set.HostedFallback {
		t.Fatalf("defaults: %d %s", r.status, r.body)
	}
	var resolved client.ResolveResponse
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	r.decode(t, &resolved)
	if r.status != http.StatusOK || resolved.Scope != "hosted" || resolved.FallbackReason != "no_workspace_key" || resolved.KeyID != "default" || resolved.ResolutionID == "" {
		t.Fatalf("hosted fallback: %d %s", r.status, r.body)
	}

	before := a.snapshot(t)
	for _, tc := range []struct {
		as, body string
		status   int
		code     string
	}{
		{"admin", `{"organization":"acme"}`, http.StatusForbidden, "forbidden"}, // the link is an operator's
		{"reader", `{"hostedFallback":false}`, http.StatusForbidden, "forbidden"},
		{"admin-ws2", `{"hostedFallback":false}`, http.StatusForbidden, "forbidden"},
		{"operator", `{"organization":"Bad/Org"}`, http.StatusBadRequest, "invalid_id"},
		{"admin", `{"hostedFallback":"no"}`, http.StatusBadRequest, "malformed_json"},
		{"admin", `{"hostedFallBack":false}`, http.StatusBadRequest, "malformed_json"},
		{"admin", `{"hostedFallback":false,"hostedFallback":true}`, http.StatusBadRequest, "malformed_json"},
		{"admin", `{"hostedFallback":false} {}`, http.StatusBadRequest, "malformed_json"},
		{"", `{"hostedFallback":false}`, http.StatusUnauthorized, "unauthenticated"},
	} {
		r := a.call(tc.as, "PUT", "/v1/workspaces/ws1/settings", tc.body)
		if r.status != tc.status || r.code() != tc.code {
			t.Errorf("%s PUT %s: %d %s, want %d %s", tc.as, tc.body, r.status, r.body, tc.status, tc.code)
		}
		if tc.as == "admin" && tc.status == http.StatusForbidden && !strings.Contains(r.message(), "only an operator links") {
			t.Errorf("an admin linking an organization was told %q", r.message())
		}
	}
	if r := a.call("reader", "GET", "/v1/workspaces/ws1/settings", nil); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	r.decode(t, &set)
	if !set.HostedFallback || set.Organization != nil || a.snapshot(t) != before {
		t.Fatalf("refused requests changed the settings: %+v", set)
	}

	// The operator links ws1 to acme; its admin may then change the rest,
	// and naming the same organization again is no change.
	if r := a.call("operator", "PUT", "/v1/workspaces/ws1/settings", `{"organization":"acme"}`); r.status != http.StatusOK {
		t.Fatalf("operator link: %d %s", r.status, r.body)
	}
	r = a.call("admin", "PUT", "/v1/workspaces/ws1/settings", `{"organization":"acme","hostedFallback":false}`)
	r.decode(t, &set)
	if r.status != http.StatusOK || set.Organization == nil || *set.Organization != "acme" || set.HostedFallback || set.UpdatedBy != "token:"+a.ids["admin"] {
		t.Fatalf("admin turns the fallback off: %d %s", r.status, r.body)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	var eb client.ErrorBody
	r.decode(t, &eb)
	if r.status != http.StatusNotFound || eb.Error.Code != "no_key" || eb.Error.Reason != "hosted_fallback_off" {
		t.Fatalf("resolve with the fallback off: %d %s", r.status, r.body)
	}
	var page client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit", nil).decode(t, &page)
	if len(page.Events) == 0 || page.Events[0].Action != "workspace.settings" {
		t.Fatalf("audit: %+v", page.Events)
	}
}

func TestEffectiveSaysWhatServesEachProvider(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	if _, err := a.ground.keys.PutKey(context.Background(), broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.HostedKey("openai", broker.DefaultKeyID), Credential: providers.APIKey(openaiKey(t))}); err != nil {
		t.Fatal(err)
	}
	effective := func(as string) map[string]client.EffectiveSource {
		t.Helper()
		var out client.EffectiveSources
		r := a.call(as, "GET", "/v1/workspaces/ws1/effective", nil)
		if r.status != http.StatusOK {
			t.Fatalf("effective as %s: %d %s", as, r.status, r.body)
		}
		r.decode(t, &out)
		m := map[string]client.EffectiveSource{}
		for _, p := range out.Providers {
			m[p.Provider] = p
		}
		return m
	}
	scope := func(s client.EffectiveSource) string {
		if s.Scope == nil {
			return "none"
		}
		return *s.Scope
	}
	e := effective("reader")
	if len(e) != len(providers.DefaultRegistry().All()) || scope(e["openai"]) != "hosted" || e["openai"].Reason != "no_workspace_key" ||
		scope(e["anthropic"]) != "none" || e["anthropic"].Reason != "no_hosted_key" {
		t.Fatalf("no workspace keys: %+v", e)
	}
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/anthropic", client.PutKeyRequest{APIKey: anthropicKey(t)})
	a.call("admin", "PUT", "/v1/workspaces/ws1/settings", `{"hostedFallback":false}`)
	e = effective("admin")
	if scope(e["anthropic"]) != "workspace" || e["anthropic"].UsableKeys != 1 || scope(e["openai"]) != "none" || e["openai"].Reason != "hosted_fallback_off" {
		t.Fatalf("a key of its own, fallback off: %+v", e)
	}
	for _, as := range []string{"resolver", "admin-ws2"} {
		if r := a.call(as, "GET", "/v1/workspaces/ws1/effective", nil); r.status != http.StatusForbidden {
			t.Errorf("effective as %s: %d", as, r.status)
		}
	}
	if r := a.call("reader", "GET", "/v1/workspaces/Bad/effective", nil); r.status != http.StatusBadRequest {
		t.Errorf("effective of an invalid id: %d", r.status)
	}
}
