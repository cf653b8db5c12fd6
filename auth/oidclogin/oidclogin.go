// Package oidclogin is keybroker's side of OpenID Connect sign-in for
// people (the relying party): it starts an authorization-code flow with
// PKCE, state and nonce, and finishes it by exchanging the code and
// verifying the ID token against the issuer's discovery document and JWKS.
// It owns the pending sign-in (sealed, so that any replica can finish what
// another began), the checks of the callback and of the ID token, and the
// identity it yields. Sessions, roles and cookies are not its business.
//
// It uses github.com/coreos/go-oidc/v3 and golang.org/x/oauth2.
package oidclogin

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Errors of Finish. None quotes a code, a token or the pending sign-in.
var (
	// ErrState: the callback's state is not the pending sign-in's (a
	// forged or crossed callback).
	ErrState = errors.New("oidclogin: the sign-in's state does not match")
	// ErrExpired: the pending sign-in is older than MaxPending.
	ErrExpired = errors.New("oidclogin: the sign-in took too long; start again")
	// ErrReplayed: this sign-in was already finished (a replayed callback).
	ErrReplayed = errors.New("oidclogin: this sign-in was already used")
	// ErrRefused: the identity provider refused the sign-in (its error
	// code is in the message, e.g. access_denied).
	ErrRefused = errors.New("oidclogin: the identity provider refused the sign-in")
	// ErrToken: the code exchange failed or the ID token is not valid for
	// this client (signature, issuer, audience, expiry, algorithm, nonce).
	ErrToken = errors.New("oidclogin: the identity provider's answer is not valid")
	// ErrBusy: more sign-ins finished within MaxPending than the replica
	// remembers (a flood): try again shortly.
	ErrBusy = errors.New("oidclogin: too many sign-ins at once; try again shortly")
	// ErrPending: the pending sign-in could not be read (tampered with, or
	// sealed with another key).
	ErrPending = errors.New("oidclogin: the pending sign-in is not valid")
)

// Algorithms are the ID token signature algorithms accepted by default:
// asymmetric only (never "none", never a MAC keyed with something public).
var Algorithms = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.PS256, oidc.ES256, oidc.ES384, oidc.EdDSA}

// Config configures the relying party.
type Config struct {
	// Issuer is the identity provider's issuer URL (discovery is at
	// Issuer + "/.well-known/openid-configuration").
	Issuer string
	// ClientID and ClientSecret are keybroker's client at the provider
	// (ClientSecret "" for a public client).
	ClientID, ClientSecret string
	// RedirectURL is keybroker's callback, as registered at the provider.
	RedirectURL string
	// Scopes to ask for besides "openid". Default: email, profile,
	// groups.
	Scopes []string
	// Algorithms the ID token may be signed with. Default: Algorithms.
	Algorithms []string
	// ClockSkew tolerated on the ID token's times. Default 1 minute; at
	// most 5.
	ClockSkew time.Duration
	// MaxPending bounds how long a sign-in may take. Default 10 minutes.
	MaxPending time.Duration
	// HTTP is the client for discovery, JWKS and the token endpoint.
	// Default: a client with a 10-second timeout.
	HTTP *http.Client
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// RP is a configured relying party. It is safe for concurrent use.
type RP struct {
	cfg      Config
	provider *oidc.Provider
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier

	mu        sync.Mutex
	used      map[string]time.Time // finished states, until they would have expired
	lastPrune time.Time
}

// maxUsed bounds the finished sign-ins remembered (each until its
// MaxPending has passed).
const maxUsed = 100_000

// New reads the provider's discovery document and returns the relying
// party.
func New(ctx context.Context, cfg Config) (*RP, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURL == "" {
		return nil, errors.New("oidclogin: the issuer, the client id and the redirect URL are required")
	}
	if u, err := url.Parse(cfg.RedirectURL); err != nil || (u.Scheme != "https" && !isLoopbackHTTP(u)) || u.Host == "" {
		return nil, errors.New("oidclogin: the redirect URL must be https (or http on loopback)")
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"email", "profile", "groups"}
	}
	if cfg.Algorithms == nil {
		cfg.Algorithms = Algorithms
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(Algorithms, a) {
			return nil, fmt.Errorf("oidclogin: algorithm %q is not accepted (asymmetric ones only: %s)", a, strings.Join(Algorithms, ", "))
		}
	}
	switch {
	case cfg.ClockSkew == 0:
		cfg.ClockSkew = time.Minute
	case cfg.ClockSkew < 0 || cfg.ClockSkew > 5*time.Minute:
		return nil, errors.New("oidclogin: the clock skew must be from 0 to 5 minutes")
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 10 * time.Minute
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx = oidc.ClientContext(ctx, cfg.HTTP)
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidclogin: discovery of %s: %w", cfg.Issuer, err)
	}
	rp := &RP{cfg: cfg, provider: provider, used: map[string]time.Time{}}
	rp.oauth = oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
		Endpoint: provider.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, cfg.Scopes...)}
	// go-oidc checks the signature with the provider's JWKS (fetched and
	// refreshed on an unknown key id), the issuer, the audience and the
	// expiry; the clock is skewed by hand below, as its Now allows.
	rp.verifier = provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, SupportedSigningAlgs: cfg.Algorithms,
		Now: func() time.Time { return cfg.Now().Add(-cfg.ClockSkew) }})
	return rp, nil
}

