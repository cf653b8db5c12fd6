package assertion_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/auth/assertion"
)

func TestAssertionGoodEachAlgorithm(t *testing.T) {
	for _, alg := range assertion.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t, alg, nil)
			now := f.clock.Now()
			c := goodClaims(f.iss, now)
			a, err := f.verify(t, sign(t, f.key, c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := assertion.Assertion{
				Platform: "plat", Issuer: f.iss, Subject: "user-42", Name: "Ada Lovelace",
				Email: "ada@example.com", JTI: c["jti"].(string), ExpiresAt: now.Add(2 * time.Minute),
				Workspaces:    map[string]string{"ws1": "admin", "ws2": "reader"},
				Organizations: map[string]string{"acme": "reader"},
			}
			if !reflect.DeepEqual(a, want) {
				t.Fatalf("assertion\n got %+v\nwant %+v", a, want)
			}
			if got := a.Actor(); got != "platform:plat/user-42 (Ada Lovelace <ada@example.com>)" {
				t.Fatalf("actor %q", got)
			}
		})
	}
}

// refuse checks that raw is refused with want and that the error quotes
// neither the token nor its claims.
func refuse(t *testing.T, f *fixture, raw string, want error) {
	t.Helper()
	_, err := f.verify(t, raw)
	if !errors.Is(err, want) {
		t.Fatalf("Verify: got %v, want %v", err, want)
	}
	msg := err.Error()
	for _, part := range append(strings.Split(raw, "."), "user-42", "Ada", "ada@example.com", "jti-") {
		if len(part) > 3 && strings.Contains(msg, part) {
			t.Fatalf("the error %q quotes the token (%q)", msg, part)
		}
	}
}

