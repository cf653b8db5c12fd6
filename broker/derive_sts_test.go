package broker_test

import (
	"context"
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
	var ready, done sync.WaitGroup
	ready.Add(herd)
	answers := make([]broker.Resolution, herd)
	errs := make([]error, herd)
	for i := range herd {
		done.Go(func() {
			ready.Done()
			answers[i], errs[i] = e.b.Resolve(ctx, req)
		})
	}
	<-held.arrived
	ready.Wait()
	close(held.gate)
	done.Wait()
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