func isLoopbackHTTP(u *url.URL) bool {
	h := u.Hostname()
	return u.Scheme == "http" && (h == "127.0.0.1" || h == "::1" || h == "localhost")
}

// Pending is a sign-in begun and not finished: what the callback must
// match (state, nonce) and prove (the PKCE verifier). It is secret until
// the sign-in ends; Seal it into a cookie or keep it server-side.
type Pending struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Created  time.Time `json:"t"`
	// Return is where the person goes after signing in (a path of
	// keybroker's own; the caller checks it).
	Return string `json:"r,omitempty"`
}

// Begin starts a sign-in: the URL to send the browser to, and the pending
// sign-in to keep until the callback.
func (rp *RP) Begin(returnTo string) (string, Pending) {
	p := Pending{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Created: rp.cfg.Now().UTC().Round(0), Return: returnTo}
	return rp.oauth.AuthCodeURL(p.State, oidc.Nonce(p.Nonce), oauth2.S256ChallengeOption(p.Verifier)), p
}

// Identity is who signed in: the ID token's issuer and subject, the name
// and email when given, and every claim (for the role mapping).
type Identity struct {
	Issuer, Subject, Name, Email string
	Claims                       map[string]any
	// Expiry is the ID token's.
	Expiry time.Time
	// TokenHash is the SHA-256 of the token's verified claims (the JSON
	// its signature covers): the same for every encoding of the token
	// (base64 tolerates line breaks and ignores a last character's spare
	// bits), so it names the token for a record of uses.
	TokenHash [32]byte
}

// Finish completes the sign-in p with the callback's query: the state must
// match, the sign-in be recent and not finished before, the provider must
// not have answered an error, the code must exchange (with p's PKCE
// verifier) for an ID token that the provider signed for this client and
// that carries p's nonce.
func (rp *RP) Finish(ctx context.Context, p Pending, query url.Values) (Identity, error) {
	now := rp.cfg.Now()
	if p.State == "" || query.Get("state") != p.State {
		return Identity{}, ErrState
	}
	if now.Sub(p.Created) > rp.cfg.MaxPending || p.Created.After(now.Add(time.Minute)) {
		return Identity{}, ErrExpired
	}
	if err := rp.claim(p.State, p.Created.Add(rp.cfg.MaxPending), now); err != nil {
		return Identity{}, err
	}
	if e := query.Get("error"); e != "" {
		return Identity{}, fmt.Errorf("%w: %s", ErrRefused, printable(e, 64))
	}
	raw, err := rp.exchange(ctx, p, query)
	if err != nil {
		return Identity{}, err
	}
	return rp.Verify(ctx, raw, p.Nonce)
}

// exchange trades the callback's code, with p's PKCE verifier, for the
// raw ID token.
func (rp *RP) exchange(ctx context.Context, p Pending, query url.Values) (string, error) {
	code := query.Get("code")
	if code == "" {
		return "", fmt.Errorf("%w: the callback has no code", ErrToken)
	}
	ctx = oidc.ClientContext(ctx, rp.cfg.HTTP)
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			return "", fmt.Errorf("%w: the token endpoint answered %s", ErrToken, printable(re.ErrorCode, 64))
		}
		return "", fmt.Errorf("%w: the code exchange failed", ErrToken)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", fmt.Errorf("%w: no ID token in the answer", ErrToken)
	}
	return raw, nil
}

