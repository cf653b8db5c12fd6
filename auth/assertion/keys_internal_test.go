package assertion

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestAssertionParseJWKSKeepsOnlyUsablePublicSigningKeys(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p256.PublicKey, KeyID: "ec", Use: "sig"},
		{Key: edPriv, KeyID: "ed-private"}, // published by mistake: its public part serves
		{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"},
		{Key: &weak.PublicKey, KeyID: "rsa-1024"},
		{Key: &p521.PublicKey, KeyID: "p521"},
		{Key: &p256.PublicKey, KeyID: "enc", Use: "enc"},
		{Key: &p256.PublicKey},
		{Key: &p256.PublicKey, KeyID: "twice"},
		{Key: edPub, KeyID: "twice"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	// A key of a type go-jose does not know is skipped too.
	var raw map[string][]json.RawMessage
	_ = json.Unmarshal(b, &raw)
	raw["keys"] = append(raw["keys"], json.RawMessage(`{"kty":"XYZ","kid":"odd"}`))
	b, _ = json.Marshal(raw)

	keys, err := parseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("kept %d keys (%v), want ec and ed-private", len(keys), keys)
	}
	if k, ok := keys["ed-private"]; !ok || !k.IsPublic() {
		t.Fatalf("ed-private: kept %v, public %v", ok, k.IsPublic())
	}
	if _, ok := keys["ec"]; !ok {
		t.Fatal("ec dropped")
	}
	if _, err := parseJWKS([]byte(`[1,2]`)); err == nil {
		t.Fatal("a JWKS that is not an object was accepted")
	}
}
