package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/auth/assertion"
	"github.com/keybroker/keybroker/client"
)

// TestSignAssertionIsAcceptedByTheVerifier signs with RSA, ECDSA and
// Ed25519 keys and has keybroker's verifier accept each, JWKS served on
// loopback.
func TestSignAssertionIsAcceptedByTheVerifier(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]crypto.Signer{"rsa": rsaKey, "p256": p256, "p384": p384, "ed25519": ed}

	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()

	v, err := assertion.New(assertion.Config{
		Audience:   "https://keybroker.test",
		HTTPClient: srv.Client(),
		Registrations: []assertion.Registration{{
			ID: "acme-ai", Issuer: srv.URL, JWKSURL: srv.URL,
			Workspaces: []string{"ws1", "ws2"}, Organizations: []string{"acme"}, MayGrantAdmin: true,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for kid, key := range keys {
		t.Run(kid, func(t *testing.T) {
			raw, err := client.SignAssertion(key, kid, client.AssertionClaims{
				Issuer: srv.URL, Audience: "https://keybroker.test", Subject: "user-7",
				Name: "Grace Hopper", Email: "grace@example.com",
				Workspaces:    map[string]string{"ws1": "admin", "ws9": "reader"},
				Organizations: map[string]string{"acme": "reader"},
				TTL:           2 * time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			a, err := v.Verify(context.Background(), raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if a.Platform != "acme-ai" || a.Subject != "user-7" || a.Name != "Grace Hopper" || a.Email != "grace@example.com" {
				t.Fatalf("assertion %+v", a)
			}
			if !reflect.DeepEqual(a.Workspaces, map[string]string{"ws1": "admin"}) ||
				!reflect.DeepEqual(a.Organizations, map[string]string{"acme": "reader"}) ||
				!reflect.DeepEqual(a.Dropped, []string{"workspace:ws9"}) {
				t.Fatalf("roles %v %v dropped %v", a.Workspaces, a.Organizations, a.Dropped)
			}
			if d := time.Until(a.ExpiresAt); d <= time.Minute || d > 2*time.Minute {
				t.Fatalf("expires in %s, want about 2 min", d)
			}
			if a.JTI == "" {
				t.Fatal("no jti")
			}
			// Used once.
			if _, err := v.Verify(context.Background(), raw); !errors.Is(err, assertion.ErrReplayed) {
				t.Fatalf("second use: got %v, want ErrReplayed", err)
			}
		})
	}
	// Two assertions of the same claims differ by their jti.
	c := client.AssertionClaims{Issuer: srv.URL, Audience: "https://keybroker.test", Subject: "u"}
	a1, _ := client.SignAssertion(ed, "ed25519", c)
	a2, _ := client.SignAssertion(ed, "ed25519", c)
	if a1 == a2 {
		t.Fatal("two assertions are identical")
	}
}

func TestSignAssertionRefusesBadInput(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := client.AssertionClaims{Issuer: "https://p.example", Audience: "keybroker", Subject: "u"}
	cases := []struct {
		name string
		key  crypto.Signer
		kid  string
		edit func(*client.AssertionClaims)
		want string
	}{
		{"no key", nil, "k", nil, "no key"},
		{"P-521", p521, "k", nil, "P-256 or P-384"},
		{"RSA 1024", small, "k", nil, "2048 bits"},
		{"no kid", ed, "", nil, "kid is required"},
		{"no subject", ed, "k", func(c *client.AssertionClaims) { c.Subject = "" }, "subject are required"},
		{"no audience", ed, "k", func(c *client.AssertionClaims) { c.Audience = "" }, "audience"},
		{"TTL over 5 min", ed, "k", func(c *client.AssertionClaims) { c.TTL = 6 * time.Minute }, "TTL"},
		{"negative TTL", ed, "k", func(c *client.AssertionClaims) { c.TTL = -time.Second }, "TTL"},
		{"bad role", ed, "k", func(c *client.AssertionClaims) { c.Workspaces = map[string]string{"ws1": "owner"} }, "admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			if tc.edit != nil {
				tc.edit(&c)
			}
			_, err := client.SignAssertion(tc.key, tc.kid, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
