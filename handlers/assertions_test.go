package handlers_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/auth/assertion"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// platformGround is a keybroker that accepts the assertions of one
// platform, registered for ws1 and ws2 and allowed to grant admin, whose
// keys it publishes at a JWKS URL.
type platformGround struct {
	*api
	key *ecdsa.PrivateKey
}

const platformIssuer = "https://platform.example.com"

func newPlatformGround(t *testing.T) *platformGround {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(jwks.Close)
	v, err := assertion.New(assertion.Config{Audience: "keybroker", Registrations: []assertion.Registration{{
		ID: "acme-platform", Issuer: platformIssuer, JWKSURL: jwks.URL, Workspaces: []string{"ws1", "ws2"}, MayGrantAdmin: true}}})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIGround(t, handlers.ModeAll, kbtest.Options{}, func(o *handlers.Options, _ *keyGround) { o.Assertions = v })
	return &platformGround{api: a, key: key}
}

// as signs a fresh assertion for Bob with roles and makes it the bearer
// of the caller "platform".
func (g *platformGround) as(t *testing.T, workspaces map[string]string) string {
	t.Helper()
	raw, err := client.SignAssertion(g.key, "k1", client.AssertionClaims{Issuer: platformIssuer, Audience: "keybroker",
		Subject: "user-42", Name: "Bob Builder", Email: "bob@platform.example", Workspaces: workspaces})
	if err != nil {
		t.Fatal(err)
	}
	g.tokens["platform"] = remember(raw)
	return raw
}

// TestAPlatformActsForItsUserWithinItsRegistration: a platform's backend
// calls the admin API with an assertion it signed for one of its users:
// the user's roles are the assertion's, scope by scope, within what the
// platform is registered for; the trail names the platform and the
// person; an assertion serves once; a person never resolves.
func TestAPlatformActsForItsUserWithinItsRegistration(t *testing.T) {
	g := newPlatformGround(t)
	roles := map[string]string{"ws1": "admin", "ws2": "reader"}

	g.as(t, roles)
	if r := g.call("platform", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != http.StatusCreated {
		t.Fatalf("an admin of ws1 writes its key: %d %s", r.status, r.body)
	}
	g.as(t, roles)
	if r := g.call("platform", "GET", "/v1/workspaces/ws2/keys", nil); r.status != http.StatusOK {
		t.Fatalf("a reader of ws2 lists its keys: %d %s", r.status, r.body)
	}
	g.as(t, roles)
	if r := g.call("platform", "PUT", "/v1/workspaces/ws2/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != http.StatusForbidden {
		t.Fatalf("a reader of ws2 writes its key: %d %s", r.status, r.body)
	}
	// The refusal is in ws2's trail under the person's name and their
	// role there.
	var denied client.AuditPage
	g.call("operator", "GET", "/v1/workspaces/ws2/audit", nil).decode(t, &denied)
	person := "platform:acme-platform/person:" + platformIssuer + "|user-42 (Bob Builder <bob@platform.example>)"
	if len(denied.Events) == 0 || denied.Events[0].Action != "access.denied" || denied.Events[0].Actor != person ||
		!strings.Contains(denied.Events[0].Detail, "role reader") {
		t.Fatalf("the refusal in the trail: %+v", denied.Events)
	}
	g.as(t, roles)
	if r := g.call("platform", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != http.StatusForbidden {
		t.Fatalf("a person resolves: %d %s", r.status, r.body)
	}
	// A scope the platform is not registered for is dropped: with nothing
	// else, the assertion gives no role.
	g.as(t, map[string]string{"ws3": "admin"})
	if r := g.call("platform", "GET", "/v1/workspaces/ws3/keys", nil); r.status != http.StatusForbidden || !strings.Contains(r.message(), "no role") {
		t.Fatalf("a scope outside the registration: %d %s", r.status, r.body)
	}
	// An assertion serves once.
	raw := g.as(t, roles)
	if r := g.call("platform", "GET", "/v1/workspaces/ws1/keys", nil); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	if r := g.call("platform", "GET", "/v1/workspaces/ws1/keys", nil); r.status != http.StatusUnauthorized || r.code() != "invalid_assertion" || !strings.Contains(r.message(), "replayed") {
		t.Fatalf("a replayed assertion: %d %s", r.status, r.body)
	}
	// A tampered one (another user written into the claims) fails its
	// signature; neither refusal quotes the assertion.
	parts := strings.Split(raw, ".")
	g.tokens["platform"] = parts[0] + "." + parts[1][:len(parts[1])-4] + "AAAA." + parts[2]
	if r := g.call("platform", "GET", "/v1/workspaces/ws1/keys", nil); r.status != http.StatusUnauthorized || strings.Contains(string(r.body), parts[2]) {
		t.Fatalf("a tampered assertion: %d %s", r.status, r.body)
	}

	// whoami says who and which role where.
	g.as(t, roles)
	var who client.WhoAmI
	r0 := g.call("platform", "GET", "/v1/whoami", nil)
	r0.decode(t, &who)
	if r0.status != http.StatusOK || who.Person == nil || who.Person.Platform != "acme-platform" || who.Person.Subject != "user-42" ||
		who.ScopedRoles == nil || who.ScopedRoles.Workspaces["ws1"] != "admin" || who.ScopedRoles.Workspaces["ws2"] != "reader" || who.Role != "admin" {
		t.Fatalf("whoami: %d %s", r0.status, r0.body)
	}

	// The trail names the platform and the person.
	g.as(t, roles)
	var page client.AuditPage
	r := g.call("platform", "GET", "/v1/workspaces/ws1/audit", nil)
	r.decode(t, &page)
	want := "platform:acme-platform/person:" + platformIssuer + "|user-42 (Bob Builder <bob@platform.example>)"
	found := false
	for _, ev := range page.Events {
		found = found || (ev.Actor == want && ev.Action == "key.create")
	}
	if r.status != http.StatusOK || !found {
		t.Fatalf("the trail does not name the platform's user as %q: %s", want, r.body)
	}
}
