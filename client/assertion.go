package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionClaims are what a platform asserts when it calls keybroker for
// one of its users (see docs/platforms.md).
type AssertionClaims struct {
	// Issuer is the platform's registered issuer. Required.
	Issuer string
	// Audience is keybroker's configured audience. Required.
	Audience string
	// Subject is the platform's id of the user. Required.
	Subject string
	// Name and Email name the user in keybroker's audit trail. Optional.
	Name, Email string
	// Workspaces and Organizations map ids to "admin" or "reader".
	Workspaces, Organizations map[string]string
	// TTL is the assertion's lifetime: at most 5 minutes. Default 1
	// minute.
	TTL time.Duration
}

// MaxAssertionTTL is the longest lifetime keybroker accepts.
const MaxAssertionTTL = 5 * time.Minute

// SignAssertion signs a, for a platform's backend to call keybroker for one
// of its users: a compact JWT with a random jti, iat now and exp now + TTL,
// whose header names kid (a key of the platform's registered JWKS). key may
// be any crypto.Signer (e.g. of a KMS or an HSM): RSA of at least 2048 bits
// signs RS256, ECDSA P-256 ES256, P-384 ES384, Ed25519 EdDSA.
//
// Send the result as the bearer token of one call; it is used once.
func SignAssertion(key crypto.Signer, kid string, a AssertionClaims) (string, error) {
	if key == nil {
		return "", errors.New("sign assertion: no key")
	}
	alg, err := assertionAlgorithm(key.Public())
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	switch {
	case kid == "":
		return "", errors.New("sign assertion: the kid is required")
	case a.Issuer == "" || a.Audience == "" || a.Subject == "":
		return "", errors.New("sign assertion: issuer, audience and subject are required")
	case a.TTL < 0 || a.TTL > MaxAssertionTTL:
		return "", fmt.Errorf("sign assertion: the TTL must be within (0, %s]", MaxAssertionTTL)
	}
	for _, roles := range []map[string]string{a.Workspaces, a.Organizations} {
		for _, r := range roles {
			if r != "admin" && r != "reader" {
				return "", errors.New(`sign assertion: a role must be "admin" or "reader"`)
			}
		}
	}
	ttl := a.TTL
	if ttl == 0 {
		ttl = time.Minute
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: cryptosigner.Opaque(key)},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid),
	)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	now := time.Now()
	claims := struct {
		jwt.Claims
		Name  string      `json:"name,omitempty"`
		Email string      `json:"email,omitempty"`
		Roles *roleClaims `json:"keybroker,omitempty"`
	}{
		Claims: jwt.Claims{
			Issuer:   a.Issuer,
			Audience: jwt.Audience{a.Audience},
			Subject:  a.Subject,
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(ttl)),
			ID:       base64.RawURLEncoding.EncodeToString(id[:]),
		},
		Name:  a.Name,
		Email: a.Email,
	}
	if len(a.Workspaces) > 0 || len(a.Organizations) > 0 {
		claims.Roles = &roleClaims{Workspaces: a.Workspaces, Organizations: a.Organizations}
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return raw, nil
}

// roleClaims is the value of the claim "keybroker", where keybroker reads
// the roles.
type roleClaims struct {
	Workspaces    map[string]string `json:"workspaces,omitempty"`
	Organizations map[string]string `json:"organizations,omitempty"`
}

func assertionAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", errors.New("an RSA key must have at least 2048 bits")
		}
		return jose.RS256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", errors.New("an ECDSA key must be on P-256 or P-384")
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T (RSA, ECDSA P-256 or P-384, Ed25519)", pub)
}
