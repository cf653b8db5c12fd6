// Package proxytoken owns keybroker's per-execution proxy tokens: short-lived
// bearer tokens a resolver token mints for one sandbox (POST
// /v1/proxy-tokens), good for the credential proxy only, for one workspace,
// some providers and optionally some models. They are stateless — a
// payload and its HMAC-SHA256 under the deployment's proxy-token signing
// key, named in the token by its key id so that the key can be rotated with
// overlap (package keyring) — so minting one writes nothing and any replica
// holding the key verifies it. Only the replicas that mint and check proxy
// tokens (modes resolver, proxy, all) hold that key: an admin replica, or
// anyone holding only the fingerprint pepper, cannot forge one. The issuing token's id travels inside: revoking the resolver token
// ends every proxy token it minted (the caller checks it).
package proxytoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// Prefix starts every proxy token; resolver and admin tokens start with
// "kbt_".
const Prefix = "kbp_"

// MaxTTL is the longest a proxy token lives.
const MaxTTL = time.Hour

// Limits of what a token carries.
const (
	MaxProviders   = 16
	MaxModels      = 32
	maxFieldLength = 128
	macLen         = 16
	nonceLen       = 8
	version        = 2
)

// Claims are what a proxy token grants.
type Claims struct {
	// Issuer is the id of the resolver token that minted it.
	Issuer string
	// Workspace is the one workspace whose keys it may use.
	Workspace string
	// Providers it may call (at least one).
	Providers []string
	// Models, when not empty, are the only models it may call.
	Models []string
	// Expires is when it stops working.
	Expires time.Time
}

// Allows says whether the claims cover a call to provider for model
// (model "" when the call names none: refused when models are limited).
func (c Claims) Allows(provider, model string) bool {
	if !slices.Contains(c.Providers, provider) {
		return false
	}
	return len(c.Models) == 0 || slices.Contains(c.Models, model)
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("proxy token: malformed or not signed by this deployment")
	ErrExpired   = errors.New("proxy token: expired")
)

// Signer mints and verifies proxy tokens with a ring of keys: the first
// signs, every one verifies.
type Signer struct {
	ring *keyring.Ring
	now  func() time.Time
}

