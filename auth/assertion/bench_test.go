package assertion_test

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/auth/assertion"
)

// BenchmarkVerify measures Verify on a JWKS cache hit: parse, signature,
// claims and the replay cache (a fresh jti each time). The tokens are
// signed before the timer starts.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg, nil)
			ctx := context.Background()
			if _, err := f.v.Verify(ctx, sign(b, f.key, goodClaims(f.iss, f.clock.Now()))); err != nil {
				b.Fatal(err)
			}
			raws := make([]string, b.N)
			for i := range raws {
				raws[i] = sign(b, f.key, goodClaims(f.iss, f.clock.Now()))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.v.Verify(ctx, raws[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignatureOnly is the floor BenchmarkVerify stands on: go-jose
// parsing and verifying the same kind of token, without keybroker's checks.
func BenchmarkSignatureOnly(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			f := newFixture(b, alg, nil)
			raw := sign(b, f.key, goodClaims(f.iss, f.clock.Now()))
			pub := f.key.signer.Public()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				jws, err := jose.ParseSignedCompact(raw, assertion.Algorithms)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jws.Verify(pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
