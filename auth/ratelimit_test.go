package auth_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keybroker/keybroker/auth"
)

func TestLimiterRefusesPastTheBurstAndSaysWhenToRetry(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := auth.NewLimiter(auth.RateLimits{PerToken: 1, PerTokenBurst: 5, FailedAuthPerAddr: 0.5, FailedAuthBurst: 3}, reg)
	for i := range 5 {
		if ok, _ := l.AllowToken("tok_a"); !ok {
			t.Fatalf("request %d of a burst of 5 refused", i+1)
		}
	}
	ok, wait := l.AllowToken("tok_a")
	if ok || wait < time.Second {
		t.Fatalf("the 6th request: allowed=%v, retry after %s", ok, wait)
	}
	// Another token has its own bucket.
	if ok, _ := l.AllowToken("tok_b"); !ok {
		t.Fatal("another token was refused")
	}
	for range 3 {
		if blocked, _ := l.AddrBlocked("192.0.2.1"); blocked {
			t.Fatal("an address blocked before its failures were used up")
		}
		l.FailedAuth("192.0.2.1")
	}
	blocked, wait := l.AddrBlocked("192.0.2.1")
	if !blocked || wait < time.Second {
		t.Fatalf("after 3 failures: blocked=%v, retry after %s", blocked, wait)
	}
	if blocked, _ := l.AddrBlocked("192.0.2.2"); blocked {
		t.Fatal("another address was blocked")
	}
	want := `
# HELP keybroker_rate_limited_total Requests refused with 429, by the limit that refused them (token: an authenticated token's rate; failed_auth: a client address's failed authentications; report: a token's reports).
# TYPE keybroker_rate_limited_total counter
keybroker_rate_limited_total{limit="failed_auth"} 1
keybroker_rate_limited_total{limit="token"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keybroker_rate_limited_total"); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	l := auth.NewLimiter(auth.RateLimits{PerToken: 1, PerTokenBurst: 1, MaxTracked: 100}, nil)
	for i := range 10_000 {
		l.AllowToken("tok_" + strconv.Itoa(i))
	}
	if n := l.Tracked(); n > 100 {
		t.Fatalf("%d tokens tracked, bound 100", n)
	}
}

func TestLimitsCanBeTurnedOff(t *testing.T) {
	l := auth.NewLimiter(auth.RateLimits{PerToken: -1, FailedAuthPerAddr: -1}, nil)
	for range 10_000 {
		if ok, _ := l.AllowToken("tok_a"); !ok {
			t.Fatal("a turned-off limit refused")
		}
		l.FailedAuth("192.0.2.1")
	}
	if blocked, _ := l.AddrBlocked("192.0.2.1"); blocked {
		t.Fatal("a turned-off failed-auth limit blocked")
	}
}

// BenchmarkLimiterAllowToken is the limiter's cost per request, for the
// comparison with a cache-hit resolve (docs/benchmarks.md).
func BenchmarkLimiterAllowToken(b *testing.B) {
	l := auth.NewLimiter(auth.RateLimits{PerToken: 1e9, PerTokenBurst: 1e9}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.AllowToken("tok_0123456789abcdef")
		}
	})
}
