package rolemap_test

import (
	"context"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keybroker/keybroker/auth/rolemap"
	"github.com/keybroker/keybroker/internal/fixtures/oidctest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestGrantsOfVaultsIDTokens maps the claims of ID tokens that a real
// provider (Vault's identity OIDC provider) issued and go-oidc verified:
// the groups claim as Vault writes it (a list of names, null for a person
// in no group), and its email, which no email_verified vouches for.
func TestGrantsOfVaultsIDTokens(t *testing.T) {
	const callback = "https://keybroker.example/auth/callback"
	m := mustParse(t, `
rules:
  - group: kb-operators
    operator: true
  - group: "kb-ws-{ws}-admin"
    admin: {workspace: "{ws}"}
  - group: "kb-ws-{ws}-reader"
    reader: {workspace: "{ws}"}
  - claim: email
    value: ann@example.com
    admin: {organization: acme}
  - claim: email
    value: ann@example.com
    unverifiedEmail: true
    reader: {organization: acme}
`)
	p := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{callback}, Users: []oidctest.User{
		{Name: "ann", Email: "ann@example.com", Groups: []string{"kb-operators", "kb-ws-ws1-admin", "kb-ws-ws1-reader", "kb-ws-ws2-reader", "kb-ws-WS3-admin", "staff"}},
		{Name: "zed"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, p.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: provider.Endpoint(), RedirectURL: callback, Scopes: p.Scopes}
	verifier := provider.Verifier(&oidc.Config{ClientID: p.ClientID})
	claimsOf := func(user string) map[string]any {
		t.Helper()
		pkce := oauth2.GenerateVerifier()
		redirect, err := p.Authorize(ctx, user, cfg.AuthCodeURL("state-"+user, oauth2.S256ChallengeOption(pkce)))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(redirect)
		if err != nil || u.Query().Get("code") == "" {
			t.Fatalf("sign-in of %s: no code (%v)", user, err)
		}
		tok, err := cfg.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		return claims
	}

	op := src(0, "group kb-operators")
	want := rolemap.Grants{
		Operator: &op,
		Workspaces: map[string]rolemap.Grant{
			"ws1": admin(1, "group kb-ws-ws1-admin"),
			"ws2": reader(2, "group kb-ws-ws2-reader"),
		},
		Organizations: map[string]rolemap.Grant{"acme": reader(4, "claim email = ann@example.com")},
	}
	if g := m.Grants(claimsOf("ann")); !reflect.DeepEqual(g, want) {
		t.Fatalf("ann's grants:\n%s\nwant\n%s", show(g), show(want))
	}
	zed := claimsOf("zed")
	if v, ok := zed["groups"]; !ok || v != nil {
		t.Fatalf("Vault's groups claim of a person in no group: %#v", v)
	}
	if g := m.Grants(zed); !g.Empty() || !reflect.DeepEqual(g, rolemap.Grants{}) {
		t.Fatalf("zed's grants: %s", show(g))
	}
}
