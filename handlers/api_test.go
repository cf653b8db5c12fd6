package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

func openaiKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return remember("sk-proj-" + hex.EncodeToString(b))
}

func anthropicKey(t *testing.T) string { return remember("sk-ant-api03-" + openaiKey(t)[8:]) }
func exaKey(t *testing.T) string {
	h := openaiKey(t)[8:40] // 32 hexadecimal digits
	return remember(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

func TestHappyPathOfEveryRoute(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	hosted := openaiKey(t)
	if _, err := a.ground.keys.PutKey(context.Background(), broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.HostedKey("openai", broker.DefaultKeyID), Credential: providers.APIKey(hosted)}); err != nil {
		t.Fatal(err)
	}

	r := a.call("admin", "GET", "/v1/providers", nil)
	var providers client.ProviderList
	r.decode(t, &providers)
	if r.status != 200 || len(providers.Providers) < 5 || providers.Providers[0].ID != "anthropic" || providers.Providers[0].DisplayName == "" {
		t.Fatalf("providers: %d %s", r.status, r.body)
	}
	// Every provider lists its kind and fields: api_key providers their
	// one secret field; the cloud kinds several, with at least one secret.
	cloud := map[string]string{"azure-openai": "azure_openai", "bedrock": "aws_bedrock", "vertex": "gcp_vertex"}
	for _, p := range providers.Providers {
		if kind, ok := cloud[p.ID]; ok {
			secrets := 0
			for _, f := range p.Fields {
				if f.Secret {
					secrets++
				}
			}
			if p.Kind != kind || len(p.Fields) < 3 || secrets == 0 || p.FormatHint == "" {
				t.Fatalf("provider %s: kind %q, fields %+v", p.ID, p.Kind, p.Fields)
			}
			// The ways of signing in, as a form asks them: each field of
			// a way names it, and each way's required fields are its own.
			if want := map[string]int{"azure-openai": 2, "bedrock": 2, "vertex": 0}[p.ID]; (p.Choices == nil && want > 0) ||
				(p.Choices != nil && (len(p.Choices.Options) != want || p.Choices.Label == "")) {
				t.Fatalf("provider %s: choices %+v", p.ID, p.Choices)
			}
			for _, f := range p.Fields {
				if f.Label == "" || (f.Type == "map") != (len(f.MapLabels) == 2) || f.File != (f.Name == "serviceAccountJson") {
					t.Fatalf("provider %s: field %+v", p.ID, f)
				}
			}
			delete(cloud, p.ID)
			continue
		}
		if want := []client.CredentialField{{Name: "apiKey", Secret: true, Required: true, Hint: p.FormatHint, Label: "API key"}}; p.Kind != "api_key" || p.FormatHint == "" ||
			!reflect.DeepEqual(p.Fields, want) {
			t.Fatalf("provider %s: kind %q, fields %+v", p.ID, p.Kind, p.Fields)
		}
	}
	if len(cloud) > 0 {
		t.Fatalf("GET /v1/providers lacks %v", cloud)
	}

	r = a.call("admin", "GET", "/v1/whoami", nil)
	var who client.WhoAmI
	r.decode(t, &who)
	if r.status != 200 || who.TokenID != a.ids["admin"] || who.Role != "admin" || strings.Join(who.Workspaces, ",") != "ws1" {
		t.Fatalf("whoami: %d %s", r.status, r.body)
	}

	k1 := openaiKey(t)
	r = a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: k1})
	var meta client.KeyMetadata
	r.decode(t, &meta)
	if r.status != http.StatusCreated || r.header.Get("ETag") != `"1"` || meta.Version != 1 || meta.MaskedKey != k1[:6]+"..."+k1[len(k1)-4:] ||
		meta.Workspace != "ws1" || meta.Provider != "openai" || meta.CreatedBy != "token:"+a.ids["admin"] || len(meta.Fingerprint) != 64 {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	// The exact JSON shape: these fields and no others.
	var shape map[string]any
	r.decode(t, &shape)
	var fields []string
	for k := range shape {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	if got := strings.Join(fields, ","); got != "createdAt,createdBy,fingerprint,health,idle,keyId,kind,masked,maskedKey,models,name,priority,provider,resolves,scope,scopeId,state,updatedAt,updatedBy,version,workspace" {
		t.Fatalf("metadata fields: %s", got)
	}

	k2 := openaiKey(t)
	r = a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: k2}, "If-Match", `"1"`)
	if r.status != http.StatusOK || r.header.Get("ETag") != `"2"` {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	r = a.call("reader", "GET", "/v1/workspaces/ws1/keys/openai", nil)
	r.decode(t, &meta)
	if r.status != 200 || r.header.Get("ETag") != `"2"` || meta.Version != 2 || strings.Contains(string(r.body), k2) {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if _, err := a.kv.Put(context.Background(), broker.WorkspaceKey("ws1", "anthropic", broker.DefaultKeyID).VaultPath(), map[string]string{"api_key": anthropicKey(t)}, 0); err != nil {
		t.Fatal(err)
	}
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/exa", client.PutKeyRequest{APIKey: exaKey(t)})
	r = a.call("reader", "GET", "/v1/workspaces/ws1/keys", nil)
	var list client.KeyList
	r.decode(t, &list)
	if r.status != 200 || len(list.Keys) != 2 || list.Keys[0].Provider != "exa" || list.Keys[1].Provider != "openai" {
		t.Fatalf("list (sorted by provider, only keys keybroker wrote): %d %s", r.status, r.body)
	}

	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	var res client.ResolveResponse
	r.decode(t, &res)
	if r.status != 200 || res.APIKey != k2 || res.Kind != "api_key" || res.Source != "byok" || !res.IsBYOK || res.Version != 2 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("resolve: %d %v %v", r.status, r.header, res)
	}
	if n := strings.Count(string(r.body), k2); n != 1 {
		t.Fatalf("the resolve answer holds the key %d times", n)
	}

	r = a.call("admin", "GET", "/v1/workspaces/ws1/keys/openai/versions", nil)
	var versions client.VersionList
	r.decode(t, &versions)
	if r.status != 200 || len(versions.Versions) != 2 || !versions.Versions[0].Current || versions.Versions[0].Version != 2 {
		t.Fatalf("versions: %d %s", r.status, r.body)
	}
	r = a.call("admin", "POST", "/v1/workspaces/ws1/keys/openai/rollback", client.RollbackRequest{Version: 1})
	r.decode(t, &meta)
	if r.status != 200 || meta.Version != 3 || meta.MaskedKey != k1[:6]+"..."+k1[len(k1)-4:] {
		t.Fatalf("rollback: %d %s", r.status, r.body)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	r.decode(t, &res)
	if res.APIKey != k1 || res.Version != 3 {
		t.Fatalf("resolve after rollback: %v", res)
	}

	r = a.call("admin", "DELETE", "/v1/workspaces/ws1/keys/openai", nil, "If-Match", `"3"`)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
	r.decode(t, &res)
	if r.status != 200 || res.APIKey != hosted || res.Source != "hosted" || res.IsBYOK {
		t.Fatalf("resolve after delete falls back to hosted: %d %v", r.status, res)
	}
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "mistral"})
	if r.status != 404 || r.code() != "no_key" {
		t.Fatalf("resolve with no key anywhere: %d %s", r.status, r.body)
	}

	// Audit: newest first, paginated with a cursor, with who/where/request id.
	r = a.call("admin", "GET", "/v1/workspaces/ws1/audit?limit=2", nil)
	var page client.AuditPage
	r.decode(t, &page)
	if r.status != 200 || len(page.Events) != 2 || page.NextCursor == "" || page.Events[0].Action != "key.delete" ||
		page.Events[0].Actor != "token:"+a.ids["admin"] || page.Events[0].RemoteAddr == "" || page.Events[0].RequestID == "" {
		t.Fatalf("audit page 1: %d %s", r.status, r.body)
	}
	var actions []string
	for cursor := ""; ; {
		path := "/v1/workspaces/ws1/audit?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page client.AuditPage
		a.call("admin", "GET", path, nil).decode(t, &page)
		for _, ev := range page.Events {
			actions = append(actions, ev.Action)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	// Oldest last: the test's admin and reader tokens for ws1.
	if got := strings.Join(actions, ","); got != "key.delete,key.rollback,key.create,key.rotate,key.create,token.create,token.create" {
		t.Fatalf("audit trail: %s", got)
	}

	r = a.call("operator", "DELETE", "/v1/workspaces/ws1", nil)
	var purge client.PurgeResult
	r.decode(t, &purge)
	if r.status != 200 || purge.KeysDestroyed != 3 { // openai (deleted, history kept), anthropic, exa
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	for _, p := range []string{"openai", "anthropic", "exa"} {
		if _, err := a.kv.Metadata(context.Background(), broker.WorkspaceKey("ws1", p, broker.DefaultKeyID).VaultPath()); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("%s still in Vault after purge: %v", p, err)
		}
	}
	r = a.call("admin", "GET", "/v1/workspaces/ws1/keys", nil)
	r.decode(t, &list)
	if len(list.Keys) != 0 {
		t.Fatalf("metadata after purge: %s", r.body)
	}

	r = a.call("", "GET", "/v1/openapi.json", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"openapi"`) {
		t.Fatalf("openapi.json: %d", r.status)
	}
}

// snapshot is everything a refused request must leave alone.
func (a *api) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, ws := range []string{"ws1", "ws2", "ws9"} {
		r := a.call("operator", "GET", "/v1/workspaces/"+ws+"/keys", nil)
		b.Write(r.body)
	}
	for _, path := range []string{"/v1/organizations/acme/providers/openai/keys", "/v1/hosted/providers/openai/keys", "/v1/workspaces/ws1/settings"} {
		b.Write(a.call("operator", "GET", path, nil).body)
	}
	for _, scope := range []broker.Scope{broker.WorkspaceScope("ws1"), broker.WorkspaceScope("ws2"), broker.WorkspaceScope("ws9"),
		broker.OrganizationScope("acme"), broker.OrganizationScope("beta"), broker.HostedScope()} {
		providers, err := a.kv.List(ctx, scope.ProvidersDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range providers {
			pool := scope.Pool(strings.TrimSuffix(p, "/"))
			keys, err := a.kv.List(ctx, pool.KeysDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				md, err := a.kv.Metadata(ctx, pool.Key(k).VaultPath())
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString(pool.Key(k).String() + ":")
				for _, v := range md.Versions {
					b.WriteString(strings.Join([]string{strconv.Itoa(v.Version), v.DeletionTime.String(), strconv.FormatBool(v.Destroyed)}, ","))
				}
				b.WriteString(strconv.Itoa(md.CurrentVersion) + ";")
			}
		}
	}
	return b.String()
}

// deniedCount is how many denials of the token the trails hold, counting
// what aggregated rows stand for (the denials noted but not yet written
// are written first).
func (a *api) deniedCount(t *testing.T, tokenName string) int {
	t.Helper()
	if err := a.ground.tokens.FlushDenials(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.pool.QueryRow(context.Background(), `SELECT coalesce(sum(event_count), 0) FROM audit_events WHERE action = 'access.denied' AND actor = $1`,
		"token:"+a.ids[tokenName]).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type route struct {
	name    string
	allowed []string
	do      func(a *api, as string) answer
	prepare func(a *api) // makes the call possible again before an allowed role runs it
}

func routes(t *testing.T) []route {
	return []route{
		{"list providers", []string{"operator", "admin", "reader", "resolver", "admin-ws2", "org-admin", "org-reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/providers", nil) }, nil},
		{"list keys", []string{"operator", "admin", "reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/workspaces/ws1/keys", nil) }, nil},
		{"get key", []string{"operator", "admin", "reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/workspaces/ws1/keys/openai", nil) }, nil},
		{"versions", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "GET", "/v1/workspaces/ws1/keys/openai/versions", nil)
			}, nil},
		{"audit", []string{"operator", "admin"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/workspaces/ws1/audit", nil) }, nil},
		{"settings", []string{"operator", "admin", "reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/workspaces/ws1/settings", nil) }, nil},
		{"change settings", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Inherit: new(true)})
			}, nil},
		{"effective", []string{"operator", "admin", "reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/workspaces/ws1/effective", nil) }, nil},
		{"global audit", []string{"operator"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/audit", nil) }, nil},
		{"set key", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "PUT", "/v1/workspaces/ws1/keys/mistral", client.PutKeyRequest{APIKey: remember(openaiKey(t)[8:40])})
			}, nil},
		{"rollback", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "POST", "/v1/workspaces/ws1/keys/openai/rollback", client.RollbackRequest{Version: 1})
			}, nil},
		{"delete key", []string{"operator", "admin"},
			func(a *api, as string) answer { return a.call(as, "DELETE", "/v1/workspaces/ws1/keys/exa", nil) },
			func(a *api) {
				a.call("operator", "PUT", "/v1/workspaces/ws1/keys/exa", client.PutKeyRequest{APIKey: exaKey(t)})
			}},
		{"purge workspace", []string{"operator"},
			func(a *api, as string) answer { return a.call(as, "DELETE", "/v1/workspaces/ws9", nil) },
			func(a *api) {
				a.call("operator", "PUT", "/v1/workspaces/ws9/keys/exa", client.PutKeyRequest{APIKey: exaKey(t)})
			}},
		// Pools of every scope.
		{"list pool", []string{"operator", "admin", "reader"},
			func(a *api, as string) answer {
				return a.call(as, "GET", "/v1/workspaces/ws1/providers/openai/keys", nil)
			}, nil},
		{"add key", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "POST", "/v1/workspaces/ws1/providers/anthropic/keys", client.AddKeyRequest{APIKey: anthropicKey(t)})
			}, nil},
		{"update key", []string{"operator", "admin"},
			func(a *api, as string) answer {
				return a.call(as, "PATCH", "/v1/workspaces/ws1/providers/openai/keys/default", client.UpdateKeyRequest{Name: new("main")})
			}, nil},
		{"organization pool", []string{"operator", "org-admin", "org-reader"},
			func(a *api, as string) answer {
				return a.call(as, "GET", "/v1/organizations/acme/providers/openai/keys", nil)
			}, nil},
		{"add organization key", []string{"operator", "org-admin"},
			func(a *api, as string) answer {
				return a.call(as, "POST", "/v1/organizations/acme/providers/anthropic/keys", client.AddKeyRequest{APIKey: anthropicKey(t)})
			}, nil},
		{"another organization's pool", []string{"operator"},
			func(a *api, as string) answer {
				return a.call(as, "GET", "/v1/organizations/beta/providers/openai/keys", nil)
			}, nil},
		{"organization audit", []string{"operator", "org-admin"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/organizations/acme/audit", nil) }, nil},
		{"linked workspaces", []string{"operator", "org-admin", "org-reader"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/organizations/acme/workspaces", nil) }, nil},
		{"hosted pool", []string{"operator"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/hosted/providers/openai/keys", nil) }, nil},
		{"add hosted key", []string{"operator"},
			func(a *api, as string) answer {
				return a.call(as, "POST", "/v1/hosted/providers/anthropic/keys", client.AddKeyRequest{APIKey: anthropicKey(t)})
			}, nil},
		{"hosted audit", []string{"operator"},
			func(a *api, as string) answer { return a.call(as, "GET", "/v1/hosted/audit", nil) }, nil},
		{"purge organization", []string{"operator"},
			func(a *api, as string) answer { return a.call(as, "DELETE", "/v1/organizations/beta", nil) },
			func(a *api) {
				a.call("operator", "PUT", "/v1/organizations/beta/providers/exa/keys/k", client.PutKeyRequest{APIKey: exaKey(t)})
			}},
		// Operators manage everything but never read a key.
		{"resolve", []string{"resolver"},
			func(a *api, as string) answer {
				return a.call(as, "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"})
			}, nil},
	}
}

func TestRoleMatrix(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	for _, p := range []string{"openai", "openai", "exa"} {
		if r := a.call("operator", "PUT", "/v1/workspaces/ws1/keys/"+p, client.PutKeyRequest{APIKey: keyFor(t, p)}); r.status >= 300 {
			t.Fatalf("fixture: %d %s", r.status, r.body)
		}
	}
	a.call("operator", "PUT", "/v1/workspaces/ws9/keys/exa", client.PutKeyRequest{APIKey: exaKey(t)})

	roles := []string{"operator", "admin", "reader", "resolver", "admin-ws2", "org-admin", "org-reader"}
	for _, rt := range routes(t) {
		for _, role := range roles {
			allowed := contains(rt.allowed, role)
			t.Run(rt.name+"/"+role, func(t *testing.T) {
				if allowed {
					if rt.prepare != nil {
						rt.prepare(a)
					}
					if r := rt.do(a, role); r.status < 200 || r.status > 299 {
						t.Fatalf("allowed call answered %d %s", r.status, r.body)
					}
					return
				}
				before, denied := a.snapshot(t), a.deniedCount(t, role)
				r := rt.do(a, role)
				if r.status != http.StatusForbidden || r.code() != "forbidden" {
					t.Fatalf("forbidden call answered %d %s", r.status, r.body)
				}
				if after := a.snapshot(t); after != before {
					t.Fatalf("a forbidden call changed state:\nbefore %s\nafter  %s", before, after)
				}
				if a.deniedCount(t, role) != denied+1 {
					t.Fatal("the denial is not in the audit trail")
				}
			})
		}
		for _, bad := range []string{"", "garbage", "kbt_" + strings.Repeat("A", 43), "revoked", "expired"} {
			t.Run(rt.name+"/token="+bad, func(t *testing.T) {
				before := a.snapshot(t)
				r := rt.do(a, bad)
				if r.status != http.StatusUnauthorized || r.code() != "unauthenticated" || r.header.Get("WWW-Authenticate") == "" {
					t.Fatalf("answered %d %s", r.status, r.body)
				}
				if a.snapshot(t) != before {
					t.Fatal("an unauthenticated call changed state")
				}
			})
		}
	}
}

func keyFor(t *testing.T, provider string) string {
	switch provider {
	case "exa":
		return exaKey(t)
	case "anthropic":
		return anthropicKey(t)
	}
	return openaiKey(t)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestBadInputGetsTheDocumentedErrorAndChangesNothing(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	before := a.snapshot(t)
	key := openaiKey(t)
	cases := []struct {
		name, method, path string
		body               any
		header             []string
		status             int
		code               string
	}{
		{"malformed JSON", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":`, nil, 400, "malformed_json"},
		{"not an object", "PUT", "/v1/workspaces/ws1/keys/openai", `["x"]`, nil, 400, "malformed_json"},
		{"empty body", "PUT", "/v1/workspaces/ws1/keys/openai", ``, nil, 400, "malformed_json"},
		{"trailing data", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":"` + key + `"} {}`, nil, 400, "malformed_json"},
		{"unknown field", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":"` + key + `","owner":"x"}`, nil, 400, "malformed_json"},
		{"wrong type", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":42}`, nil, 400, "malformed_json"},
		{"empty key", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":""}`, nil, 422, "key_rejected"},
		{"key with whitespace", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key + " "}, nil, 422, "key_rejected"},
		{"key with newline", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key[:20] + "\n" + key[20:]}, nil, 422, "key_rejected"},
		{"key over 4 KiB", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: remember("sk-" + strings.Repeat(key[8:], 100))}, nil, 422, "key_rejected"},
		{"body over 64 KiB", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: remember("sk-" + strings.Repeat(key[8:], 1500))}, nil, 413, "body_too_large"},
		{"unknown provider", "PUT", "/v1/workspaces/ws1/keys/nosuch", client.PutKeyRequest{APIKey: key}, nil, 400, "unknown_provider"},
		{"provider upper case", "PUT", "/v1/workspaces/ws1/keys/OpenAI", client.PutKeyRequest{APIKey: key}, nil, 400, "invalid_id"},
		{"workspace with /", "PUT", "/v1/workspaces/ws1/x/keys/openai", client.PutKeyRequest{APIKey: key}, nil, 404, "not_found"},
		{"workspace %2F", "PUT", "/v1/workspaces/ws1%2Fx/keys/openai", client.PutKeyRequest{APIKey: key}, nil, 400, "invalid_id"},
		{"workspace ..", "PUT", "/v1/workspaces/../keys/openai", client.PutKeyRequest{APIKey: key}, nil, 400, "invalid_id"},
		{"workspace upper case", "PUT", "/v1/workspaces/WS1/keys/openai", client.PutKeyRequest{APIKey: key}, nil, 400, "invalid_id"},
		{"workspace 200 characters", "PUT", "/v1/workspaces/" + strings.Repeat("w", 200) + "/keys/openai", client.PutKeyRequest{APIKey: key}, nil, 400, "invalid_id"},
		{"stale If-Match", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key}, []string{"If-Match", `"7"`}, 412, "precondition_failed"},
		{"garbage If-Match", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key}, []string{"If-Match", `"abc"`}, 400, "invalid_if_match"},
		{"stale If-Match on delete", "DELETE", "/v1/workspaces/ws1/keys/openai", nil, []string{"If-Match", `"7"`}, 412, "precondition_failed"},
		{"delete a missing key", "DELETE", "/v1/workspaces/ws1/keys/mistral", nil, nil, 404, "not_found"},
		{"rollback to version 0", "POST", "/v1/workspaces/ws1/keys/openai/rollback", `{"version":0}`, nil, 400, "invalid_request"},
		{"rollback to the current version", "POST", "/v1/workspaces/ws1/keys/openai/rollback", `{"version":1}`, nil, 400, "invalid_request"},
		{"rollback to a missing version", "POST", "/v1/workspaces/ws1/keys/openai/rollback", `{"version":9}`, nil, 404, "not_found"},
		{"rollback with a string", "POST", "/v1/workspaces/ws1/keys/openai/rollback", `{"version":"1"}`, nil, 400, "malformed_json"},
		{"key and credential both", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":"` + key + `","credential":{"apiKey":"` + key + `"}}`, nil, 400, "invalid_request"},
		{"neither key nor credential", "PUT", "/v1/workspaces/ws1/keys/openai", `{}`, nil, 400, "invalid_request"},
		{"neither key nor credential on add", "POST", "/v1/workspaces/ws1/providers/openai/keys", `{"keyId":"k9"}`, nil, 400, "invalid_request"},
		{"credential with an unknown field", "PUT", "/v1/workspaces/ws1/keys/openai", `{"credential":{"apiKey":"` + key + `","region":"eu"}}`, nil, 422, "key_rejected"},
		{"credential without its field", "PUT", "/v1/workspaces/ws1/keys/openai", `{"credential":{}}`, nil, 422, "key_rejected"},
		{"credential field not a string", "PUT", "/v1/workspaces/ws1/keys/openai", `{"credential":{"apiKey":42}}`, nil, 400, "malformed_json"},
		{"credential breaking the format", "POST", "/v1/workspaces/ws1/providers/openai/keys", `{"credential":{"apiKey":"sk-ant-` + key[3:] + `"}}`, nil, 422, "key_rejected"},
		{"audit limit 0", "GET", "/v1/workspaces/ws1/audit?limit=0", nil, nil, 400, "invalid_request"},
		{"audit bad cursor", "GET", "/v1/workspaces/ws1/audit?cursor=x", nil, nil, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := a.call("admin", tc.method, tc.path, tc.body, tc.header...)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("answered %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	resolveCases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"resolve unknown provider", `{"workspace":"ws1","provider":"nosuch"}`, 400, "unknown_provider"},
		{"resolve bad workspace", `{"workspace":"../x","provider":"openai"}`, 400, "invalid_id"},
		{"resolve unknown field", `{"workspace":"ws1","provider":"openai","x":1}`, 400, "malformed_json"},
	}
	for _, tc := range resolveCases {
		t.Run(tc.name, func(t *testing.T) {
			r := a.call("resolver", "POST", "/v1/resolve", tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("answered %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	if after := a.snapshot(t); after != before {
		t.Fatalf("bad input changed state:\nbefore %s\nafter  %s", before, after)
	}
	var page client.AuditPage
	a.call("admin", "GET", "/v1/workspaces/ws1/audit", nil).decode(t, &page)
	keyChanges := 0
	for _, ev := range page.Events {
		if strings.HasPrefix(ev.Action, "key.") && ev.Outcome == "success" {
			keyChanges++
		}
	}
	if keyChanges != 1 { // the fixture's create
		t.Fatalf("bad input recorded successful changes: %+v", page.Events)
	}
}

func TestModesServeOnlyTheirRoutes(t *testing.T) {
	admin := newAPI(t, handlers.ModeAdmin)
	if r := admin.call("operator", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != 404 {
		t.Fatalf("admin mode serves resolve: %d", r.status)
	}
	if r := admin.call("operator", "GET", "/v1/workspaces/ws1/keys", nil); r.status != 200 {
		t.Fatalf("admin mode key list: %d", r.status)
	}
	resolver := newAPI(t, handlers.ModeResolver)
	if r := resolver.call("operator", "GET", "/v1/workspaces/ws1/keys", nil); r.status != 404 {
		t.Fatalf("resolver mode serves key management: %d", r.status)
	}
	if r := resolver.call("operator", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != 404 {
		t.Fatalf("resolver mode serves key management: %d", r.status)
	}
}

// TestOpenAPIDocumentsEveryRoute checks both directions: every route the
// server registers is in the document, and every operation in the
// document is served.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	a := newProxyAPI(t, nil)
	served := map[string]bool{}
	for _, r := range a.router.Routes() {
		served[r.Method+" "+ginToOpenAPI(r.Path)] = true
	}
	documented := map[string]bool{}
	for path, item := range loadDoc(t).Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	if !reflect.DeepEqual(served, documented) {
		t.Fatalf("served and documented routes differ:\nserved     %v\ndocumented %v", keys(served), keys(documented))
	}
}

func ginToOpenAPI(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A write takes the key as {"credential": {"apiKey": ...}} as well as
// {"apiKey": ...}, and the answers are the same.
func TestWritesTakeTheKeyAsACredential(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	k1 := openaiKey(t)
	r := a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{Credential: map[string]any{"apiKey": k1}})
	var meta client.KeyMetadata
	r.decode(t, &meta)
	if r.status != http.StatusCreated || meta.Version != 1 || meta.MaskedKey != k1[:6]+"..."+k1[len(k1)-4:] || strings.Contains(string(r.body), k1) {
		t.Fatalf("put a credential: %d %s", r.status, r.body)
	}
	ak := anthropicKey(t)
	r = a.call("admin", "POST", "/v1/workspaces/ws1/providers/anthropic/keys", `{"keyId":"c1","credential":{"apiKey":"`+ak+`"}}`)
	r.decode(t, &meta)
	if r.status != http.StatusCreated || meta.KeyID != "c1" || meta.Version != 1 || strings.Contains(string(r.body), ak) {
		t.Fatalf("add a credential: %d %s", r.status, r.body)
	}
	for provider, want := range map[string]string{"openai": k1, "anthropic": ak} {
		r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: provider})
		var res client.ResolveResponse
		r.decode(t, &res)
		if r.status != 200 || res.APIKey != want || res.Kind != "api_key" {
			t.Fatalf("resolve %s: %d %v", provider, r.status, res)
		}
	}
	// The Go client's body with an empty apiKey beside the credential is
	// the credential.
	k2 := openaiKey(t)
	r = a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", `{"apiKey":"","credential":{"apiKey":"`+k2+`"}}`)
	if r.status != http.StatusOK {
		t.Fatalf("rotate with a credential: %d %s", r.status, r.body)
	}
}
