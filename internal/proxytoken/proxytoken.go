// Package proxytoken owns keybroker's per-execution proxy tokens: short-lived
// bearer tokens a resolver token mints for one sandbox (POST
// /v1/proxy-tokens), good for the credential proxy only, for one workspace,
// some providers and optionally some models. They are stateless — a
// payload and its HMAC-SHA256 under a key every replica derives from the
// shared pepper — so minting one writes nothing and any replica verifies
// it. The issuing token's id travels inside: revoking the resolver token
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
	"time"
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
	version        = 1
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

// Signer mints and verifies proxy tokens with one key.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner derives the signing key from the deployment's pepper (the
// fingerprint pepper every replica shares). now may be nil (time.Now).
func NewSigner(pepper []byte, now func() time.Time) (*Signer, error) {
	if len(pepper) < 16 {
		return nil, errors.New("proxy token: the pepper must be at least 16 bytes")
	}
	mac := hmac.New(sha256.New, pepper)
	mac.Write([]byte("keybroker proxy token signing key v1"))
	if now == nil {
		now = time.Now
	}
	return &Signer{key: mac.Sum(nil), now: now}, nil
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
	b := []byte{version}
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
	b = append(b, s.sign(b)...)
	return Prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Verify checks a token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	raw, ok := strings.CutPrefix(token, Prefix)
	if !ok || len(raw) > 4096 {
		return Claims{}, ErrMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < 1+nonceLen+8+macLen {
		return Claims{}, ErrMalformed
	}
	payload, mac := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(mac, s.sign(payload)) {
		return Claims{}, ErrMalformed
	}
	if payload[0] != version {
		return Claims{}, ErrMalformed
	}
	c := Claims{Expires: time.Unix(int64(binary.BigEndian.Uint64(payload[1+nonceLen:1+nonceLen+8])), 0)}
	rest := payload[1+nonceLen+8:]
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

// ID names a token in logs, audit events, rate limits and usage records
// ("ptk_" and 16 hex digits of its SHA-256): never the token itself.
func ID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "ptk_" + hex.EncodeToString(h[:8])
}

func (s *Signer) sign(payload []byte) []byte {
	mac := hmac.New(sha256.New, s.key)
	mac.Write(payload)
	return mac.Sum(nil)[:macLen]
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
