package handlers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// testCloud is a provider known only to these tests: a kind with a string
// field, a map field and two secret fields, the shape of the cloud kinds.
func testCloud() providers.Provider {
	return providers.Provider{ID: "testcloud", DisplayName: "TestCloud", Credential: providers.Schema{Kind: "test_cloud", Fields: []providers.Field{
		{Name: "region", VaultField: "region", Required: true},
		{Name: "modelMap", VaultField: "model_map", Type: providers.FieldMap},
		{Name: "accessKeyId", VaultField: "access_key_id", Secret: true, Required: true},
		{Name: "secretAccessKey", VaultField: "secret_access_key", Secret: true, Required: true},
	}}}
}

// newCloudAPI is newAPI whose registry has the built-in providers and ps.
func newCloudAPI(t *testing.T, ps ...providers.Provider) *api {
	t.Helper()
	all := append(providers.DefaultRegistry().All(), ps...)
	return newAPIGround(t, handlers.ModeAll, kbtest.Options{Broker: func(c *broker.Config) { c.Providers = providers.NewRegistry(all...) }}, nil)
}

// TestSeveralSecretFieldsEachMaskedNoneInPostgres writes a credential of
// several fields with a map field: the answers show the non-secret fields
// (the map as an object) and a preview of each secret field, Vault holds
// every field, and neither secret reaches an answer, a log or Postgres
// (the dump check of every test's database, in its cleanup).
func TestSeveralSecretFieldsEachMaskedNoneInPostgres(t *testing.T) {
	a := newCloudAPI(t, testCloud())
	id, secret := remember("AKIA"+strings.ToUpper(openaiKey(t)[8:24])), remember("s3cr3t/"+openaiKey(t)[8:48])
	body := map[string]any{"credential": map[string]any{"region": "eu-west-1", "accessKeyId": id, "secretAccessKey": secret,
		"modelMap": map[string]any{"sonnet": "anthropic.claude-sonnet", "haiku": "anthropic.claude-haiku"}}}
	r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/testcloud/keys/k1", body)
	if r.status != 201 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	for _, r := range []answer{r, a.call("admin", "GET", "/v1/workspaces/ws1/providers/testcloud/keys/k1", nil)} {
		var m client.KeyMetadata
		r.decode(t, &m)
		if m.Kind != "test_cloud" || m.Fields["region"] != "eu-west-1" {
			t.Fatalf("metadata: kind %q fields %v", m.Kind, m.Fields)
		}
		if mm, ok := m.Fields["modelMap"].(map[string]any); !ok || mm["sonnet"] != "anthropic.claude-sonnet" || len(mm) != 2 {
			t.Fatalf("the map field is shown as %#v", m.Fields["modelMap"])
		}
		if len(m.Fields) != 2 {
			t.Fatalf("fields shows more than the non-secret fields: %v", keysOf(m.Fields))
		}
		if m.Masked["accessKeyId"] != providers.MaskKey(id) || m.Masked["secretAccessKey"] != providers.MaskKey(secret) || len(m.Masked) != 2 {
			t.Fatalf("masked = %v", m.Masked)
		}
		if m.MaskedKey != providers.MaskKey(id) {
			t.Fatalf("maskedKey is %q, not the first secret field's preview", m.MaskedKey)
		}
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), id) {
			t.Fatal("a metadata answer holds a secret field")
		}
	}
	// A rotation that echoes the current preview of any secret field (a
	// page sending the masks back) is refused and changes nothing.
	echo := map[string]any{"region": "eu-west-1", "accessKeyId": id, "secretAccessKey": providers.MaskKey(secret)}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/testcloud/keys/k1", map[string]any{"credential": echo}); r.status != 422 ||
		!strings.Contains(r.message(), "masked preview") {
		t.Fatalf("echoing the second secret field's mask: %d %s", r.status, r.body)
	}
	// Vault holds every field, by its Vault name.
	sec, err := a.kv.Get(t.Context(), broker.WorkspaceKey("ws1", "testcloud", "k1").VaultPath())
	if err != nil {
		t.Fatal(err)
	}
	if sec.Data["secret_access_key"] != secret || sec.Data["access_key_id"] != id || sec.Data["model_map"] != `{"haiku":"anthropic.claude-haiku","sonnet":"anthropic.claude-sonnet"}` {
		t.Fatalf("Vault holds fields %v", keysOf(sec.Data))
	}
	// A map field of another JSON type is malformed (400), one with an
	// empty value refused (422); each names the field, and writes nothing.
	for _, tc := range []struct {
		modelMap     any
		status       int
		code, reason string
	}{
		{map[string]any{"sonnet": 3}, 400, "malformed_json", `credential field modelMap must be an object of strings: the value of "sonnet" is not a string`},
		{"sonnet=x", 400, "malformed_json", "credential field modelMap must be an object of strings, not a string"},
		{map[string]any{"sonnet": ""}, 422, "key_rejected", `TestCloud modelMap has an empty value for "sonnet"`},
	} {
		body["credential"].(map[string]any)["modelMap"] = tc.modelMap
		r = a.call("admin", "PUT", "/v1/workspaces/ws1/providers/testcloud/keys/k2", body)
		if r.status != tc.status || r.code() != tc.code || r.message() != tc.reason {
			t.Fatalf("modelMap %v: %d %s", tc.modelMap, r.status, r.body)
		}
		if r := a.call("admin", "GET", "/v1/workspaces/ws1/providers/testcloud/keys/k2", nil); r.status != 404 {
			t.Fatalf("a refused write left a key: %d", r.status)
		}
	}
	// Resolve hands out the key's fields (a kind that mints nothing): the
	// map field as an object, no apiKey, no expiry.
	var res map[string]any
	r = a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "testcloud"})
	if r.status != 200 {
		t.Fatalf("resolve: %d %s", r.status, r.body)
	}
	r.decode(t, &res)
	cred, _ := res["credential"].(map[string]any)
	if res["kind"] != "test_cloud" || res["apiKey"] != "" || cred["secretAccessKey"] != secret || cred["region"] != "eu-west-1" || res["expiresAt"] != nil {
		t.Fatalf("resolve answered kind %v, fields %v, expiresAt %v", res["kind"], keysOf(cred), res["expiresAt"])
	}
	if mm, _ := cred["modelMap"].(map[string]any); mm["haiku"] != "anthropic.claude-haiku" {
		t.Fatalf("the map field resolves as %#v", cred["modelMap"])
	}
	// An api_key key says its kind and its one mask.
	key := openaiKey(t)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key})
	var m client.KeyMetadata
	a.call("admin", "GET", "/v1/workspaces/ws1/keys/openai", nil).decode(t, &m)
	if m.Kind != providers.KindAPIKey || m.Masked["apiKey"] != providers.MaskKey(key) || len(m.Fields) != 0 {
		t.Fatalf("api_key metadata: kind %q masked %v fields %v", m.Kind, m.Masked, m.Fields)
	}
}

