package auth

import (
	"encoding/base64"
	"testing"
)

func TestTokenLenIsThePrefixAndThirtyTwoBytesInBase64URL(t *testing.T) {
	if want := len(tokenPrefix) + base64.RawURLEncoding.EncodedLen(32); tokenLen != want {
		t.Fatalf("tokenLen = %d, want %d", tokenLen, want)
	}
	token, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != tokenLen {
		t.Fatalf("a new token is %d characters, tokenLen %d", len(token), tokenLen)
	}
}
