package providers_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/providers"
)

// TestAdminProvidersAreCompleteAndApart: each admin provider has a
// secret field, a dev credential that passes its rule, previews and
// prints that hide the admin key, no proxy endpoint; it is not among the
// providers keys are resolved for, and the provider it manages names it.
func TestAdminProvidersAreCompleteAndApart(t *testing.T) {
	reg := providers.DefaultRegistry()
	admins := reg.Admins()
	if len(admins) != 2 {
		t.Fatalf("admin providers %d", len(admins))
	}
	for _, p := range admins {
		if slices.ContainsFunc(reg.All(), func(q providers.Provider) bool { return q.ID == p.ID }) {
			t.Fatalf("%s is among the resolved providers", p.ID)
		}
		if _, ok := reg.Lookup(p.ID); !ok || !p.IsAdmin() || len(p.Proxy.Endpoints) != 0 {
			t.Fatalf("%s: lookup, admin, proxy endpoints %v", p.ID, p.Proxy.Endpoints)
		}
		managed, ok := reg.Lookup(p.AdminOf)
		if !ok || managed.KeyAdmin == nil || managed.KeyAdmin.Provider != p.ID || managed.KeyAdmin.Revoke == nil {
			t.Fatalf("%s manages %s, which does not name it", p.ID, p.AdminOf)
		}
		if err := p.Validate(p.Dev); err != nil {
			t.Fatalf("%s dev credential: %v", p.ID, err)
		}
		secret := p.Dev.Field(providers.FieldAdminKey)
		if pv := p.Credential.Preview(p.Dev); pv == "" || strings.Contains(pv, secret) {
			t.Fatalf("%s preview %q", p.ID, pv)
		}
		if out := fmt.Sprintf("%v %+v %#v %s", p.Dev, p.Dev, p.Dev, p.Dev); strings.Contains(out, secret) {
			t.Fatalf("%s printed its admin key", p.ID)
		}
		req, _ := http.NewRequest(http.MethodGet, "https://example.invalid/", nil)
		if err := p.Authorize(req, p.Dev); err != nil || !strings.Contains(req.Header.Get("Authorization")+req.Header.Get("X-Api-Key"), secret) {
			t.Fatalf("%s authorize: %v", p.ID, err)
		}
	}
}

// TestOpenAIAdminAPIAgainstTheStandIn: create returns a key that works,
// find finds it by name, revoke deletes it (and says so the second time);
// an unknown admin key and a project key are refused as OpenAI refuses
// them.
func TestOpenAIAdminAPIAgainstTheStandIn(t *testing.T) {
	ctx := context.Background()
	stub := cloudstub.NewOpenAI(t)
	const adminKey = "sk-admin-test-0123456789abcdef"
	stub.AddAdminKey(adminKey, "org", "proj_a")
	reg := providers.DefaultRegistry()
	openai, _ := reg.Lookup("openai")
	ka := openai.KeyAdmin
	env := providers.AdminEnv{HTTP: http.DefaultClient, BaseURL: stub.URL}
	admin := providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: adminKey, providers.FieldProjectID: "proj_a"})
	ck, err := ka.Create(ctx, env, admin, "keybroker-test")
	if err != nil || ck.ID == "" || !stub.Accepts(ck.Credential.APIKey()) {
		t.Fatalf("create: %+v %v", ck.ID, err)
	}
	if ids, err := ka.Find(ctx, env, admin, "keybroker-test"); err != nil || len(ids) != 1 || ids[0] != ck.ID {
		t.Fatalf("find: %v %v", ids, err)
	}
	if rv, err := ka.Revoke(ctx, env, admin, ck.ID); err != nil || rv.Action != "deleted" || rv.AlreadyGone {
		t.Fatalf("revoke: %+v %v", rv, err)
	}
	if stub.Accepts(ck.Credential.APIKey()) {
		t.Fatal("the deleted account's key still works")
	}
	if rv, err := ka.Revoke(ctx, env, admin, ck.ID); err != nil || !rv.AlreadyGone {
		t.Fatalf("revoke again: %+v %v", rv, err)
	}
	const projectKey = "sk-proj-a-project-key-0123456789"
	stub.AddServiceAccount("proj_a", "app", projectKey)
	for name, key := range map[string]string{"unknown admin key": "sk-admin-unknown-0123456789", "a project key": projectKey} {
		bad := providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: key, providers.FieldProjectID: "proj_a"})
		_, err := ka.Create(ctx, env, bad, "x")
		var ae *providers.AdminError
		if !errors.As(err, &ae) || !ae.Refused() || strings.Contains(err.Error(), key) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Another organization's project.
	other := providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: adminKey, providers.FieldProjectID: "proj_other"})
	if _, err := ka.Create(ctx, env, other, "x"); err == nil {
		t.Fatal("created a service account in a project of another organization")
	}
}