// TestResolveHandsOutTheMintedCredentialWithItsExpiry: for a provider
// with a Deriver, the resolve answer carries the minted credential's
// fields and expiresAt (RFC 3339), never a field of the key.
func TestResolveHandsOutTheMintedCredentialWithItsExpiry(t *testing.T) {
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	session := remember("session-" + openaiKey(t)[8:40]) // the leak checks look for the minted token too
	p := testCloud()
	p.Derive = func(ctx context.Context, env providers.MintEnv, c providers.Credential) (providers.Derived, error) {
		return providers.Derived{Credential: providers.New(c.Kind(), map[string]string{"accessKeyId": "ASIA-minted", "sessionToken": session + "-" + c.Field("region")}),
			ExpiresAt: expires}, nil
	}
	a := newCloudAPI(t, p)
	id, secret := remember("AKIA"+strings.ToUpper(openaiKey(t)[8:24])), remember("s3cr3t/"+openaiKey(t)[8:48])
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/testcloud/keys/default", map[string]any{"credential": map[string]any{
		"region": "us-east-1", "accessKeyId": id, "secretAccessKey": secret}}); r.status != 201 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "testcloud"})
	var res client.ResolveResponse
	r.decode(t, &res)
	if r.status != 200 || res.Kind != "test_cloud" || res.Credential["sessionToken"] != session+"-us-east-1" || len(res.Credential) != 2 || !res.ExpiresAt.Equal(expires) {
		t.Fatalf("resolve: %d kind %q fields %v expiresAt %v", r.status, res.Kind, keysOf(res.Credential), res.ExpiresAt)
	}
	if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), id) || !strings.Contains(string(r.body), `"expiresAt":"`+expires.UTC().Format(time.RFC3339)+`"`) {
		t.Fatalf("the answer holds a field of the key, or no RFC 3339 expiry: %s", r.body)
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