// Verify checks an ID token issued to this client — its signature with the
// provider's JWKS, its issuer, audience, times and algorithm — and its
// nonce, and reads the identity. nonce "" accepts only a token without one
// (the device authorization grant has none: its token comes straight from
// the token endpoint to the client that asked); Finish always has one.
func (rp *RP) Verify(ctx context.Context, raw, nonce string) (Identity, error) {
	ctx = oidc.ClientContext(ctx, rp.cfg.HTTP)
	idt, err := rp.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s", ErrToken, verifyReason(err))
	}
	// The verifier's clock runs ClockSkew behind, so that a token just
	// issued by a provider whose clock runs ahead passes; one issued
	// beyond the skew in the future is refused.
	if now := rp.cfg.Now(); idt.IssuedAt.After(now.Add(rp.cfg.ClockSkew)) {
		return Identity{}, fmt.Errorf("%w: the ID token was issued in the future", ErrToken)
	}
	if idt.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: the ID token's nonce is not this sign-in's", ErrToken)
	}
	var claims map[string]any
	var payload json.RawMessage
	if err := idt.Claims(&claims); err != nil || idt.Claims(&payload) != nil {
		return Identity{}, fmt.Errorf("%w: its claims are not JSON", ErrToken)
	}
	id := Identity{Issuer: idt.Issuer, Subject: idt.Subject, Claims: claims, Expiry: idt.Expiry, TokenHash: sha256.Sum256(payload)}
	id.Name, _ = claims["name"].(string)
	id.Email, _ = claims["email"].(string)
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("%w: the ID token has no subject", ErrToken)
	}
	return id, nil
}

// verifyReason is the kind of a go-oidc verification error, without the
// token.
func verifyReason(err error) string {
	var expired *oidc.TokenExpiredError
	switch msg := err.Error(); {
	case errors.As(err, &expired):
		return "the ID token has expired"
	case strings.Contains(msg, "audience"):
		return "the ID token is for another client"
	case strings.Contains(msg, "issuer"):
		return "the ID token is from another issuer"
	case strings.Contains(msg, "signing algorithm") || strings.Contains(msg, "signature"):
		return "the ID token's signature or algorithm is not accepted"
	case strings.Contains(msg, "malformed"):
		return "the ID token is malformed"
	}
	return "the ID token did not verify"
}

// claim marks state finished, until expires: ErrReplayed when it was
// already, ErrBusy when the replica remembers as many as it may. Expired
// entries are dropped at most once a minute, or when the set is full.
func (rp *RP) claim(state string, expires, now time.Time) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if _, done := rp.used[state]; done {
		return ErrReplayed
	}
	if now.Sub(rp.lastPrune) > time.Minute || len(rp.used) >= maxUsed {
		for s, exp := range rp.used {
			if now.After(exp) {
				delete(rp.used, s)
			}
		}
		rp.lastPrune = now
	}
	if len(rp.used) >= maxUsed {
		return ErrBusy
	}
	rp.used[state] = expires
	return nil
}

// Seal encrypts p with key (32 bytes: AES-256-GCM) into a cookie-safe
// string; Open reads it back. The key is one every replica holds, so any
// replica can finish a sign-in another began.
func Seal(key []byte, p Pending) (string, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	js, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, js, []byte("keybroker oidc pending v1"))), nil
}

// Open reads a sealed pending sign-in.
func Open(key []byte, sealed string) (Pending, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return Pending{}, err
	}
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < aead.NonceSize() || len(sealed) > 4096 {
		return Pending{}, ErrPending
	}
	js, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte("keybroker oidc pending v1"))
	if err != nil {
		return Pending{}, ErrPending
	}
	var p Pending
	if err := json.Unmarshal(js, &p); err != nil {
		return Pending{}, ErrPending
	}
	return p, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, errors.New("oidclogin: the sealing key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// random is 32 random bytes, base64url.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// printable is s cut to n bytes of printable ASCII (an error code from the
// provider, quoted in an error).
func printable(s string, n int) string {
	out := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			out = append(out, c)
		}
	}
	return string(out)
}

// KeyFrom derives the 32-byte sealing key from a secret every replica
// holds (a signing key of the deployment), for this use only.
func KeyFrom(secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keybroker oidc pending sign-ins\x00"))
	h.Write(secret)
	return h.Sum(nil)
}
