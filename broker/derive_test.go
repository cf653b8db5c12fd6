package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// minter is a Deriver for the tests: it counts its calls, remembers the
// credential it was given, and, while gate is open, waits for the test to
// close it. Its credentials live an hour on the test's clock.
type minter struct {
	tb      testing.TB
	clock   *testClock
	calls   atomic.Int64
	started chan struct{} // one send per call, when the channel has room
	gate    chan struct{} // closed: mints go through
	fail    atomic.Bool
	asIs    atomic.Bool // hand the credential out as it is, without an expiry
	mu      sync.Mutex
	lastID  string
}

func newMinter(tb testing.TB, clock *testClock) *minter {
	m := &minter{tb: tb, clock: clock, started: make(chan struct{}, 1), gate: make(chan struct{})}
	close(m.gate)
	return m
}

func (m *minter) derive(ctx context.Context, env providers.MintEnv, c providers.Credential) (providers.Derived, error) {
	n := m.calls.Add(1)
	select {
	case m.started <- struct{}{}:
	default:
	}
	select {
	case <-m.gate:
	case <-ctx.Done():
		return providers.Derived{}, ctx.Err()
	}
	if m.fail.Load() {
		return providers.Derived{}, fmt.Errorf("the token service answered 403: %w", providers.ErrMintRefused)
	}
	if env.HTTP == nil || env.Endpoint("sts", "https://sts.example") != "http://127.0.0.1:1/sts" {
		return providers.Derived{}, fmt.Errorf("the mint environment is not the configured one")
	}
	m.mu.Lock()
	m.lastID = c.Field("accessKeyId")
	m.mu.Unlock()
	if m.asIs.Load() {
		return providers.Derived{Credential: c}, nil
	}
	return providers.Derived{
		Credential: providers.New(c.Kind(), map[string]string{"accessKeyId": "ASIA" + c.Field("accessKeyId")[4:], "sessionToken": fmt.Sprintf("session-%d-%s", n, newKey(m.tb, "session"))}),
		ExpiresAt:  m.clock.Now().Add(time.Hour),
	}, nil
}

// isSession says whether c is the credential of the minter's nth mint
// (its session token is random: the leak checks look for it).
func isSession(c providers.Credential, n int) bool {
	return strings.HasPrefix(c.Field("sessionToken"), fmt.Sprintf("session-%d-", n))
}

// hold makes the next mints wait until the returned func is called.
func (m *minter) hold() (release func()) {
	m.gate = make(chan struct{})
	return func() { close(m.gate) }
}

// derivingCloud is a provider known only to these tests whose Deriver
// is m's.
func derivingCloud(m *minter) providers.Provider {
	return providers.Provider{ID: "testcloud", DisplayName: "TestCloud", Derive: m.derive, Credential: providers.Schema{Kind: "test_cloud", Fields: []providers.Field{
		{Name: "region", VaultField: "region", Required: true},
		{Name: "accessKeyId", VaultField: "access_key_id", Secret: true, Required: true},
		{Name: "secretAccessKey", VaultField: "secret_access_key", Secret: true, Required: true},
	}}}
}

// onDerivingCloud adds derivingCloud(m) to the built-in providers, with a
// token-service endpoint of its own.
func onDerivingCloud(clock *testClock, m *minter, tune func(*broker.Config)) func(*broker.Config) {
	return func(c *broker.Config) {
		onTestClock(clock, 24*time.Hour, func(r broker.KeyReader) broker.KeyReader { return r })(c)
		c.Providers = providers.NewRegistry(append(providers.DefaultRegistry().All(), derivingCloud(m))...)
		c.MintEndpoints = map[string]map[string]string{"testcloud": {"sts": "http://127.0.0.1:1/sts"}}
		if tune != nil {
			tune(c)
		}
	}
}

// cloudCredential is a fresh credential of the test kind; its secrets are
// remembered for the leak checks.
func cloudCredential(t testing.TB) providers.Credential {
	id := "AKIA" + strings.ToUpper(newKey(t, "testcloud")[:16])
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, id)
	usedKeysMu.Unlock()
	return providers.New("test_cloud", map[string]string{"region": "eu-west-1", "accessKeyId": id, "secretAccessKey": newKey(t, "testcloud")})
}

func (e *env) putCloud(t testing.TB, keyID string, c providers.Credential) {
	t.Helper()
	if _, err := e.b.PutKey(context.Background(), broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "testcloud", keyID), Credential: c}); err != nil {
		t.Fatal(err)
	}
}

