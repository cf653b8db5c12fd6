package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

func TestPoolRoutesOfEveryScope(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	for _, scope := range []struct{ path, as, scope, scopeID string }{
		{"/v1/workspaces/ws1", "admin", "workspace", "ws1"},
		{"/v1/organizations/acme", "org-admin", "organization", "acme"},
		{"/v1/hosted", "operator", "hosted", ""},
	} {
		t.Run(scope.scope, func(t *testing.T) {
			pool := scope.path + "/providers/openai/keys"
			k1, k2 := openaiKey(t), openaiKey(t)
			r := a.call(scope.as, "POST", pool, client.AddKeyRequest{APIKey: k1, KeyID: "main", Name: "Main key", Priority: new(10), Models: []string{"gpt-4o"}})
			if r.status != http.StatusCreated || r.header.Get("ETag") != `"1"` || r.header.Get("Location") != pool+"/main" {
				t.Fatalf("add: %d %v %s", r.status, r.header, r.body)
			}
			var m client.KeyMetadata
			r.decode(t, &m)
			if m.Scope != scope.scope || m.ScopeID != scope.scopeID || m.KeyID != "main" || m.Name != "Main key" || m.Priority != 10 ||
				m.State != "active" || len(m.Models) != 1 || m.Version != 1 || strings.Contains(string(r.body), k1) {
				t.Fatalf("added: %s", r.body)
			}
			r = a.call(scope.as, "POST", pool, client.AddKeyRequest{APIKey: k2})
			r.decode(t, &m)
			if r.status != http.StatusCreated || !strings.HasPrefix(m.KeyID, "key-") || m.Priority != 100 {
				t.Fatalf("add with a generated id: %d %s", r.status, r.body)
			}
			generated := m.KeyID
			r = a.call(scope.as, "PATCH", pool+"/"+generated, client.UpdateKeyRequest{Name: new("Backup"), State: new("disabled"), Models: &[]string{}})
			r.decode(t, &m)
			if r.status != 200 || m.Name != "Backup" || m.State != "disabled" || m.Version != 1 {
				t.Fatalf("patch: %d %s", r.status, r.body)
			}
			r = a.call(scope.as, "PUT", pool+"/main", client.PutKeyRequest{APIKey: openaiKey(t)}, "If-Match", `"1"`)
			if r.status != 200 || r.header.Get("ETag") != `"2"` {
				t.Fatalf("rotate: %d %s", r.status, r.body)
			}
			var list client.KeyList
			a.call(scope.as, "GET", pool, nil).decode(t, &list)
			if len(list.Keys) != 2 || list.Keys[0].KeyID != "main" || list.Keys[1].KeyID != generated {
				t.Fatalf("pool: %+v", list.Keys)
			}
			if r := a.call(scope.as, "GET", pool+"/main/versions", nil); r.status != 200 {
				t.Fatalf("versions: %d", r.status)
			}
			if r := a.call(scope.as, "POST", pool+"/main/rollback", client.RollbackRequest{Version: 1}); r.status != 200 || r.header.Get("ETag") != `"3"` {
				t.Fatalf("rollback: %d %s", r.status, r.body)
			}
			var page client.AuditPage
			a.call(scope.as, "GET", scope.path+"/audit", nil).decode(t, &page)
			var actions []string
			for _, ev := range page.Events {
				if ev.Scope != scope.scope || ev.ScopeID != scope.scopeID {
					t.Fatalf("event of another trail: %+v", ev)
				}
				actions = append(actions, ev.Action+"/"+ev.KeyID)
			}
			if got := strings.Join(actions, " "); !strings.HasPrefix(got, "key.rollback/main key.rotate/main key.update/"+generated+" key.create/"+generated+" key.create/main") {
				t.Fatalf("trail: %s", got)
			}
			if r := a.call(scope.as, "DELETE", pool+"/"+generated+"?destroy=true", nil); r.status != 204 {
				t.Fatalf("delete: %d", r.status)
			}
			if r := a.call(scope.as, "GET", pool+"/"+generated, nil); r.status != 404 {
				t.Fatalf("deleted key: %d", r.status)
			}
		})
	}
	// The inheritance is visible from the organization's side.
	if r := a.call("operator", "PUT", "/v1/workspaces/ws9/settings", client.SettingsRequest{Organization: new("acme")}); r.status != 200 {
		t.Fatalf("link: %d %s", r.status, r.body)
	}
	var linked client.WorkspaceList
	a.call("org-reader", "GET", "/v1/organizations/acme/workspaces", nil).decode(t, &linked)
	if len(linked.Workspaces) != 1 || linked.Workspaces[0].Workspace != "ws9" || !linked.Workspaces[0].Inherit {
		t.Fatalf("linked workspaces: %+v", linked)
	}
	// Resolve says which key served, and that an organization's key is the
	// customer's own.
	var res client.ResolveResponse
	r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws9", Provider: "openai", Model: "gpt-4o"})
	r.decode(t, &res)
	if r.status != 200 || res.Scope != "organization" || res.KeyID != "main" || !res.IsBYOK || res.FallbackReason != "no_workspace_key" || res.Fingerprint == "" {
		t.Fatalf("resolve: %d %v %+v", r.status, res, res.FallbackReason)
	}
	if r := a.call("operator", "PATCH", "/v1/hosted/providers/openai/keys/main", client.UpdateKeyRequest{Models: &[]string{}}); r.status != 200 {
		t.Fatalf("let the hosted key serve every model: %d %s", r.status, r.body)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws9", Provider: "openai", Model: "o3"})
	r.decode(t, &res)
	if r.status != 200 || res.Scope != "hosted" || res.IsBYOK || res.FallbackReason != "organization_keys_unavailable" {
		t.Fatalf("resolve a model the organization's key does not allow: %d %s", r.status, r.body)
	}
	if r := a.call("operator", "PUT", "/v1/workspaces/ws9/settings", client.SettingsRequest{HostedFallback: new(false)}); r.status != 200 {
		t.Fatalf("fail closed: %d", r.status)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws9", Provider: "openai", Model: "o3"})
	var eb client.ErrorBody
	r.decode(t, &eb)
	if r.status != 404 || eb.Error.Code != "no_key" || eb.Error.Reason != "no_key_allows_model" {
		t.Fatalf("resolve a model no key allows, failing closed: %d %s", r.status, r.body)
	}
	// Purging the organization takes its keys.
	var purged client.PurgeResult
	r = a.call("operator", "DELETE", "/v1/organizations/acme", nil)
	r.decode(t, &purged)
	if r.status != 200 || purged.Organization != "acme" || purged.KeysDestroyed != 1 {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
}

func TestPoolBadInputGetsAClearErrorAndChangesNothing(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	pool := "/v1/workspaces/ws1/providers/openai/keys"
	if r := a.call("admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "main"}); r.status != 201 {
		t.Fatalf("fixture: %d %s", r.status, r.body)
	}
	for range 9 {
		if r := a.call("admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t)}); r.status != 201 {
			t.Fatalf("fixture: %d %s", r.status, r.body)
		}
	}
	before := a.snapshot(t)
	key := anthropicKey(t)
	other := "/v1/workspaces/ws1/providers/anthropic/keys"
	for _, tc := range []struct {
		name, as, method, path string
		body                   any
		status                 int
		code                   string
	}{
		{"an 11th key", "admin", "POST", pool, client.AddKeyRequest{APIKey: openaiKey(t)}, 409, "pool_full"},
		{"an 11th key by PUT", "admin", "PUT", pool + "/eleventh", client.PutKeyRequest{APIKey: openaiKey(t)}, 409, "pool_full"},
		{"an existing keyId", "admin", "POST", other, `{"apiKey":"` + key + `","keyId":"main"}`, 201, ""},
		{"name over 120", "admin", "POST", other, client.AddKeyRequest{APIKey: key, Name: strings.Repeat("n", 121)}, 400, "invalid_request"},
		{"priority 1001", "admin", "POST", other, `{"apiKey":"` + key + `","priority":1001}`, 400, "invalid_request"},
		{"priority 1.5", "admin", "POST", other, `{"apiKey":"` + key + `","priority":1.5}`, 400, "malformed_json"},
		{"priority a string", "admin", "POST", other, `{"apiKey":"` + key + `","priority":"1"}`, 400, "malformed_json"},
		{"unknown state", "admin", "POST", other, `{"apiKey":"` + key + `","state":"paused"}`, 400, "invalid_request"},
		{"models not a list", "admin", "POST", other, `{"apiKey":"` + key + `","models":"gpt-4o"}`, 400, "malformed_json"},
		{"models of numbers", "admin", "POST", other, `{"apiKey":"` + key + `","models":[1]}`, 400, "malformed_json"},
		{"a long model", "admin", "POST", other, client.AddKeyRequest{APIKey: key, Models: []string{strings.Repeat("m", 129)}}, 400, "invalid_request"},
		{"bad keyId", "admin", "POST", other, client.AddKeyRequest{APIKey: key, KeyID: "Main Key"}, 400, "invalid_id"},
		{"bad keyId in the path", "admin", "PATCH", pool + "/Main", client.UpdateKeyRequest{Name: new("x")}, 400, "invalid_id"},
		{"unknown key", "admin", "PATCH", pool + "/nosuch", client.UpdateKeyRequest{Name: new("x")}, 404, "not_found"},
		{"an empty patch", "admin", "PATCH", pool + "/main", `{}`, 400, "invalid_request"},
		{"patch with an apiKey", "admin", "PATCH", pool + "/main", `{"apiKey":"` + key + `"}`, 400, "malformed_json"},
		{"unknown provider", "admin", "POST", "/v1/workspaces/ws1/providers/nosuch/keys", client.AddKeyRequest{APIKey: key}, 400, "unknown_provider"},
		{"unknown scope", "operator", "GET", "/v1/teams/t1/providers/openai/keys", nil, 404, "not_found"},
		{"organization id upper case", "operator", "GET", "/v1/organizations/Acme/providers/openai/keys", nil, 400, "invalid_id"},
		{"an organization admin on a workspace", "org-admin", "POST", other, client.AddKeyRequest{APIKey: key}, 403, "forbidden"},
		{"an organization admin on another organization", "org-admin", "POST", "/v1/organizations/beta/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t)}, 403, "forbidden"},
		{"a workspace admin on hosted keys", "admin", "POST", "/v1/hosted/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t)}, 403, "forbidden"},
		{"a workspace admin linking an organization", "admin", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("acme")}, 403, "forbidden"},
		{"an organization id that breaks the rule", "operator", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("Acme Inc")}, 400, "invalid_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.call(tc.as, tc.method, tc.path, tc.body)
			if tc.name == "an existing keyId" {
				// The same key id in another pool is another key; in the
				// same pool it is a conflict.
				r = a.call(tc.as, tc.method, tc.path, tc.body)
				tc.status, tc.code = 409, "conflict"
				defer a.call("admin", "DELETE", other+"/main?destroy=true", nil)
			}
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("answered %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if tc.status >= 400 && strings.Contains(string(r.body), key) {
				t.Fatal("the answer holds the key")
			}
		})
	}
	if after := a.snapshot(t); after != before {
		t.Fatalf("bad input changed state:\\nbefore %s\\nafter  %s", before, after)
	}
}
