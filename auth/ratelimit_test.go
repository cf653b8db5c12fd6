package auth_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
# HELP keybroker_rate_limited_total Requests refused with 429, by the limit that refused them (token: an authenticated token's rate; failed_auth: a client address's failed authentications; report: a token's reports; workspace: a workspace's proxied calls; mint: a resolver token's proxy-token mints).
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

// A failed authentication is charged before the lookup, in the same step
// as the check: however many lookups from one address run at once, no
// more start than the address's failures allow. A good token gives its
// charge back.
func TestFailedAuthIsReservedBeforeTheLookup(t *testing.T) {
	ctx := context.Background()
	l := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 10}, nil)
	var started atomic.Int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if a, ok, wait := l.BeginAuth(ctx, "192.0.2.7"); ok {
				started.Add(1)
				a.Failed() // the lookup fails: the charge stays
			} else if wait < time.Second {
				t.Errorf("refused with Retry-After %s", wait)
			}
		}()
	}
	close(gate)
	wg.Wait()
	if n := started.Load(); n != 10 {
		t.Fatalf("%d lookups started from one address; its burst is 10", n)
	}
	// Good tokens give their charge back: they never use the address up.
	l2 := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 2}, nil)
	for i := range 50 {
		a, ok, _ := l2.BeginAuth(ctx, "192.0.2.8")
		if !ok {
			t.Fatalf("good authentication %d refused", i+1)
		}
		a.Succeeded()
		a.Failed() // after Succeeded: nothing (it may be deferred)
	}
	for range 2 {
		a, ok, _ := l2.BeginAuth(ctx, "192.0.2.8")
		if !ok {
			t.Fatal("a failure refused within the burst")
		}
		a.Failed()
	}
	if _, ok, _ := l2.BeginAuth(ctx, "192.0.2.8"); ok {
		t.Fatal("a third failure passed a burst of 2")
	}
	if blocked, _ := l2.AddrBlocked("192.0.2.8"); !blocked {
		t.Fatal("AddrBlocked disagrees with BeginAuth")
	}
	if ok, wait := l2.FailedAuth("192.0.2.8"); ok || wait < time.Second {
		t.Fatalf("a failure without a lookup from a used-up address: charged=%v, retry after %s", ok, wait)
	}
}

// An address whose failures are all reserved by lookups under way is not
// refused yet: a lookup waits for them, since each good token among them
// gives its failure back. Valid tokens presented at once are therefore
// all looked up, never more at a time than the burst; once the lookups
// under way have failed, the next is refused.
func TestALookupWaitsForTheLookupsUnderWay(t *testing.T) {
	ctx := context.Background()
	l := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 5}, nil)
	var inside, most, accepted atomic.Int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			a, ok, _ := l.BeginAuth(ctx, "192.0.2.20")
			if !ok {
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			inside.Add(-1)
			accepted.Add(1)
			a.Succeeded() // a valid token
		}()
	}
	close(gate)
	wg.Wait()
	if n := accepted.Load(); n != 60 {
		t.Fatalf("%d of 60 valid tokens presented at once were looked up; want all", n)
	}
	if m := most.Load(); m > 5 {
		t.Fatalf("%d lookups of one address at once; its burst is 5", m)
	}

	// Two lookups hold the whole budget; a third waits for them. When
	// one succeeds, the third gets its failure.
	l2 := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 2}, nil)
	first, _, _ := l2.BeginAuth(ctx, "192.0.2.21")
	second, _, _ := l2.BeginAuth(ctx, "192.0.2.21")
	third := make(chan bool, 1)
	go func() {
		a, ok, _ := l2.BeginAuth(ctx, "192.0.2.21")
		third <- ok
		if ok {
			a.Failed()
		}
	}()
	first.Succeeded()
	if !<-third {
		t.Fatal("a lookup refused while a good token was being looked up")
	}
	// Now the budget is spent (the third failed) and one lookup is under
	// way; when it fails too, a waiting lookup is refused.
	fourth := make(chan bool, 1)
	go func() {
		_, ok, _ := l2.BeginAuth(ctx, "192.0.2.21")
		fourth <- ok
	}()
	second.Failed()
	if <-fourth {
		t.Fatal("a lookup started after every failure of the address was spent")
	}
	// A waiting lookup ends with its request.
	l3 := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 1}, nil)
	held, _, _ := l3.BeginAuth(ctx, "192.0.2.22")
	defer held.Failed()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok, _ := l3.BeginAuth(cctx, "192.0.2.22"); ok {
		t.Fatal("a canceled request got a lookup")
	}
}

// An IPv6 host holds a /64: its failures count together, whatever
// address of it each comes from; another /64 has its own.
func TestIPv6AddressesCountPerSlash64(t *testing.T) {
	ctx := context.Background()
	fail := func(l *auth.Limiter, addr string) bool {
		a, ok, _ := l.BeginAuth(ctx, addr)
		a.Failed()
		return ok
	}
	l := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 3}, nil)
	for i := range 3 {
		if !fail(l, "2001:db8:1:2::"+strconv.FormatInt(int64(i+1), 16)) {
			t.Fatalf("failure %d refused within the burst", i+1)
		}
	}
	if fail(l, "2001:db8:1:2:ffff:ffff:ffff:ffff") {
		t.Fatal("another address of the same /64 was not counted with the others")
	}
	if !fail(l, "2001:db8:1:3::1") {
		t.Fatal("another /64 was refused")
	}
	// IPv4, also written as IPv4-mapped IPv6, is one address.
	l4 := auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 1}, nil)
	if !fail(l4, "192.0.2.9") {
		t.Fatal("first IPv4 failure refused")
	}
	if fail(l4, "::ffff:192.0.2.9") {
		t.Fatal("the IPv4-mapped form of a used-up address passed")
	}
	if !fail(l4, "192.0.2.10") {
		t.Fatal("the next IPv4 address was refused")
	}
}

// Proxied calls have a bucket per workspace, mints one per resolver token.
func TestWorkspaceAndMintBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := auth.NewLimiter(auth.RateLimits{PerWorkspace: 0.001, PerWorkspaceBurst: 2, MintsPerToken: 0.001, MintsBurst: 3}, reg)
	for range 2 {
		if ok, _ := l.AllowWorkspace("ws1"); !ok {
			t.Fatal("a workspace refused within its burst")
		}
	}
	if ok, wait := l.AllowWorkspace("ws1"); ok || wait < time.Second {
		t.Fatalf("past the workspace's burst: %v %s", ok, wait)
	}
	if ok, _ := l.AllowWorkspace("ws2"); !ok {
		t.Fatal("another workspace refused")
	}
	for range 3 {
		if ok, _ := l.AllowMint("tok_r"); !ok {
			t.Fatal("a mint refused within the burst")
		}
	}
	if ok, _ := l.AllowMint("tok_r"); ok {
		t.Fatal("past the mints' burst")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP keybroker_rate_limited_total Requests refused with 429, by the limit that refused them (token: an authenticated token's rate; failed_auth: a client address's failed authentications; report: a token's reports; workspace: a workspace's proxied calls; mint: a resolver token's proxy-token mints).
# TYPE keybroker_rate_limited_total counter
keybroker_rate_limited_total{limit="mint"} 1
keybroker_rate_limited_total{limit="workspace"} 1
`), "keybroker_rate_limited_total"); err != nil {
		t.Fatal(err)
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
