package handlers_test

import (
	"testing"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

// TestEffectiveSourceAgreesWithResolveInARealBrowser: when the workspace's
// only key cools down (a resolver's report of a 429) and then fails (a
// report of a 401), resolve falls back to the billed hosted key, and
// GET .../effective and the admin page (in Chromium) say so too: hosted,
// with the reason resolve gives — never "the workspace's own key serves".
func TestEffectiveSourceAgreesWithResolveInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	if r := a.call("operator", "POST", "/v1/hosted/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "platform"}); r.status != 201 {
		t.Fatalf("hosted key: %d %s", r.status, r.body)
	}
	if r := a.call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "main", Name: "Main"}); r.status != 201 {
		t.Fatalf("workspace key: %d %s", r.status, r.body)
	}
	resolve := func() client.ResolveResponse {
		t.Helper()
		var res client.ResolveResponse
		r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
		if r.status != 200 {
			t.Fatalf("resolve: %d %s", r.status, r.body)
		}
		r.decode(t, &res)
		return res
	}
	effective := func() client.EffectiveSource {
		t.Helper()
		var eff client.EffectiveSources
		r := a.call("admin", "GET", "/v1/workspaces/ws1/effective", nil)
		if r.status != 200 {
			t.Fatalf("effective: %d %s", r.status, r.body)
		}
		r.decode(t, &eff)
		for _, s := range eff.Providers {
			if s.Provider == "openai" {
				return s
			}
		}
		t.Fatalf("effective names no openai source: %s", r.body)
		return client.EffectiveSource{}
	}
	scopeOf := func(s client.EffectiveSource) string {
		if s.Scope == nil {
			return ""
		}
		return *s.Scope
	}
	ctx := browser(t)
	status := `[data-status="openai"]`

	own := resolve()
	if own.Scope != "workspace" || own.KeyID != "main" || own.FallbackReason != "" {
		t.Fatalf("before any report, resolve gives %+v", own)
	}
	if s := effective(); scopeOf(s) != "workspace" || s.UsableKeys != 1 || s.Reason != "" {
		t.Fatalf("before any report, effective says %+v", s)
	}
	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, status, "Calls use the workspace's own key 'Main' (1 usable key; BYOK")

	for _, step := range []struct {
		report client.ReportRequest
		badge  string
	}{
		{client.ReportRequest{ResolutionID: own.ResolutionID, Outcome: "rate_limited", RetryAfterSeconds: 600}, "cooling down until"},
		{client.ReportRequest{ResolutionID: own.ResolutionID, Outcome: "unauthorized"}, "failing: refused by the provider"},
	} {
		if r := a.call("resolver", "POST", "/v1/resolve/report", step.report); r.status != 200 {
			t.Fatalf("report %s: %d %s", step.report.Outcome, r.status, r.body)
		}
		res := resolve()
		if res.Scope != "hosted" || res.Source != "hosted" || res.IsBYOK || res.FallbackReason != "workspace_keys_unavailable" {
			t.Fatalf("the only key %s: resolve gives %+v, want the hosted key (workspace_keys_unavailable)", step.badge, res)
		}
		s := effective()
		if scopeOf(s) != res.Scope || s.Reason != res.FallbackReason || s.UsableKeys != 1 || len(s.First) != 1 || s.First[0].KeyID != res.KeyID {
			t.Fatalf("the only key %s: effective says %+v; resolve gives %s/%s (%s)", step.badge, s, res.Scope, res.KeyID, res.FallbackReason)
		}
		// The page renders /effective's answer: hosted, billed.
		signIn(t, ctx, a, "admin", "workspace-section")
		waitText(t, ctx, `span[data-health="openai/main"]`, step.badge)
		waitText(t, ctx, status, "Using hosted key: calls are billed at the platform's hosted rates")
		if got := eval[string](t, ctx, `document.querySelector('`+status+`').textContent`); got != "Using hosted key: calls are billed at the platform's hosted rates" {
			t.Fatalf("the only key %s: the page says %q", step.badge, got)
		}
	}
}