// NewRingSigner signs with ring's current key (its subkey for proxy
// tokens) and verifies with any of its keys. now may be nil (time.Now).
func NewRingSigner(ring *keyring.Ring, now func() time.Time) (*Signer, error) {
	if ring.Empty() {
		return nil, errors.New("proxy token: no signing key")
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{ring: ring.Derive("proxy tokens"), now: now}, nil
}

// NewSigner is a signer of one key derived from secret (16 bytes at
// least), named "0": tests and single-replica set-ups.
func NewSigner(secret []byte, now func() time.Time) (*Signer, error) {
	if len(secret) < 16 {
		return nil, errors.New("proxy token: the secret must be at least 16 bytes")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("keybroker proxy token signing key v1"))
	ring, err := keyring.New("0", mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return NewRingSigner(ring, now)
}

// Mint returns a token for c; c.Expires must be in the future and within
// MaxTTL.
func (s *Signer) Mint(c Claims) (string, error) {
	now := s.now()
	switch {
	case !c.Expires.After(now):
		return "", errors.New("proxy token: the expiry must be in the future")
	case c.Expires.Sub(now) > MaxTTL+time.Second:
		return "", fmt.Errorf("proxy token: a proxy token lives %v at most", MaxTTL)
	case c.Issuer == "" || c.Workspace == "":
		return "", errors.New("proxy token: an issuer and a workspace are required")
	case len(c.Providers) == 0 || len(c.Providers) > MaxProviders:
		return "", fmt.Errorf("proxy token: 1 to %d providers", MaxProviders)
	case len(c.Models) > MaxModels:
		return "", fmt.Errorf("proxy token: at most %d models", MaxModels)
	}
	// A random nonce makes every token its own, even of the same claims in
	// the same second: each sandbox gets its own id, rate and records.
	kid := s.ring.CurrentID()
	b := append([]byte{version, byte(len(kid))}, kid...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("proxy token: %w", err)
	}
	b = append(b, nonce...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires.Unix()))
	var err error
	for _, f := range []string{c.Issuer, c.Workspace} {
		if b, err = appendField(b, f); err != nil {
			return "", err
		}
	}
	for _, list := range [][]string{c.Providers, c.Models} {
		b = append(b, byte(len(list)))
		for _, f := range list {
			if b, err = appendField(b, f); err != nil {
				return "", err
			}
		}
	}
	tag, err := s.ring.MAC(kid, b)
	if err != nil {
		return "", fmt.Errorf("proxy token: %w", err)
	}
	b = append(b, tag[:macLen]...)
	return Prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Verify checks a token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	raw, ok := strings.CutPrefix(token, Prefix)
	if !ok || len(raw) > 4096 {
		return Claims{}, ErrMalformed
	}
	// Strict: a token has one spelling only, so that its id (a hash of the
	// token) names it once — in rate limits, bounds, records and
	// revocations alike.
	b, err := base64.RawURLEncoding.Strict().DecodeString(raw)
	if err != nil || len(b) < 2+nonceLen+8+macLen || b[0] != version || len(b) < 2+int(b[1])+nonceLen+8+macLen {
		return Claims{}, ErrMalformed
	}
	payload, mac := b[:len(b)-macLen], b[len(b)-macLen:]
	kid := string(payload[2 : 2+int(payload[1])])
	if s.ring.Verify(kid, payload, mac) != nil {
		return Claims{}, ErrMalformed
	}
	body := payload[2+len(kid):]
	c := Claims{Expires: time.Unix(int64(binary.BigEndian.Uint64(body[nonceLen:nonceLen+8])), 0)}
	rest := body[nonceLen+8:]
	if c.Issuer, rest, ok = readField(rest); !ok {
		return Claims{}, ErrMalformed
	}
	if c.Workspace, rest, ok = readField(rest); !ok {
		return Claims{}, ErrMalformed
	}
	for _, list := range []*[]string{&c.Providers, &c.Models} {
		if len(rest) == 0 {
			return Claims{}, ErrMalformed
		}
		n := int(rest[0])
		rest = rest[1:]
		for range n {
			var f string
			if f, rest, ok = readField(rest); !ok {
				return Claims{}, ErrMalformed
			}
			*list = append(*list, f)
		}
	}
	if len(rest) != 0 || len(c.Providers) == 0 {
		return Claims{}, ErrMalformed
	}
	if !s.now().Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// ValidID says whether id has ID's form.
func ValidID(id string) bool {
	rest, ok := strings.CutPrefix(id, "ptk_")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

// ID names a token in logs, audit events, rate limits and usage records
// ("ptk_" and 16 hex digits of its SHA-256): never the token itself.
func ID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "ptk_" + hex.EncodeToString(h[:8])
}

func appendField(b []byte, f string) ([]byte, error) {
	if len(f) == 0 || len(f) > maxFieldLength {
		return nil, fmt.Errorf("proxy token: a field of %d bytes (1 to %d)", len(f), maxFieldLength)
	}
	return append(append(b, byte(len(f))), f...), nil
}

func readField(b []byte) (string, []byte, bool) {
	if len(b) == 0 || int(b[0]) == 0 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	return string(b[1 : 1+int(b[0])]), b[1+int(b[0]):], true
}

// Revocations are the proxy tokens ended before their expiry, by id, each
// kept until it would have expired anyway (so the set stays small: at most
// the tokens of the last MaxTTL). Safe for concurrent use.
type Revocations struct {
	mu  sync.RWMutex
	ids map[string]time.Time
	now func() time.Time
}

// NewRevocations returns an empty set; now may be nil (time.Now).
func NewRevocations(now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{ids: make(map[string]time.Time), now: now}
}

// Add records that token id (ID's form) is revoked until expires.
func (r *Revocations) Add(id string, expires time.Time) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, exp := range r.ids {
		if !now.Before(exp) {
			delete(r.ids, k)
		}
	}
	if now.Before(expires) {
		r.ids[id] = expires
	}
}

// AddAll records many revocations at once (a load), sweeping the expired
// ones once rather than at every addition.
func (r *Revocations) AddAll(ids map[string]time.Time) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, exp := range r.ids {
		if !now.Before(exp) {
			delete(r.ids, k)
		}
	}
	for id, exp := range ids {
		if now.Before(exp) {
			r.ids[id] = exp
		}
	}
}

// Revoked says whether token id is revoked.
func (r *Revocations) Revoked(id string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	_, ok := r.ids[id]
	r.mu.RUnlock()
	return ok
}
