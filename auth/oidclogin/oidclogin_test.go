package oidclogin_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth/oidclogin"
	"github.com/keybroker/keybroker/internal/fixtures/oidctest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const callback = "http://127.0.0.1:8443/auth/callback"

// clock is a test clock: the real time plus an offset the test moves.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) add(d time.Duration) { c.offset.Add(int64(d)) }
func newRP(t *testing.T, p *oidctest.Provider, c *clock, tune func(*oidclogin.Config)) *oidclogin.RP {
	t.Helper()
	cfg := oidclogin.Config{Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: callback, Now: c.now}
	if tune != nil {
		tune(&cfg)
	}
	rp, err := oidclogin.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// signIn plays user at the provider for the sign-in the RP began, and
// returns the callback's query.
func signIn(t *testing.T, p *oidctest.Provider, user, authURL string) url.Values {
	t.Helper()
	redirect, err := p.Authorize(t.Context(), user, authURL)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(redirect)
	if err != nil || !strings.HasPrefix(redirect, callback) {
		t.Fatalf("the provider sent the browser to %q (%v)", redirect, err)
	}
	return u.Query()
}

// TestSignInWithVaultsOpenIDProvider: the whole flow against a real
// provider — PKCE, state and nonce, the code exchanged, the ID token
// verified with the provider's JWKS — yields the person and their claims,
// and the pending sign-in survives a trip through a sealed cookie.
func TestSignInWithVaultsOpenIDProvider(t *testing.T) {
	p := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{callback}, IDTokenTTL: time.Minute})
	var c clock
	rp := newRP(t, p, &c, nil)
	key := oidclogin.KeyFrom([]byte("a signing key every replica holds"))

	authURL, pending := rp.Begin("/ui/workspaces/ws1")
	u, _ := url.Parse(authURL)
	if q := u.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") != pending.Nonce ||
		q.Get("state") != pending.State || !strings.Contains(q.Get("scope"), "openid") || strings.Contains(authURL, pending.Verifier) {
		t.Fatalf("the authorization URL asks for %v", q)
	}
	sealed, err := oidclogin.Seal(key, pending)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, pending.Verifier) || strings.Contains(sealed, pending.State) {
		t.Fatal("the sealed sign-in shows its secrets")
	}
	back, err := oidclogin.Open(key, sealed)
	if err != nil || back != pending {
		t.Fatalf("the sealed sign-in came back changed (%v)", err)
	}

	wes, _ := p.User("wes")
	id, err := rp.Finish(t.Context(), back, signIn(t, p, "wes", authURL))
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := id.Claims["groups"].([]any)
	if id.Issuer != p.Issuer || id.Subject != wes.EntityID || id.Name != "Wes Admin" || id.Email != "wes@example.com" ||
		!slices.Contains(groups, any("kb-ws-ws1-admin")) || id.Expiry.IsZero() {
		t.Fatalf("identity %+v", id)
	}

	// The same callback again: refused before the provider is asked.
	if _, err := rp.Finish(t.Context(), back, signIn(t, p, "wes", authURL)); !errors.Is(err, oidclogin.ErrReplayed) {
		t.Fatalf("a replayed callback: %v", err)
	}
}