func TestAssertionRefusesClaims(t *testing.T) {
	cases := []struct {
		name string
		edit func(c map[string]any, now time.Time)
		want error
	}{
		{"expired", func(c map[string]any, now time.Time) {
			c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-31*time.Second).Unix()
		}, assertion.ErrExpired},
		{"too long lived", func(c map[string]any, now time.Time) {
			c["iat"], c["exp"] = now.Add(-2*time.Minute).Unix(), now.Add(3*time.Minute+time.Second).Unix()
		}, assertion.ErrBadClaims},
		{"exp too far", func(c map[string]any, now time.Time) {
			c["iat"], c["exp"] = now.Add(time.Minute).Unix(), now.Add(6*time.Minute).Unix()
		}, assertion.ErrBadClaims},
		{"exp before iat", func(c map[string]any, now time.Time) {
			c["iat"], c["exp"] = now.Unix(), now.Add(-time.Second).Unix()
		}, assertion.ErrBadClaims},
		{"iat in the future beyond skew", func(c map[string]any, now time.Time) {
			c["iat"], c["exp"] = now.Add(31*time.Second).Unix(), now.Add(2*time.Minute).Unix()
		}, assertion.ErrBadClaims},
		{"nbf in the future beyond skew", func(c map[string]any, now time.Time) { c["nbf"] = now.Add(31 * time.Second).Unix() }, assertion.ErrBadClaims},
		{"no exp", func(c map[string]any, _ time.Time) { delete(c, "exp") }, assertion.ErrBadClaims},
		{"no iat", func(c map[string]any, _ time.Time) { delete(c, "iat") }, assertion.ErrBadClaims},
		{"wrong aud", func(c map[string]any, _ time.Time) { c["aud"] = "https://other.test" }, assertion.ErrBadClaims},
		{"no aud", func(c map[string]any, _ time.Time) { delete(c, "aud") }, assertion.ErrBadClaims},
		{"unknown iss", func(c map[string]any, _ time.Time) { c["iss"] = "https://elsewhere.test" }, assertion.ErrUnknownIssuer},
		{"no sub", func(c map[string]any, _ time.Time) { delete(c, "sub") }, assertion.ErrBadClaims},
		{"sub with a control character", func(c map[string]any, _ time.Time) { c["sub"] = "user-42\nforged" }, assertion.ErrBadClaims},
		{"no jti", func(c map[string]any, _ time.Time) { delete(c, "jti") }, assertion.ErrBadClaims},
		{"claims of the wrong type", func(c map[string]any, _ time.Time) { c["sub"] = 42 }, assertion.ErrMalformed},
		{"invalid workspace id", func(c map[string]any, _ time.Time) {
			c["keybroker"] = map[string]any{"workspaces": map[string]string{"WS/1": "reader"}}
		}, assertion.ErrBadClaims},
		{"invalid organization id", func(c map[string]any, _ time.Time) {
			c["keybroker"] = map[string]any{"organizations": map[string]string{"": "reader"}}
		}, assertion.ErrBadClaims},
		{"unknown role", func(c map[string]any, _ time.Time) {
			c["keybroker"] = map[string]any{"workspaces": map[string]string{"ws1": "operator"}}
		}, assertion.ErrBadClaims},
	}
	f := newFixture(t, jose.ES256, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := goodClaims(f.iss, f.clock.Now())
			tc.edit(c, f.clock.Now())
			refuse(t, f, sign(t, f.key, c), tc.want)
		})
	}
	t.Run("within the skew is accepted", func(t *testing.T) {
		now := f.clock.Now()
		c := goodClaims(f.iss, now)
		c["iat"], c["nbf"], c["exp"] = now.Add(25*time.Second).Unix(), now.Add(25*time.Second).Unix(), now.Add(5*time.Minute+25*time.Second).Unix()
		if _, err := f.verify(t, sign(t, f.key, c)); err != nil {
			t.Fatal(err)
		}
		c = goodClaims(f.iss, now)
		c["iat"], c["exp"] = now.Add(-time.Minute).Unix(), now.Add(-25*time.Second).Unix()
		if _, err := f.verify(t, sign(t, f.key, c)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAssertionRefusesAlgNone(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	enc := base64.RawURLEncoding.EncodeToString
	head, _ := json.Marshal(map[string]string{"alg": "none", "kid": "k1", "typ": "JWT"})
	body, _ := json.Marshal(goodClaims(f.iss, f.clock.Now()))
	refuse(t, f, enc(head)+"."+enc(body)+".", assertion.ErrBadSignature)
	// Same with a signature part, and the alg spelt otherwise.
	head, _ = json.Marshal(map[string]string{"alg": "None", "kid": "k1"})
	refuse(t, f, enc(head)+"."+enc(body)+"."+enc([]byte("x")), assertion.ErrBadSignature)
}

func TestAssertionRefusesHS256WithThePublicKeyAsSecret(t *testing.T) {
	f := newFixture(t, jose.RS256, nil)
	der, err := x509.MarshalPKIXPublicKey(f.key.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, s := range [][]byte{secret, der} {
		hs := signingKey{kid: "k1", alg: jose.HS256}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: hs.alg, Key: s}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(goodClaims(f.iss, f.clock.Now()))
		obj, err := sig.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		refuse(t, f, raw, assertion.ErrBadSignature)
	}
	// Hand-made, in case a library would refuse to sign it.
	enc := base64.RawURLEncoding.EncodeToString
	head, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": "k1"})
	body, _ := json.Marshal(goodClaims(f.iss, f.clock.Now()))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(enc(head) + "." + enc(body)))
	refuse(t, f, enc(head)+"."+enc(body)+"."+enc(mac.Sum(nil)), assertion.ErrBadSignature)
}

func TestAssertionRefusesBadSignatureAndAlgorithmMismatch(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	raw := sign(t, f.key, goodClaims(f.iss, f.clock.Now()))
	parts := strings.Split(raw, ".")
	other := sign(t, f.key, goodClaims(f.iss, f.clock.Now()))
	refuse(t, f, parts[0]+"."+strings.Split(other, ".")[1]+"."+parts[2], assertion.ErrBadSignature)
	// A key of another type under the same kid.
	impostor := newKey(t, "k1", jose.EdDSA)
	refuse(t, f, sign(t, impostor, goodClaims(f.iss, f.clock.Now())), assertion.ErrBadSignature)
	// Same kind of key, not the platform's.
	refuse(t, f, sign(t, newKey(t, "k1", jose.ES256), goodClaims(f.iss, f.clock.Now())), assertion.ErrBadSignature)

	// The JWK names its alg (RS256): the same key with PS256 is refused.
	g := newFixture(t, jose.RS256, nil)
	ps := signingKey{kid: "k1", alg: jose.PS256, signer: g.key.signer}
	refuse(t, g, sign(t, ps, goodClaims(g.iss, g.clock.Now())), assertion.ErrBadSignature)
}

func TestAssertionRefusesMalformedAndOversized(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	for _, raw := range []string{"", "abc", "a.b.c", "a.b", strings.Repeat("x", 100)} {
		refuse(t, f, raw, assertion.ErrMalformed)
	}
	c := goodClaims(f.iss, f.clock.Now())
	c["name"] = strings.Repeat("A", 16<<10)
	refuse(t, f, sign(t, f.key, c), assertion.ErrMalformed)
	if n := f.srv.fetches.Load(); n != 0 {
		t.Fatalf("%d JWKS fetches for malformed tokens", n)
	}
	// No kid.
	noKid := signingKey{kid: "", alg: f.key.alg, signer: f.key.signer}
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: noKid.alg, Key: noKid.signer}, nil)
	payload, _ := json.Marshal(goodClaims(f.iss, f.clock.Now()))
	obj, _ := sig.Sign(payload)
	raw, _ := obj.CompactSerialize()
	refuse(t, f, raw, assertion.ErrUnknownKey)
}

