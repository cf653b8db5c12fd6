package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// MaskKey returns the preview of a key shown to admins (DESIGN.md): up to
// 8 characters → "••••••••"; up to 12 → first 4 + "..." + last 4;
// otherwise first 6 + "..." + last 4. Keys are ASCII (see ValidateKey).
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

// Fingerprint is the hex HMAC-SHA256 of key under pepper: equal keys give
// equal fingerprints, and without the pepper it reveals nothing of the key.
func Fingerprint(pepper []byte, key string) string {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}
