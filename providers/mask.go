package providers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// MaskKey returns the preview of a secret shown to admins
// (docs/providers.md): up to 8 characters → "••••••••"; up to 12 → first
// 4 + "..." + last 4; otherwise first 6 + "..." + last 4. Keys are ASCII
// (their format rules say so).
func MaskKey(key string) string {
	switch n := len(key); {
	case n <= 8:
		return "••••••••"
	case n <= 12:
		return key[:4] + "..." + key[n-4:]
	default:
		return key[:6] + "..." + key[n-4:]
	}
}

// Fingerprint is the hex HMAC-SHA256 of the canonical credential under
// pepper: equal credentials give equal fingerprints, and without the
// pepper it reveals nothing of them. An api_key credential's is its key's,
// as keybroker has always computed it.
func Fingerprint(pepper []byte, c Credential) string {
	m := hmac.New(sha256.New, pepper)
	m.Write(c.canonical())
	return hex.EncodeToString(m.Sum(nil))
}