func TestAssertionReplay(t *testing.T) {
	f := newFixture(t, jose.EdDSA, nil)
	raw := sign(t, f.key, goodClaims(f.iss, f.clock.Now()))
	if _, err := f.verify(t, raw); err != nil {
		t.Fatal(err)
	}
	refuse(t, f, raw, assertion.ErrReplayed)
	// Another token with the same jti is a replay too.
	c := goodClaims(f.iss, f.clock.Now())
	var first map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	_ = json.Unmarshal(payload, &first)
	c["jti"] = first["jti"]
	refuse(t, f, sign(t, f.key, c), assertion.ErrReplayed)
	// A refused assertion does not burn its jti.
	c = goodClaims(f.iss, f.clock.Now())
	c["aud"] = "other"
	refuse(t, f, sign(t, f.key, c), assertion.ErrBadClaims)
	c["aud"] = audience
	if _, err := f.verify(t, sign(t, f.key, c)); err != nil {
		t.Fatalf("the jti of a refused assertion was remembered: %v", err)
	}
}

func TestAssertionReplayCacheBoundAndExpiry(t *testing.T) {
	k := newKey(t, "k1", jose.EdDSA)
	srv := newJWKSServer(t, k)
	c := newClock()
	iss := srv.URL
	v, err := assertion.New(assertion.Config{
		Audience: audience, Now: c.Now, HTTPClient: srv.Client(),
		Registrations: []assertion.Registration{{ID: "plat", Issuer: iss, JWKSURL: srv.URL, Workspaces: []string{"ws1"}, MayGrantAdmin: true}},
		Bounds:        assertion.Bounds{MaxReplayEntries: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(context.Background(), sign(t, k, goodClaims(iss, c.Now()))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(context.Background(), sign(t, k, goodClaims(iss, c.Now()))); !errors.Is(err, assertion.ErrReplayed) {
		t.Fatalf("a full replay cache: got %v, want ErrReplayed", err)
	}
	// Once they expire (2 min + 30 s skew), room again.
	c.Advance(2*time.Minute + 31*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(context.Background(), sign(t, k, goodClaims(iss, c.Now()))); err != nil {
			t.Fatalf("after expiry: %v", err)
		}
	}
}

func TestAssertionRolesClampedToTheRegistration(t *testing.T) {
	f := newFixture(t, jose.ES256, func(r *assertion.Registration) {
		r.Workspaces, r.Organizations, r.MayGrantAdmin = []string{"ws2"}, nil, false
	})
	c := goodClaims(f.iss, f.clock.Now())
	c["keybroker"] = map[string]any{
		"workspaces":    map[string]string{"ws2": "reader", "ws9": "admin", "ws1": "reader"},
		"organizations": map[string]string{"acme": "admin"},
	}
	a, err := f.verify(t, sign(t, f.key, c))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"ws2": "reader"}; !reflect.DeepEqual(a.Workspaces, want) || a.Organizations != nil {
		t.Fatalf("roles %v %v", a.Workspaces, a.Organizations)
	}
	if want := []string{"organization:acme", "workspace:ws1", "workspace:ws9"}; !reflect.DeepEqual(a.Dropped, want) {
		t.Fatalf("dropped %v, want %v", a.Dropped, want)
	}
	// Admin within the registration, without MayGrantAdmin: refused.
	c = goodClaims(f.iss, f.clock.Now())
	c["keybroker"] = map[string]any{"workspaces": map[string]string{"ws2": "admin"}}
	refuse(t, f, sign(t, f.key, c), assertion.ErrNotAllowed)
	// No roles at all: verified, with none (the caller's roles refuse it).
	c = goodClaims(f.iss, f.clock.Now())
	delete(c, "keybroker")
	a, err = f.verify(t, sign(t, f.key, c))
	if err != nil || a.Workspaces != nil || a.Organizations != nil {
		t.Fatalf("no roles: %+v, %v", a, err)
	}
}

func TestAssertionUnknownKidRefreshesAndAcceptsARotatedKey(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// Cached: no fetch.
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches on a cache hit, want 1", n)
	}
	// The platform rotates to k2 and drops k1.
	f.clock.Advance(31 * time.Second)
	k2 := newKey(t, "k2", jose.ES384)
	f.srv.set(k2)
	if _, err := f.verify(t, sign(t, k2, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := f.srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// k1 is gone with the refresh.
	refuse(t, f, sign(t, f.key, goodClaims(f.iss, f.clock.Now())), assertion.ErrUnknownKey)
	// A kid never published is unknown.
	refuse(t, f, sign(t, newKey(t, "k3", jose.ES256), goodClaims(f.iss, f.clock.Now())), assertion.ErrUnknownKey)
}

func TestAssertionRefreshRateLimitUnderAFloodOfUnknownKids(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	flood := func() {
		for i := 0; i < 200; i++ {
			k := signingKey{kid: fmt.Sprintf("random-%d", i), alg: f.key.alg, signer: f.key.signer}
			refuse(t, f, sign(t, k, goodClaims(f.iss, f.clock.Now())), assertion.ErrUnknownKey)
		}
	}
	flood()
	if n := f.srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after 200 unknown kids within 30 s, want 1", n)
	}
	f.clock.Advance(30 * time.Second)
	flood()
	if n := f.srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after 200 unknown kids in the next 30 s, want 2", n)
	}
	// Good assertions still pass meanwhile.
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
}

func TestAssertionJWKSTTLAndOutage(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the TTL, want 2", n)
	}
	// The endpoint fails: the cached keys serve up to MaxStale (1 h).
	f.srv.setStatus(http.StatusInternalServerError)
	f.clock.Advance(50 * time.Minute)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatalf("stale keys during an outage: %v", err)
	}
	f.clock.Advance(11 * time.Minute)
	refuse(t, f, sign(t, f.key, goodClaims(f.iss, f.clock.Now())), assertion.ErrKeysUnavailable)
	f.srv.setStatus(http.StatusOK)
	f.clock.Advance(30 * time.Second)
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestAssertionJWKSRedirectNotFollowed(t *testing.T) {
	k := newKey(t, "k1", jose.ES256)
	target := newJWKSServer(t, k)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	c := newClock()
	v, err := assertion.New(assertion.Config{
		Audience: audience, Now: c.Now,
		Registrations: []assertion.Registration{{ID: "plat", Issuer: redirect.URL, JWKSURL: redirect.URL, Workspaces: []string{"ws1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := goodClaims(redirect.URL, c.Now())
	delete(cl, "keybroker")
	if _, err := v.Verify(context.Background(), sign(t, k, cl)); !errors.Is(err, assertion.ErrKeysUnavailable) {
		t.Fatalf("got %v, want ErrKeysUnavailable", err)
	}
	if n := target.fetches.Load(); n != 0 {
		t.Fatalf("the redirect was followed (%d fetches)", n)
	}
}

func writeJWKS(t *testing.T, path string, keys ...signingKey) {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestAssertionJWKSFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	k1 := newKey(t, "k1", jose.EdDSA)
	writeJWKS(t, path, k1)
	c := newClock()
	iss := "https://platform.example"
	v, err := assertion.New(assertion.Config{
		Audience: audience, Now: c.Now,
		Registrations: []assertion.Registration{{ID: "plat", Issuer: iss, JWKSFile: path, Workspaces: []string{"ws1", "ws2"}, Organizations: []string{"acme"}, MayGrantAdmin: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, k1, goodClaims(iss, c.Now()))); err != nil {
		t.Fatal(err)
	}
	// Rotation: k2 added, then k1 removed.
	k2 := newKey(t, "k2", jose.ES256)
	writeJWKS(t, path, k1, k2)
	if _, err := v.Verify(ctx, sign(t, k2, goodClaims(iss, c.Now()))); err != nil {
		t.Fatalf("new key of the file: %v", err)
	}
	writeJWKS(t, path, k2)
	c.Advance(5 * time.Second) // FileCheckInterval
	if _, err := v.Verify(ctx, sign(t, k1, goodClaims(iss, c.Now()))); !errors.Is(err, assertion.ErrUnknownKey) {
		t.Fatalf("a key removed from the file: got %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(ctx, sign(t, k2, goodClaims(iss, c.Now()))); err != nil {
		t.Fatal(err)
	}
	// The file vanishes: the keys read serve until MaxStale.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.Advance(5 * time.Second)
	if _, err := v.Verify(ctx, sign(t, k2, goodClaims(iss, c.Now()))); err != nil {
		t.Fatalf("the file gone, within MaxStale: %v", err)
	}
}

func TestAssertionNameAndEmailAreCleaned(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	c := goodClaims(f.iss, f.clock.Now())
	c["name"] = "  Ada\x1b[2J\u202e Lovelace\n"
	c["email"] = "ada@example.com\r\nX-Forged: 1" + strings.Repeat("e", 300)
	a, err := f.verify(t, sign(t, f.key, c))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "Ada[2J Lovelace" {
		t.Fatalf("name %q", a.Name)
	}
	if strings.ContainsAny(a.Email, "\r\n") || len(a.Email) > 254 || !strings.HasPrefix(a.Email, "ada@example.comX-Forged: 1") {
		t.Fatalf("email %q", a.Email)
	}
}

// TestAssertionFetchOutlivesTheCallerThatTriggeredIt: a caller that goes
// away during the first JWKS fetch does not leave the platform without keys.
func TestAssertionFetchOutlivesTheCallerThatTriggeredIt(t *testing.T) {
	f := newFixture(t, jose.ES256, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.v.Verify(ctx, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatalf("Verify with a cancelled context: %v", err)
	}
	if _, err := f.verify(t, sign(t, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// uses is a Uses of the test: a shared record of first uses, or one that
// fails.
type uses struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	calls int
	fail  bool
}

func (u *uses) FirstAssertionUse(_ context.Context, platform, jti string, until time.Time) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls++
	if u.fail {
		return false, errors.New("connection refused")
	}
	if _, ok := u.seen[platform+"/"+jti]; ok {
		return false, nil
	}
	u.seen[platform+"/"+jti] = until
	return true, nil
}

// TestAssertionReplayedToAnotherReplica: two verifiers (two replicas)
// share the record of uses: an assertion verified by one is refused by the
// other; a replay to the same one is refused from memory without asking
// the record; a record that cannot be written refuses the assertion.
func TestAssertionReplayedToAnotherReplica(t *testing.T) {
	k := newKey(t, "k1", jose.ES256)
	srv := newJWKSServer(t, k)
	c := newClock()
	iss := srv.URL + "/platform"
	shared := &uses{seen: map[string]time.Time{}}
	replica := func() *assertion.Verifier {
		v, err := assertion.New(assertion.Config{Audience: audience, Uses: shared, HTTPClient: srv.Client(), Now: c.Now,
			Registrations: []assertion.Registration{{ID: "plat", Issuer: iss, JWKSURL: srv.URL + "/jwks.json",
				Workspaces: []string{"ws1", "ws2"}, Organizations: []string{"acme"}, MayGrantAdmin: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b := replica(), replica()
	claims := goodClaims(iss, c.Now())
	raw := sign(t, k, claims)
	if _, err := a.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if until, ok := shared.seen["plat/"+claims["jti"].(string)]; !ok || until.Before(time.Unix(claims["exp"].(int64), 0)) {
		t.Fatalf("the record of the use: %v %v", until, ok)
	}
	if _, err := b.Verify(context.Background(), raw); !errors.Is(err, assertion.ErrReplayed) || !strings.Contains(err.Error(), "another replica") {
		t.Fatalf("the replay at the other replica: %v", err)
	}
	calls := shared.calls
	if _, err := a.Verify(context.Background(), raw); !errors.Is(err, assertion.ErrReplayed) || shared.calls != calls {
		t.Fatalf("the replay at the same replica: %v (record asked %d times more)", err, shared.calls-calls)
	}
	shared.fail = true
	claims = goodClaims(iss, c.Now())
	if _, err := b.Verify(context.Background(), sign(t, k, claims)); !errors.Is(err, assertion.ErrUsesUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a record that cannot be written: %v", err)
	}
}