// TestDerivedCredentialsAreMintedOncePerKeyAndDroppedOnChange: resolve
// hands out a credential minted from the key, never the key; a herd of a
// cold key mints once; a rotation, a report and the end of the refresh
// window each make the next resolve mint again.
func TestDerivedCredentialsAreMintedOncePerKeyAndDroppedOnChange(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	m := newMinter(t, clock)
	e := newEnv(t, onDerivingCloud(clock, m, nil))
	long := cloudCredential(t)
	e.putCloud(t, "default", long)
	req := broker.ResolveRequest{Workspace: e.workspc, Provider: "testcloud", Caller: "tok-1"}

	// 1,000 concurrent resolves of the cold key: one Vault read, one mint.
	const herd = 1000
	answers, errs := resolveHerd(e.b, req, herd, m.started, m.hold())
	if n := m.calls.Load(); n != 1 {
		t.Fatalf("%d resolves of a cold key minted %d times, want 1", herd, n)
	}
	for i := range herd {
		if errs[i] != nil {
			t.Fatalf("resolve %d: %v", i, errs[i])
		}
		r := answers[i]
		if !isSession(r.Credential, 1) || r.Credential.Field("secretAccessKey") != "" || r.Credential.Equal(long) {
			t.Fatalf("resolve %d handed out %v, not the minted credential", i, r.Credential)
		}
		if !r.ExpiresAt.Equal(answers[0].ExpiresAt) || r.ExpiresAt.IsZero() {
			t.Fatalf("resolve %d: expiresAt %v", i, r.ExpiresAt)
		}
	}

	// A hit mints nothing, until the refresh window: an hour's credential
	// is re-minted once less than 12 minutes (20 %) remain.
	mints := func() int64 { return m.calls.Load() }
	resolve := func(caller string) broker.Resolution {
		t.Helper()
		r := req
		r.Caller = caller
		res, err := e.b.Resolve(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	clock.Set(47 * time.Minute)
	if r := resolve("tok-1"); mints() != 1 || !isSession(r.Credential, 1) {
		t.Fatalf("a hit before the refresh window minted (%d mints)", mints())
	}
	clock.Set(49 * time.Minute)
	if r := resolve("tok-1"); mints() != 2 || !isSession(r.Credential, 2) {
		t.Fatalf("after the refresh window: %d mints, the second session %v", mints(), isSession(r.Credential, 2))
	}

	// A rotation drops the minted credential: the next resolve mints from
	// the new key.
	rotated := cloudCredential(t)
	e.putCloud(t, "default", rotated)
	r := resolve("tok-1")
	m.mu.Lock()
	lastID := m.lastID
	m.mu.Unlock()
	if mints() != 3 || lastID != rotated.Field("accessKeyId") || !isSession(r.Credential, 3) {
		t.Fatalf("after a rotation: %d mints, minted from the new key %v", mints(), lastID == rotated.Field("accessKeyId"))
	}
	resolve("tok-1")
	if mints() != 3 {
		t.Fatalf("a hit after the rotation minted again (%d)", mints())
	}

	// A report of a problem with the key drops it (a rate limit the proxy
	// saw for tok-1 cools the key for tok-1 alone: tok-2 is served it).
	// A report about a credential minted less than 30 s ago keeps it:
	// reports (a tenant's, a sandbox's) cannot make keybroker call the
	// token service more than twice a minute per key.
	report := func(r broker.Resolution) {
		t.Helper()
		if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: "tok-1", ResolutionID: r.ResolutionID, Outcome: broker.OutcomeRateLimited, Proxied: true}); err != nil {
			t.Fatal(err)
		}
	}
	report(r)
	if r := resolve("tok-2"); mints() != 3 || !isSession(r.Credential, 3) {
		t.Fatalf("a report about a credential minted just now: %d mints", mints())
	}
	clock.Set(49*time.Minute + 31*time.Second)
	report(r)
	if r := resolve("tok-2"); mints() != 4 || !isSession(r.Credential, 4) {
		t.Fatalf("after a report: %d mints", mints())
	}

	// An announced change of the key (another replica's write) drops it.
	if err := e.b.Invalidate(ctx, broker.Invalidation{ScopeKind: broker.ScopeWorkspace, ScopeID: e.workspc, Provider: "testcloud", KeyID: "default"}); err != nil {
		t.Fatal(err)
	}
	if resolve("tok-2"); mints() != 5 {
		t.Fatalf("after an invalidation: %d mints", mints())
	}
}

