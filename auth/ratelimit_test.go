package auth_test

import (
	"strconv"
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
	if got := testutil.ToFloat64(mustCounter(t, reg, "token")); got != 1 {
		t.Fatalf("token refusals counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "failed_auth")); got != 1 {
		t.Fatalf("failed-auth refusals counted %v, want 1", got)
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

func mustCounter(t *testing.T, reg *prometheus.Registry, limit string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keybroker_rate_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "limit" && lp.GetValue() == limit {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no keybroker_rate_limited_total{limit=%q}", limit)
	return nil
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
