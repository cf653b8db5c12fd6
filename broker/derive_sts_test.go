package broker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/providers"
)

// heldSTS lets the token service's answers through only once released:
// the first STS call waits, so that the whole herd is in flight behind it.
type heldSTS struct {
	next    http.RoundTripper
	arrived chan struct{} // one send per STS call, when the channel has room
	gate    chan struct{}
}

func (h *heldSTS) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case h.arrived <- struct{}{}:
	default:
	}
	select {
	case <-h.gate:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	return h.next.RoundTrip(r)
}

// TestAColdHerdOfABedrockKeyCallsSTSOnce: 1,000 concurrent resolves of a
// Bedrock key nobody has resolved yet make exactly one GetSessionToken
// call to the token service (a stand-in that verifies the SigV4 signature
// with the key's secret), and every resolve hands out that one session,
// never the key pair. Later hits call STS no more.
func TestAColdHerdOfABedrockKeyCallsSTSOnce(t *testing.T) {
	ctx := context.Background()
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	keyID := "AKIA" + strings.ToUpper(newKey(t, "bedrock")[:16])
	secret := newKey(t, "bedrock")
	stub.AddKey(keyID, secret)
	held := &heldSTS{next: stub.Client().Transport, arrived: make(chan struct{}, 1), gate: make(chan struct{})}
	e := newEnv(t, func(c *broker.Config) {
		c.MintHTTP = &http.Client{Transport: held}
		c.MintEndpoints = map[string]map[string]string{"bedrock": {"sts": stub.URL}}
	})
	long := providers.New(providers.KindAWSBedrock, map[string]string{"region": region, "accessKeyId": keyID, "secretAccessKey": secret})
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "bedrock", broker.DefaultKeyID), Credential: long}); err != nil {
		t.Fatal(err)
	}
	if n := stub.STSCalls(); n != 0 {
		t.Fatalf("writing the key called STS %d times", n)
	}

	const herd = 1000
	req := broker.ResolveRequest{Workspace: e.workspc, Provider: "bedrock", Caller: "tok-1"}
	answers, errs := resolveHerd(e.b, req, herd, held.arrived, func() { close(held.gate) })
	if n := stub.STSCalls(); n != 1 {
		t.Fatalf("%d concurrent resolves of a cold Bedrock key made %d STS calls, want 1", herd, n)
	}
	first := answers[0].Credential
	for i := range herd {
		if errs[i] != nil {
			t.Fatalf("resolve %d: %v", i, errs[i])
		}
		c := answers[i].Credential
		if !c.Equal(first) || answers[i].ExpiresAt.IsZero() || !answers[i].ExpiresAt.Equal(answers[0].ExpiresAt) {
			t.Fatalf("resolve %d handed out another credential or expiry", i)
		}
	}
	if first.Field("secretAccessKey") == secret || first.Field("accessKeyId") == keyID || !stub.IsSession(first.Field("accessKeyId")) || first.Field("sessionToken") == "" {
		t.Fatal("the herd was not handed the STS session minted from the key")
	}
	// The session the herd got is what callers sign with; remember it for
	// the package's leak check of the logs.
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, first.Field("secretAccessKey"), first.Field("sessionToken"))
	usedKeysMu.Unlock()

	for range 100 {
		if _, err := e.b.Resolve(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := stub.STSCalls(); n != 1 {
		t.Fatalf("hits after the herd made %d STS calls in all, want 1", n)
	}
}

// resolveHerd resolves req from n goroutines: once the first mint has
// started (minting) and every goroutine is running, release lets the mint
// finish.
func resolveHerd(b *broker.Broker, req broker.ResolveRequest, n int, minting <-chan struct{}, release func()) ([]broker.Resolution, []error) {
	var ready, done sync.WaitGroup
	ready.Add(n)
	answers := make([]broker.Resolution, n)
	errs := make([]error, n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			answers[i], errs[i] = b.Resolve(context.Background(), req)
		})
	}
	<-minting
	ready.Wait()
	release()
	done.Wait()
	return answers, errs
}