// TestMintFailuresAndTheBoundOfMintsInFlight: a failed mint is
// ErrMintFailed, with neither field's value in the error or the log (the
// package's leak check); past the bound of mints in flight a resolve is
// ErrMintBusy, not a wait.
func TestMintFailuresAndTheBoundOfMintsInFlight(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	m := newMinter(t, clock)
	e := newEnv(t, onDerivingCloud(clock, m, func(c *broker.Config) { c.MaxMintsInFlight = 1 }))
	c := cloudCredential(t)
	e.putCloud(t, "a", c)
	req := broker.ResolveRequest{Workspace: e.workspc, Provider: "testcloud", Caller: "tok-1"}

	m.fail.Store(true)
	_, err := e.b.Resolve(ctx, req)
	if !errors.Is(err, broker.ErrMintFailed) {
		t.Fatalf("a failed mint: %v", err)
	}
	for _, f := range []string{"accessKeyId", "secretAccessKey"} {
		if strings.Contains(err.Error(), c.Field(f)) {
			t.Fatalf("the error shows %s", f)
		}
	}
	m.fail.Store(false)
	<-m.started // the failed mint's
	// The token service refused the key: it fails for everyone
	// (TestAKeyItsTokenServiceRefusesFailsAndTheNextServes).
	if meta, err := e.b.GetKey(ctx, broker.WorkspaceKey(e.workspc, "testcloud", "a")); err != nil || meta.Health != broker.HealthFailing {
		t.Fatalf("the refused key: health %q %v", meta.Health, err)
	}

	// One mint held in flight; another key's is refused at once.
	req.Workspace = e.workspc + "-1"
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(req.Workspace, "testcloud", "default"), Credential: cloudCredential(t)}); err != nil {
		t.Fatal(err)
	}
	release := m.hold()
	first := make(chan error, 1)
	go func() { _, err := e.b.Resolve(ctx, req); first <- err }()
	<-m.started
	// A cold key of another workspace needs a mint: past the bound.
	other := broker.ResolveRequest{Workspace: e.workspc + "-2", Provider: "testcloud", Caller: "tok-1"}
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(other.Workspace, "testcloud", "default"), Credential: cloudCredential(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, other); !errors.Is(err, broker.ErrMintBusy) {
		t.Fatalf("a mint past the bound: %v, want ErrMintBusy", err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, other); err != nil {
		t.Fatalf("once the slot is free: %v", err)
	}
}

// TestExposedProvidersHandOutTheLongLivedCredential: for a provider the
// operator exposes (--expose-long-lived-credentials), resolve hands out
// the key itself and mints nothing; for the others it mints.
func TestExposedProvidersHandOutTheLongLivedCredential(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	for _, exposed := range []bool{true, false} {
		t.Run(fmt.Sprintf("exposed=%v", exposed), func(t *testing.T) {
			m := newMinter(t, clock)
			e := newEnv(t, onDerivingCloud(clock, m, func(c *broker.Config) {
				if exposed {
					c.ExposeLongLived = []string{"testcloud"}
				}
			}))
			long := cloudCredential(t)
			e.putCloud(t, "default", long)
			r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "testcloud", Caller: "tok-1"})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Credential.Equal(long); got != exposed || (m.calls.Load() == 0) != exposed || r.ExpiresAt.IsZero() != exposed {
				t.Fatalf("exposed %v: handed out the key %v, %d mints, expiresAt %v", exposed, got, m.calls.Load(), r.ExpiresAt)
			}
		})
	}
}

// A Deriver that mints nothing (an Azure or Bedrock API key: zero
// ExpiresAt) has its credential handed out as it is, without expiresAt,
// asked once until the key changes — not a failed mint.
func TestADeriverThatMintsNothingHandsTheKeyOutAsItIs(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	m := newMinter(t, clock)
	m.asIs.Store(true)
	e := newEnv(t, onDerivingCloud(clock, m, nil))
	long := cloudCredential(t)
	e.putCloud(t, "default", long)
	for i := range 3 {
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "testcloud", Caller: "tok-1"})
		if err != nil || !r.Credential.Equal(long) || !r.ExpiresAt.IsZero() {
			t.Fatalf("resolve %d: %v, the key handed out %v, expiresAt %v", i, err, err == nil && r.Credential.Equal(long), r.ExpiresAt)
		}
		clock.Set(time.Duration(i+1) * 24 * time.Hour)
	}
	if n := m.calls.Load(); n != 1 {
		t.Fatalf("%d calls of the Deriver for one key, want 1", n)
	}
}

// seenChecker accepts every key and remembers the credential it was
// given.
type seenChecker struct {
	mu   sync.Mutex
	seen []providers.Credential
}

func (c *seenChecker) Check(ctx context.Context, p *providers.Provider, cred providers.Credential) providers.CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, cred)
	return providers.CheckResult{Verdict: providers.VerdictAccepted, Status: 200, Detail: "answered 200"}
}

// TestAKeyCheckOfADerivingProviderLeavesTheMintToTheChecker: the broker
// hands the key check the stored credential and mints nothing itself —
// providers.Checker mints what resolve would hand out and checks with that
// (providers' bedrock, vertex and azure tests), so a check mints once.
func TestAKeyCheckOfADerivingProviderLeavesTheMintToTheChecker(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	m := newMinter(t, clock)
	checker := &seenChecker{}
	e := newEnv(t, onDerivingCloud(clock, m, func(c *broker.Config) { c.Checker = checker }))
	long := cloudCredential(t)
	e.putCloud(t, "default", long)
	ref := broker.WorkspaceKey(e.workspc, "testcloud", "default")
	kc, err := e.b.CheckKey(ctx, alice, ref)
	if err != nil {
		t.Fatal(err)
	}
	checker.mu.Lock()
	seen := append([]providers.Credential(nil), checker.seen...)
	checker.mu.Unlock()
	if kc.Verdict != providers.VerdictAccepted || len(seen) != 1 || !seen[0].Equal(long) || m.calls.Load() != 0 {
		t.Fatalf("verdict %s, the checker saw %v, %d mints by the broker", kc.Verdict, seen, m.calls.Load())
	}
}
