package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// TestKeyLifecycleRoutes drives the key lifecycle over HTTP against the
// OpenAI stand-in: an admin credential added like a key and never
// resolved nor proxied; a key with expiresAt; a rotation; the key's
// rotations and usage; the scope's rotateAfter; a revocation at the
// provider. No answer, span or metric carries the admin key or a key the
// rotation made (the package's leak checks cover the logs).
func TestKeyLifecycleRoutes(t *testing.T) {
	stub := cloudstub.NewOpenAI(t)
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	adminKey := remember("sk-admin-" + hex.EncodeToString(b))
	stub.AddAdminKey(adminKey, "org-1", "proj_ws1")
	old := openaiKey(t)
	oldAccount := stub.AddServiceAccount("proj_ws1", "original", old)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{"openai": stub.URL, "openai-admin": stub.URL}})
	if err != nil {
		t.Fatal(err)
	}
	// Spans of the server and the broker go to a recorder; metrics to a
	// registry of the test's own: both are searched for the keys below.
	ended := recordSpans()
	reg := prometheus.NewRegistry()
	a := newProxyAPIGround(t, kbtest.Options{Checker: checker, Broker: func(c *broker.Config) { c.Metrics = broker.NewMetrics(reg) }},
		map[string]string{"openai": stub.URL, "openai-admin": stub.URL})
	var bodies []string
	call := func(as, method, path string, body any, want int) answer {
		t.Helper()
		r := a.call(as, method, path, body)
		if path != "/v1/resolve" { // a resolve answer carries the key it resolves
			bodies = append(bodies, string(r.body))
		}
		if r.status != want {
			t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
		}
		return r
	}

	// The providers list the admin APIs apart, and what each can do.
	var list client.ProviderList
	call("admin", "GET", "/v1/providers", nil, 200).decode(t, &list)
	adminOf := map[string]string{}
	for _, p := range list.AdminProviders {
		adminOf[p.ID] = p.AdminOf
	}
	if adminOf["openai-admin"] != "openai" || adminOf["anthropic-admin"] != "anthropic" {
		t.Fatalf("admin providers %+v", list.AdminProviders)
	}
	for _, p := range list.Providers {
		if p.ID == "openai-admin" || (p.ID == "openai" && (p.Rotation != "admin_api" || p.Revocation != "delete")) ||
			(p.ID == "anthropic" && (p.Rotation != "" || p.Revocation != "deactivate")) {
			t.Fatalf("provider %+v", p)
		}
	}

	// The admin credential, written like a key: its preview only.
	var meta client.KeyMetadata
	call("admin", "POST", "/v1/workspaces/ws1/providers/openai-admin/keys",
		`{"keyId":"admin","credential":{"adminKey":"`+adminKey+`","projectId":"proj_ws1"}}`, 201).decode(t, &meta)
	if meta.Kind != providers.KindOpenAIAdmin || meta.Fields["projectId"] != "proj_ws1" || meta.Masked["adminKey"] == "" {
		t.Fatalf("admin credential metadata %+v", meta)
	}
	// Never resolved.
	r := call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai-admin"}, 400)
	if r.code() != "invalid_request" {
		t.Fatalf("resolving the admin credential: %s", r.body)
	}

	// A key with an expiry and its id at the provider.
	meta = client.KeyMetadata{}
	call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys",
		`{"keyId":"primary","priority":7,"apiKey":"`+old+`","expiresAt":"2099-01-01T00:00:00Z","providerKeyId":"`+oldAccount+`"}`, 201).decode(t, &meta)
	if meta.Expiry != "valid" || meta.ExpiresAt == nil || meta.ProviderKeyID != oldAccount {
		t.Fatalf("key with an expiry: %+v", meta)
	}
	// An answer is cached no longer than the key lives.
	soon := time.Now().Add(10 * time.Second).UTC().Format(time.RFC3339)
	call("admin", "PATCH", "/v1/workspaces/ws1/providers/openai/keys/primary", `{"expiresAt":"`+soon+`"}`, 200)
	var early client.ResolveResponse
	call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}, 200).decode(t, &early)
	if early.KeyID != "primary" || early.TTLSeconds < 1 || early.TTLSeconds > 10 {
		t.Fatalf("a key expiring in 10 s is cached for %d s", early.TTLSeconds)
	}
	if got := early.KeyExpiresAt.Format(time.RFC3339); got != soon {
		t.Fatalf("the answer says the key expires at %q, not %s", got, soon)
	}
	call("admin", "PATCH", "/v1/workspaces/ws1/providers/openai/keys/primary", `{"expiresAt":"not a date"}`, 400)
	call("admin", "PATCH", "/v1/workspaces/ws1/providers/openai/keys/primary", `{"expiresAt":""}`, 200).decode(t, func() *client.KeyMetadata { meta = client.KeyMetadata{}; return &meta }())
	if meta.Expiry != "" || meta.ExpiresAt != nil {
		t.Fatalf("expiry removed: %+v", meta)
	}

	// The proxy never serves the admin credential. (The stand-in was
	// called when the admin credential was added: its project checked.)
	before := len(stub.Requests())
	call("resolver", "POST", "/v1/proxy-tokens", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai-admin"}, TTLSeconds: 600}, 400)
	var pt client.ProxyToken
	call("resolver", "POST", "/v1/proxy-tokens", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 600}, 201).decode(t, &pt)
	tok := remember(pt.Token)
	for _, bearer := range []string{tok, a.tokens["resolver"]} {
		resp, body := a.proxyCall("GET", "/proxy/openai-admin/v1/organization/projects", "", "Authorization", "Bearer "+bearer, "X-Keybroker-Workspace", "ws1")
		if resp.StatusCode < 400 || strings.Contains(body, adminKey) {
			t.Fatalf("the proxy served the admin API: %d %s", resp.StatusCode, body)
		}
	}
	if got := len(stub.Requests()) - before; got != 0 {
		t.Fatalf("the stand-in was called %d times by the proxy", got)
	}
	// A proxied call and a resolve with the old key, for its usage.
	if resp, body := a.proxyCall("GET", "/proxy/openai/v1/models", "", "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
		t.Fatalf("proxied call: %d %s", resp.StatusCode, body)
	}
	call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}, 200)
	if err := a.ground.keys.FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	var usage client.KeyUsage
	waitFor(t, "the proxied call is recorded", 5e9, func() bool {
		usage = client.KeyUsage{}
		call("reader", "GET", "/v1/workspaces/ws1/providers/openai/keys/primary/usage", nil, 200).decode(t, &usage)
		return len(usage.Versions) == 1 && usage.Versions[0].ProxiedCalls == 1
	})
	v := usage.Versions[0]
	if v.Version != 1 || v.Resolves < 1 || len(v.Days) == 0 {
		t.Fatalf("usage %+v", usage)
	}
	callers := map[string]bool{}
	for _, d := range v.Days {
		callers[d.Caller] = true
	}
	if !callers[a.ids["resolver"]] {
		t.Fatalf("the resolver token %s is not among the callers %v", a.ids["resolver"], callers)
	}
	call("reader", "GET", "/v1/workspaces/ws1/providers/openai/keys/primary/usage?since=yesterday", nil, 400)

	// Rotation: the new key serves at the old priority, the old is
	// disabled for the grace period.
	var rot client.Rotation
	call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys/primary/rotate", `{"graceSeconds":60}`, 200).decode(t, &rot)
	if rot.State != broker.RotationRunning || rot.Step != broker.StepGrace || rot.GraceSeconds != 60 || rot.NewProviderKeyID == "" {
		t.Fatalf("rotation %+v", rot)
	}
	if r := call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys/primary/rotate", nil, 409); r.code() != "rotation_running" {
		t.Fatalf("a second rotation: %s", r.body)
	}
	var rots client.RotationList
	call("reader", "GET", "/v1/workspaces/ws1/providers/openai/keys/primary/rotations", nil, 200).decode(t, &rots)
	if len(rots.Rotations) != 1 || rots.Rotations[0].ID != rot.ID {
		t.Fatalf("rotations %+v", rots)
	}
	meta = client.KeyMetadata{}
	call("admin", "GET", "/v1/workspaces/ws1/providers/openai/keys/"+rot.NewKeyID, nil, 200).decode(t, &meta)
	if meta.Priority != 7 || meta.ProviderKeyID != rot.NewProviderKeyID {
		t.Fatalf("the new key %+v", meta)
	}
	var res client.ResolveResponse
	call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}, 200).decode(t, &res)
	if res.KeyID != rot.NewKeyID || !stub.Accepts(res.APIKey) {
		t.Fatalf("after the rotation resolve served %s", res.KeyID)
	}
	remember(res.APIKey)
	// Mistral keys cannot be rotated at the provider.
	call("admin", "POST", "/v1/workspaces/ws1/providers/mistral/keys", `{"keyId":"m","apiKey":"`+remember(strings.Repeat("a1", 16))+`"}`, 201)
	call("admin", "POST", "/v1/workspaces/ws1/providers/mistral/keys/m/rotate", nil, 400)

	// rotateAfter.
	var ls client.LifecycleSettings
	call("admin", "PUT", "/v1/workspaces/ws1/lifecycle", `{"rotateAfter":"90d"}`, 200).decode(t, &ls)
	call("reader", "GET", "/v1/workspaces/ws1/lifecycle", nil, 200).decode(t, &ls)
	if ls.RotateAfter != "90d" || ls.UpdatedAt == nil {
		t.Fatalf("lifecycle %+v", ls)
	}
	call("admin", "PUT", "/v1/workspaces/ws1/lifecycle", `{"rotateAfter":"90x"}`, 400)
	call("reader", "PUT", "/v1/workspaces/ws1/lifecycle", `{"rotateAfter":"30d"}`, 403)

	// Revocation at the provider of the new key: its service account is
	// deleted there, the key leaves its pool.
	var rv client.Revocation
	call("admin", "DELETE", "/v1/workspaces/ws1/providers/openai/keys/"+rot.NewKeyID+"?revokeAtProvider=true", nil, 200).decode(t, &rv)
	if rv.State != broker.RevocationDone || rv.Action != "deleted" || rv.ProviderKeyID != rot.NewProviderKeyID {
		t.Fatalf("revocation %+v", rv)
	}
	if stub.Accepts(res.APIKey) {
		t.Fatal("the revoked key still works at the provider")
	}
	call("admin", "GET", "/v1/workspaces/ws1/providers/openai/keys/"+rot.NewKeyID, nil, 404)
	// A key keybroker cannot revoke there: refused, not deleted.
	call("admin", "DELETE", "/v1/workspaces/ws1/providers/mistral/keys/m?revokeAtProvider=true", nil, 400)
	call("admin", "GET", "/v1/workspaces/ws1/providers/mistral/keys/m", nil, 200)

	if _, err := a.ground.keys.WarnExpiring(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ended()) == 0 {
		t.Fatal("no span was recorded: the search of the spans would prove nothing")
	}
	for _, sp := range ended() {
		text := sp.Name() + " " + sp.Status().Description
		for _, kv := range sp.Attributes() {
			text += " " + kv.Value.String()
		}
		for _, ev := range sp.Events() {
			for _, kv := range ev.Attributes {
				text += " " + kv.Value.String()
			}
		}
		bodies = append(bodies, text)
	}
	families, err := reg.Gather()
	if err != nil || len(families) == 0 {
		t.Fatalf("metrics: %d families (%v)", len(families), err)
	}
	for _, f := range families {
		bodies = append(bodies, f.String())
	}
	for _, body := range bodies {
		if strings.Contains(body, adminKey) || strings.Contains(body, res.APIKey) {
			t.Fatalf("an answer, span or metric carries a key: %s", body)
		}
	}
	for _, k := range stub.Keys() {
		remember(k)
	}
	_ = http.StatusOK
}