// TestAKeyItsTokenServiceRefusesFailsAndTheNextServes: a pool's first
// Bedrock key whose secret STS does not accept (a deleted IAM key) is
// marked failing when resolve's mint is refused — audited as keybroker's
// own observation, as a check's refusal is — and the same resolve is
// served a session minted from the pool's next key.
func TestAKeyItsTokenServiceRefusesFailsAndTheNextServes(t *testing.T) {
	ctx := context.Background()
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	e := newEnv(t, func(c *broker.Config) {
		c.MintHTTP = stub.Client()
		c.MintEndpoints = map[string]map[string]string{"bedrock": {"sts": stub.URL}}
	})
	pool := broker.WorkspaceScope(e.workspc).Pool("bedrock")
	pair := func() (string, string) {
		return "AKIA" + strings.ToUpper(newKey(t, "bedrock")[:16]), newKey(t, "bedrock")
	}
	deadID, deadSecret := pair() // unknown to STS
	liveID, liveSecret := pair()
	stub.AddKey(liveID, liveSecret)
	for i, kp := range [][2]string{{deadID, deadSecret}, {liveID, liveSecret}} {
		prio := i
		c := providers.New(providers.KindAWSBedrock, map[string]string{"region": region, "accessKeyId": kp[0], "secretAccessKey": kp[1]})
		if _, err := e.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: []string{"dead", "live"}[i], Priority: &prio, Credential: c}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "bedrock", Caller: "tok-1"})
	if err != nil {
		t.Fatalf("resolve with the first key refused by STS: %v", err)
	}
	if r.KeyID != "live" || !stub.IsSession(r.Credential.Field("accessKeyId")) {
		t.Fatalf("served key %q, a session: %v", r.KeyID, stub.IsSession(r.Credential.Field("accessKeyId")))
	}
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, r.Credential.Field("secretAccessKey"), r.Credential.Field("sessionToken"))
	usedKeysMu.Unlock()
	dead, err := e.b.GetKey(ctx, broker.WorkspaceKey(e.workspc, "bedrock", "dead"))
	if err != nil {
		t.Fatal(err)
	}
	if dead.Health != broker.HealthFailing || !strings.Contains(dead.HealthReason, "token service refused the key") {
		t.Fatalf("the refused key: health %q (%q)", dead.Health, dead.HealthReason)
	}
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(e.workspc), 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var health []string
	for _, ev := range evs {
		if ev.Action == broker.ActionHealth {
			health = append(health, ev.Actor+":"+ev.Outcome+":"+ev.KeyID)
		}
	}
	if got := strings.Join(health, " "); got != "keybroker:refused:dead" {
		t.Fatalf("health trail: %s", got)
	}
	// The next resolves go to the live key without asking STS about the
	// dead one again.
	before := stub.STSCalls()
	for range 10 {
		if r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "bedrock", Caller: "tok-1"}); err != nil || r.KeyID != "live" {
			t.Fatalf("resolve: %v %q", err, r.KeyID)
		}
	}
	if n := stub.STSCalls() - before; n != 0 {
		t.Fatalf("%d more STS calls", n)
	}
	// With only refused keys left, resolve says the mint failed.
	if err := e.b.DeleteKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "bedrock", "live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "bedrock"}); !errors.Is(err, broker.ErrNoKey) {
		t.Fatalf("with the refused key failing and nothing else: %v", err)
	}
	// A lone key whose mint is refused fails too, and the resolve that
	// found out answers that the mint failed, not that there is no key.
	lone := broker.WorkspaceKey(e.workspc+"-lone", "bedrock", broker.DefaultKeyID)
	goneID, goneSecret := pair()
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: lone, Credential: providers.New(providers.KindAWSBedrock,
		map[string]string{"region": region, "accessKeyId": goneID, "secretAccessKey": goneSecret})}); err != nil {
		t.Fatal(err)
	}
	_, err = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: lone.ScopeID, Provider: "bedrock"})
	if !errors.Is(err, broker.ErrMintFailed) || !errors.Is(err, providers.ErrMintRefused) || strings.Contains(err.Error(), goneSecret) {
		t.Fatalf("the lone refused key: %v", err)
	}
	if m, err := e.b.GetKey(ctx, lone); err != nil || m.Health != broker.HealthFailing {
		t.Fatalf("the lone refused key: health %q %v", m.Health, err)
	}
}
