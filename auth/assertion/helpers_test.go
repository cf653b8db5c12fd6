package assertion_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keybroker/keybroker/auth/assertion"
)

const audience = "https://keybroker.test"

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// signingKey is a platform's private key and its kid.
type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Use: "sig", Algorithm: string(k.alg)}
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey2 *rsa.PrivateKey
)

// rsaKeys are generated once: RSA generation is slow.
func rsaKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey, rsaKey2
}

func newKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) signingKey {
	t.Helper()
	var s crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256:
		s, _ = rsaKeys(t)
	case jose.ES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: alg, signer: s}
}

// jwksServer is a platform's JWKS endpoint on loopback; it counts fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	status  int
}

func newJWKSServer(t testing.TB, keys ...signingKey) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.set(keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			w.WriteHeader(s.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = nil
	for _, k := range keys {
		s.keys = append(s.keys, k.public())
	}
}

func (s *jwksServer) setStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// sign signs claims with k (header alg k.alg, kid k.kid).
func sign(t testing.TB, k signingKey, claims any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.signer},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var jtiSeq atomic.Int64

// goodClaims are valid claims at now, each with a fresh jti.
func goodClaims(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss":   iss,
		"aud":   []string{audience},
		"sub":   "user-42",
		"name":  "Ada Lovelace",
		"email": "ada@example.com",
		"iat":   now.Unix(),
		"exp":   now.Add(2 * time.Minute).Unix(),
		"jti":   "jti-" + time.Now().Format("150405.000000000") + "-" + itoa(jtiSeq.Add(1)),
		"keybroker": map[string]any{
			"workspaces":    map[string]string{"ws1": "admin", "ws2": "reader"},
			"organizations": map[string]string{"acme": "reader"},
		},
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// fixture is a verifier with one platform ("plat") served over loopback.
type fixture struct {
	v     *assertion.Verifier
	clock *clock
	srv   *jwksServer
	key   signingKey
	iss   string
}

func newFixture(t testing.TB, alg jose.SignatureAlgorithm, edit func(*assertion.Registration)) *fixture {
	t.Helper()
	k := newKey(t, "k1", alg)
	srv := newJWKSServer(t, k)
	c := newClock()
	iss := srv.URL + "/platform"
	reg := assertion.Registration{
		ID: "plat", Issuer: iss, JWKSURL: srv.URL + "/jwks.json",
		Workspaces: []string{"ws1", "ws2"}, Organizations: []string{"acme"}, MayGrantAdmin: true,
	}
	if edit != nil {
		edit(&reg)
	}
	v, err := assertion.New(assertion.Config{
		Audience: audience, Registrations: []assertion.Registration{reg},
		HTTPClient: srv.Client(), Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{v: v, clock: c, srv: srv, key: k, iss: iss}
}

func (f *fixture) verify(t testing.TB, raw string) (assertion.Assertion, error) {
	t.Helper()
	return f.v.Verify(context.Background(), raw)
}
