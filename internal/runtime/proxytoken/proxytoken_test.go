package proxytoken_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

var pepper = []byte("proxy-token-test-pepper-0123456789")

func signer(t *testing.T, now *time.Time) *proxytoken.Signer {
	t.Helper()
	s, err := proxytoken.NewSigner(pepper, func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestATokenCarriesItsClaimsAndExpires(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := signer(t, &now)
	want := proxytoken.Claims{Issuer: "tok_0123456789abcdef", Workspace: "ws1", Providers: []string{"openai", "anthropic"},
		Models: []string{"gpt-4o"}, Expires: now.Add(10 * time.Minute)}
	tok, err := s.Mint(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, proxytoken.Prefix) {
		t.Fatalf("token %q lacks the prefix", tok[:8])
	}
	got, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != want.Issuer || got.Workspace != want.Workspace || strings.Join(got.Providers, ",") != "openai,anthropic" ||
		strings.Join(got.Models, ",") != "gpt-4o" || !got.Expires.Equal(want.Expires) {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	if !got.Allows("openai", "gpt-4o") || got.Allows("openai", "gpt-4.1") || got.Allows("openai", "") || got.Allows("google", "gpt-4o") {
		t.Error("Allows does not follow the claims")
	}
	again, err := s.Mint(want)
	if err != nil {
		t.Fatal(err)
	}
	if again == tok || proxytoken.ID(again) == proxytoken.ID(tok) {
		t.Fatal("two tokens of the same claims in the same second are the same token")
	}
	now = now.Add(10 * time.Minute)
	if _, err := s.Verify(tok); !errors.Is(err, proxytoken.ErrExpired) {
		t.Fatalf("at its expiry: %v, want ErrExpired", err)
	}
}

func TestForgedTamperedAndForeignTokensAreRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := signer(t, &now)
	tok, err := s.Mint(proxytoken.Claims{Issuer: "tok_a", Workspace: "ws1", Providers: []string{"openai"}, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := proxytoken.NewSigner([]byte("another-deployment-pepper-xyz!!"), func() time.Time { return now })
	foreign, _ := other.Mint(proxytoken.Claims{Issuer: "tok_a", Workspace: "ws1", Providers: []string{"openai"}, Expires: now.Add(time.Minute)})
	flipped := []byte(tok)
	flipped[10] ^= 1
	for name, bad := range map[string]string{
		"another deployment's": foreign, "one character changed": string(flipped), "truncated": tok[:len(tok)-3],
		"no prefix": strings.TrimPrefix(tok, proxytoken.Prefix), "empty": "", "resolver token": "kbt_" + tok[4:], "huge": proxytoken.Prefix + strings.Repeat("A", 5000),
	} {
		if _, err := s.Verify(bad); !errors.Is(err, proxytoken.ErrMalformed) {
			t.Errorf("%s token: %v, want ErrMalformed", name, err)
		}
	}
}

func TestMintRefusesWhatItMustNotGrant(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := signer(t, &now)
	ok := proxytoken.Claims{Issuer: "tok_a", Workspace: "ws1", Providers: []string{"openai"}, Expires: now.Add(time.Minute)}
	for name, edit := range map[string]func(*proxytoken.Claims){
		"past expiry":     func(c *proxytoken.Claims) { c.Expires = now.Add(-time.Second) },
		"over an hour":    func(c *proxytoken.Claims) { c.Expires = now.Add(61 * time.Minute) },
		"no provider":     func(c *proxytoken.Claims) { c.Providers = nil },
		"no workspace":    func(c *proxytoken.Claims) { c.Workspace = "" },
		"no issuer":       func(c *proxytoken.Claims) { c.Issuer = "" },
		"too many models": func(c *proxytoken.Claims) { c.Models = make([]string, 33) },
		"a long model":    func(c *proxytoken.Claims) { c.Models = []string{strings.Repeat("m", 129)} },
	} {
		c := ok
		edit(&c)
		if _, err := s.Mint(c); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
	if _, err := s.Mint(ok); err != nil {
		t.Fatal(err)
	}
	if _, err := proxytoken.NewSigner([]byte("short"), nil); err == nil {
		t.Error("a short pepper was accepted")
	}
}

func TestIDNamesATokenWithoutShowingIt(t *testing.T) {
	id := proxytoken.ID("kbp_secretsecretsecret")
	if !strings.HasPrefix(id, "ptk_") || len(id) != 20 || strings.Contains(id, "secret") {
		t.Fatalf("ID %q", id)
	}
	if proxytoken.ID("kbp_other") == id {
		t.Fatal("two tokens share an id")
	}
}

func FuzzVerifyNeverPanics(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s, _ := proxytoken.NewSigner(pepper, func() time.Time { return now })
	tok, _ := s.Mint(proxytoken.Claims{Issuer: "tok_a", Workspace: "ws1", Providers: []string{"openai"}, Models: []string{"m"}, Expires: now.Add(time.Minute)})
	f.Add(tok)
	f.Add("kbp_")
	f.Fuzz(func(t *testing.T, token string) {
		if c, err := s.Verify(token); err == nil && (c.Workspace == "" || len(c.Providers) == 0) {
			t.Fatalf("verified claims without a workspace or provider: %+v", c)
		}
	})
}

func TestRotatedSigningKeysOverlapAndThePepperForgesNothing(t *testing.T) {
	k1 := "k1:" + strings.Repeat("1", 40)
	k2 := "k2:" + strings.Repeat("2", 40)
	ring := func(s string) *proxytoken.Signer {
		t.Helper()
		r, err := keyring.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := proxytoken.NewRingSigner(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sg
	}
	claims := proxytoken.Claims{Issuer: "tok_0123456789abcdef", Workspace: "ws1", Providers: []string{"openai"}, Expires: time.Now().Add(time.Minute)}
	old, err := ring(k1).Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring(k2 + "," + k1).Verify(old); err != nil {
		t.Fatalf("a token of the old key is refused during the overlap: %v", err)
	}
	if _, err := ring(k2).Verify(old); !errors.Is(err, proxytoken.ErrMalformed) {
		t.Fatalf("a token of a dropped key verified: %v", err)
	}
	// Whoever holds only the fingerprint pepper (every replica, the admin
	// pods too) signs with another key: refused.
	forger, _ := proxytoken.NewSigner([]byte("the-fingerprint-pepper-0123"), nil)
	forged, _ := forger.Mint(claims)
	if _, err := ring(k1).Verify(forged); !errors.Is(err, proxytoken.ErrMalformed) {
		t.Fatalf("a token signed with the pepper verified: %v", err)
	}
}

// A token has one spelling: another encoding of the same bytes (the last
// character's unused bits set) would have another id, and so escape its
// revocation, its rate and its bound.
func TestATokenHasOneSpelling(t *testing.T) {
	now := time.Now()
	s := signer(t, &now)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	respelled := 0
	// Workspaces of three lengths: one of them leaves unused bits in the
	// last character.
	for _, ws := range []string{"ws1", "ws12", "ws123"} {
		tok, err := s.Mint(proxytoken.Claims{Issuer: "tok_0123456789abcdef", Workspace: ws, Providers: []string{"openai"}, Expires: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(tok); err != nil {
			t.Fatalf("the token itself: %v", err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, proxytoken.Prefix))
		for i := range 64 {
			other := tok[:len(tok)-1] + string(alphabet[i])
			if other == tok {
				continue
			}
			// Only the spellings a lenient decoder reads as the same bytes.
			if b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(other, proxytoken.Prefix)); err != nil || !bytes.Equal(b, raw) {
				continue
			}
			respelled++
			if _, err := s.Verify(other); err == nil {
				t.Fatalf("another spelling of one token verifies (%s workspace)", ws)
			}
		}
	}
	if respelled == 0 {
		t.Fatal("no token had another spelling to try: the test proves nothing")
	}
}
