package handlers_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
)

func TestTokenRoutesAreTheOperatorsAndShowATokenOnce(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	var created client.CreatedToken
	r := a.call("operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "admin", Workspaces: []string{"ws1"}, TTLSeconds: 3600, Description: "page admins"})
	r.decode(t, &created)
	remember(created.Token)
	if r.status != 201 || !strings.HasPrefix(created.Token, "kbt_") || created.Role != "admin" || created.State != "active" ||
		created.ExpiresAt == nil || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %v", r.status, created)
	}
	// The answer says when it was created (it said year 1 before).
	if age := time.Since(created.CreatedAt); age < 0 || age > time.Minute {
		t.Fatalf("created at %v", created.CreatedAt)
	}
	// The new token works; the list never shows a token (or its hash).
	if r := a.call(created.Token, "GET", "/v1/workspaces/ws1/keys", nil); r.status != 200 {
		t.Fatalf("the new token: %d", r.status)
	}
	r = a.call("operator", "GET", "/v1/tokens", nil)
	var list client.TokenList
	r.decode(t, &list)
	if r.status != 200 || strings.Contains(string(r.body), created.Token) || strings.Contains(string(r.body), "hash") {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	found := false
	for _, tok := range list.Tokens {
		if tok.ID == created.ID && tok.Description == "page admins" && tok.State == "active" && strings.HasPrefix(tok.CreatedBy, "token:") {
			found = true
		}
	}
	if !found {
		t.Fatalf("the new token is not listed: %+v", list.Tokens)
	}
	before := a.snapshot(t)
	for _, tc := range []struct {
		name, as, method, path string
		body                   any
		status                 int
		code                   string
	}{
		{"an admin lists", "admin", "GET", "/v1/tokens", nil, 403, "forbidden"},
		{"an admin creates", "admin", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "operator"}, 403, "forbidden"},
		{"a resolver revokes", "resolver", "DELETE", "/v1/tokens/" + created.ID, nil, 403, "forbidden"},
		{"an unknown role", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "root"}, 400, "invalid_request"},
		// Tokens that obtain keys, or never expire, are never minted over
		// the API: an operator gets no key this way.
		{"an operator asks for a resolver token", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "resolver"}, 403, "forbidden"},
		{"an operator asks for a limited resolver token", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "resolver", Workspaces: []string{"ws1"}}, 403, "forbidden"},
		{"an operator asks for a token that never expires", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "operator", NoExpiry: true}, 403, "forbidden"},
		{"a resolver asks for a resolver token", "resolver", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "resolver"}, 403, "forbidden"},
		{"an admin of nothing", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "admin"}, 400, "invalid_request"},
		{"a bad workspace id", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "reader", Workspaces: []string{"WS 1"}}, 400, "invalid_request"},
		{"a lifetime of two years", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "resolver", TTLSeconds: 2 * 366 * 86400}, 400, "invalid_request"},
		{"a long operator token", "operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "operator", TTLSeconds: 60 * 86400}, 400, "invalid_request"},
		{"an unknown field", "operator", "POST", "/v1/tokens", `{"role":"resolver","hash":"x"}`, 400, "malformed_json"},
		{"an unknown token", "operator", "DELETE", "/v1/tokens/tok_0000000000000000", nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := a.call(tc.as, tc.method, tc.path, tc.body); r.status != tc.status || r.code() != tc.code {
				t.Fatalf("answered %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	if a.snapshot(t) != before {
		t.Fatal("refused token calls changed keys")
	}
	if r := a.call("operator", "DELETE", "/v1/tokens/"+created.ID, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := a.call(created.Token, "GET", "/v1/workspaces/ws1/keys", nil); r.status != 401 {
		t.Fatalf("the revoked token: %d", r.status)
	}
	if r := a.call("operator", "DELETE", "/v1/tokens/"+created.ID, nil); r.status != 404 {
		t.Fatalf("revoking twice: %d", r.status)
	}
	// Both are in the workspace's trail, by the operator's token.
	var page client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit", nil).decode(t, &page)
	var actions []string
	for _, ev := range page.Events {
		if strings.HasPrefix(ev.Action, "token.") && strings.Contains(ev.Detail, created.ID) {
			actions = append(actions, ev.Action+" by "+ev.Actor)
		}
	}
	if got := strings.Join(actions, ", "); got != "token.revoke by token:"+a.ids["operator"]+", token.create by token:"+a.ids["operator"] {
		t.Fatalf("trail: %s", got)
	}
	for _, ev := range page.Events {
		if ev.Action == "token.create" && strings.Contains(ev.Detail, created.ID) && !strings.Contains(ev.Detail, "via=api") {
			t.Fatalf("the creation does not say how it was asked for: %s", ev.Detail)
		}
	}
}

func TestAuditPagesFilterByActionOutcomeAndActor(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	a.call("reader", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}) // denied
	page := func(as, query string) []client.AuditEvent {
		t.Helper()
		var p client.AuditPage
		r := a.call(as, "GET", "/v1/workspaces/ws1/audit?"+query, nil)
		if r.status != 200 {
			t.Fatalf("audit?%s: %d %s", query, r.status, r.body)
		}
		r.decode(t, &p)
		return p.Events
	}
	if evs := page("admin", "action=key.rotate"); len(evs) != 1 || evs[0].Action != "key.rotate" {
		t.Fatalf("action=key.rotate: %+v", evs)
	}
	if evs := page("admin", "outcome=forbidden"); len(evs) != 1 || evs[0].Action != "access.denied" {
		t.Fatalf("outcome=forbidden: %+v", evs)
	}
	if evs := page("admin", "actor=token:"+a.ids["admin"]+"&action=key.create"); len(evs) != 1 {
		t.Fatalf("actor and action: %+v", evs)
	}
	if evs := page("admin", "action=nothing.like.this"); len(evs) != 0 {
		t.Fatalf("an action that never happened: %+v", evs)
	}
	var all client.AuditPage
	a.call("operator", "GET", "/v1/audit?action=key.create&limit=1", nil).decode(t, &all)
	if len(all.Events) != 1 || all.Events[0].Action != "key.create" {
		t.Fatalf("global trail, filtered: %+v", all)
	}
	if r := a.call("admin", "GET", "/v1/workspaces/ws1/audit?actor="+strings.Repeat("x", 200), nil); r.status != 400 {
		t.Fatalf("a 200-character actor: %d", r.status)
	}
}

func TestScopesListWhatTheCallerMayOpen(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	for _, path := range []string{"/v1/workspaces/ws1/providers/openai/keys", "/v1/workspaces/ws2/providers/openai/keys",
		"/v1/organizations/acme/providers/openai/keys", "/v1/hosted/providers/openai/keys"} {
		if r := a.call("operator", "POST", path, client.AddKeyRequest{APIKey: openaiKey(t)}); r.status != 201 {
			t.Fatalf("fixture %s: %d %s", path, r.status, r.body)
		}
	}
	// A scope with keys and settings (ws1, acme) is listed once.
	for ws, org := range map[string]string{"ws9": "beta", "ws1": "acme"} {
		if r := a.call("operator", "PUT", "/v1/workspaces/"+ws+"/settings", client.SettingsRequest{Organization: new(org)}); r.status != 200 {
			t.Fatalf("fixture: %d", r.status)
		}
	}
	list := func(as, query string) client.ScopeList {
		t.Helper()
		var l client.ScopeList
		r := a.call(as, "GET", "/v1/scopes?"+query, nil)
		if r.status != 200 {
			t.Fatalf("scopes?%s as %s: %d %s", query, as, r.status, r.body)
		}
		r.decode(t, &l)
		return l
	}
	names := func(l client.ScopeList) string {
		var out []string
		for _, s := range l.Scopes {
			out = append(out, s.Kind+"/"+s.ID)
		}
		return strings.Join(out, " ")
	}
	if got := names(list("operator", "")); got != "organization/acme organization/beta workspace/ws1 workspace/ws2 workspace/ws9" {
		t.Fatalf("an operator's scopes: %s", got)
	}
	if got := names(list("operator", "kind=workspace&q=s2")); got != "workspace/ws2" {
		t.Fatalf("workspaces matching s2: %s", got)
	}
	if got := names(list("operator", "kind=organization")); got != "organization/acme organization/beta" {
		t.Fatalf("organizations: %s", got)
	}
	if got := names(list("operator", "limit=1&cursor="+list("operator", "limit=3").NextCursor)); got != "workspace/ws2" {
		t.Fatalf("the page after ws1: %s", got)
	}
	first := list("operator", "limit=2")
	second := list("operator", "limit=2&cursor="+first.NextCursor)
	if names(first) != "organization/acme organization/beta" || names(second) != "workspace/ws1 workspace/ws2" || second.NextCursor == "" {
		t.Fatalf("pages: %q (%s), %q (%s)", names(first), first.NextCursor, names(second), second.NextCursor)
	}
	if got := names(list("admin", "")); got != "workspace/ws1" {
		t.Fatalf("an admin's scopes: %s", got)
	}
	if got := names(list("org-reader", "")); got != "organization/acme" {
		t.Fatalf("an organization reader's scopes: %s", got)
	}
	for _, tc := range []struct {
		as, query string
		status    int
	}{
		{"resolver", "", 403}, {"operator", "kind=team", 400}, {"admin", "kind=team", 400}, {"operator", "limit=0", 400}, {"operator", "cursor=nonsense", 400},
	} {
		if r := a.call(tc.as, "GET", "/v1/scopes?"+tc.query, nil); r.status != tc.status {
			t.Errorf("scopes?%s as %s: %d, want %d", tc.query, tc.as, r.status, tc.status)
		}
	}
}

func TestActorsAreNamedByTheirTokensDescription(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	var ci client.CreatedToken
	a.call("operator", "POST", "/v1/tokens", client.CreateTokenRequest{Role: "admin", Workspaces: []string{"ws1"}, Description: "CI deploy"}).decode(t, &ci)
	remember(ci.Token)
	ciActor := "token:" + ci.ID
	first := openaiKey(t)
	if r := a.call(ci.Token, "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: first}); r.status != 201 {
		t.Fatalf("create as CI: %d %s", r.status, r.body)
	}
	// The second version is the admin's (a token without a description).
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != 200 {
		t.Fatalf("rotate as admin: %d %s", r.status, r.body)
	}
	if r := a.call(ci.Token, "POST", "/v1/workspaces/ws1/keys/openai/rollback", client.RollbackRequest{Version: 1}); r.status != 200 {
		t.Fatalf("roll back as CI: %d %s", r.status, r.body)
	}

	var versions client.VersionList
	a.call("admin", "GET", "/v1/workspaces/ws1/keys/openai/versions", nil).decode(t, &versions)
	var who []string
	for _, v := range versions.Versions {
		who = append(who, fmt.Sprintf("%d:%s/%s", v.Version, strings.TrimPrefix(v.CreatedBy, "token:"), v.CreatedByName))
	}
	want := fmt.Sprintf("3:%s/CI deploy, 2:%s/, 1:%s/CI deploy", ci.ID, a.ids["admin"], ci.ID)
	if got := strings.Join(who, ", "); got != want {
		t.Fatalf("versions by %s, want %s", got, want)
	}
	// Each version says which value it was (masked): the roll back's is
	// the first's.
	if m := providers.MaskKey(first); versions.Versions[0].MaskedKey != m || versions.Versions[2].MaskedKey != m || versions.Versions[1].MaskedKey == m {
		t.Fatalf("masked values of the versions: %+v", versions.Versions)
	}
	var me client.WhoAmI
	a.call(ci.Token, "GET", "/v1/whoami", nil).decode(t, &me)
	if me.Description != "CI deploy" {
		t.Fatalf("whoami: %+v", me)
	}

	var pool client.KeyList
	a.call("reader", "GET", "/v1/workspaces/ws1/providers/openai/keys", nil).decode(t, &pool)
	if len(pool.Keys) != 1 || pool.Keys[0].UpdatedBy != ciActor || pool.Keys[0].UpdatedByName != "CI deploy" {
		t.Fatalf("pool: %+v", pool.Keys)
	}
	var key client.KeyMetadata
	a.call("reader", "GET", "/v1/workspaces/ws1/keys/openai", nil).decode(t, &key)
	if key.UpdatedByName != "CI deploy" {
		t.Fatalf("key: %+v", key)
	}

	var page client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit?action=key.rollback", nil).decode(t, &page)
	if len(page.Events) != 1 || page.Events[0].Actor != ciActor || page.Events[0].ActorName != "CI deploy" {
		t.Fatalf("audit: %+v", page.Events)
	}
	var rotations client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit?action=key.rotate", nil).decode(t, &rotations)
	if len(rotations.Events) != 1 || rotations.Events[0].ActorName != "" {
		t.Fatalf("a token without a description is not named: %+v", rotations.Events)
	}
}