// TestSignInRefusals: what the relying party refuses, each against the
// real provider where it can produce the case, and with a crafted token
// where it cannot (alg none, another issuer).
func TestSignInRefusals(t *testing.T) {
	p := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{callback}, IDTokenTTL: time.Minute,
		PublicRedirectURIs: []string{"http://127.0.0.1/callback"},
		Users:              append(oidctest.DefaultUsers(), oidctest.User{Name: "uma", Email: "uma@example.com", Unassigned: true})})
	var c clock
	rp := newRP(t, p, &c, nil)
	ctx := t.Context()

	// A callback whose state is another sign-in's.
	authURL, _ := rp.Begin("/")
	q := signIn(t, p, "wes", authURL)
	_, other := rp.Begin("/")
	if _, err := rp.Finish(ctx, other, q); !errors.Is(err, oidclogin.ErrState) {
		t.Fatalf("a crossed callback: %v", err)
	}
	// The provider refusing the person (not assigned to the client).
	authURL, pending := rp.Begin("/")
	if _, err := rp.Finish(ctx, pending, signIn(t, p, "uma", authURL)); !errors.Is(err, oidclogin.ErrRefused) || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("a person the provider refuses: %v", err)
	}
	// A PKCE verifier that is not the one the challenge was made from.
	authURL, pending = rp.Begin("/")
	q = signIn(t, p, "wes", authURL)
	tampered := pending
	tampered.Verifier = strings.Repeat("x", 43)
	if _, err := rp.Finish(ctx, tampered, q); !errors.Is(err, oidclogin.ErrToken) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("a wrong PKCE verifier: %v", err)
	}
	// A sign-in that took longer than ten minutes.
	authURL, pending = rp.Begin("/")
	q = signIn(t, p, "wes", authURL)
	c.add(11 * time.Minute)
	if _, err := rp.Finish(ctx, pending, q); !errors.Is(err, oidclogin.ErrExpired) {
		t.Fatalf("a late callback: %v", err)
	}
	c.add(-11 * time.Minute)
	// An ID token that expired (a minute's token, read five minutes on,
	// beyond the minute of skew).
	authURL, pending = rp.Begin("/")
	q = signIn(t, p, "wes", authURL)
	c.add(5 * time.Minute)
	if _, err := rp.Finish(ctx, pending, q); !errors.Is(err, oidclogin.ErrToken) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired ID token: %v", err)
	}
	c.add(-5 * time.Minute)
	// A tampered sealed sign-in, or one sealed with another key.
	key := oidclogin.KeyFrom([]byte("k1"))
	sealed, _ := oidclogin.Seal(key, pending)
	if _, err := oidclogin.Open(oidclogin.KeyFrom([]byte("k2")), sealed); !errors.Is(err, oidclogin.ErrPending) {
		t.Fatalf("another key: %v", err)
	}
	if _, err := oidclogin.Open(key, sealed[:len(sealed)-2]+"AA"); !errors.Is(err, oidclogin.ErrPending) {
		t.Fatalf("a tampered sign-in: %v", err)
	}

	// An ID token the provider issued to another client (its public one):
	// refused for this client's audience.
	pub := newRP(t, p, &c, func(cfg *oidclogin.Config) {
		cfg.ClientID, cfg.ClientSecret, cfg.RedirectURL = p.PublicClientID, "", "http://127.0.0.1/callback"
	})
	authURL, pending = pub.Begin("/")
	redirect, err := p.Authorize(ctx, "wes", authURL)
	if err != nil {
		t.Fatal(err)
	}
	ru, _ := url.Parse(redirect)
	rawToken := idTokenOf(t, pub, pending, ru.Query())
	if _, err := rp.Verify(ctx, rawToken, pending.Nonce); !errors.Is(err, oidclogin.ErrToken) || !strings.Contains(err.Error(), "another client") {
		t.Fatalf("another client's ID token: %v", err)
	}
	// The same token with its signature stripped and alg none; and with
	// another issuer: refused.
	parts := strings.Split(rawToken, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	if _, err := pub.Verify(ctx, none, pending.Nonce); !errors.Is(err, oidclogin.ErrToken) {
		t.Fatalf("alg none: %v", err)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(claims), p.Issuer, "https://evil.example.com", 1)
	foreign := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	if _, err := pub.Verify(ctx, foreign, pending.Nonce); !errors.Is(err, oidclogin.ErrToken) {
		t.Fatalf("another issuer: %v", err)
	}
	// A nonce that is not the sign-in's.
	if _, err := pub.Verify(ctx, rawToken, "another-nonce"); !errors.Is(err, oidclogin.ErrToken) || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("another nonce: %v", err)
	}
	if _, err := pub.Verify(ctx, rawToken, pending.Nonce); err != nil {
		t.Fatalf("the genuine token: %v", err)
	}
	// No error above quoted the token.
	for _, e := range []error{oidclogin.ErrToken} {
		if strings.Contains(e.Error(), parts[2]) {
			t.Fatal("an error quotes the token")
		}
	}
}

// idTokenOf exchanges the code of q at the provider for rp's sign-in and
// returns the raw ID token (via the test hook).
func idTokenOf(t *testing.T, rp *oidclogin.RP, p oidclogin.Pending, q url.Values) string {
	t.Helper()
	raw, err := rp.ExchangeForTest(context.Background(), p, q)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
