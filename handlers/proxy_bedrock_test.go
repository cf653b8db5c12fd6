package handlers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// bedrockFront is a recording pass-through in front of the Bedrock
// stand-in: it keeps the headers of every call that reached it (the Host
// the proxy signed is kept, so the stand-in checks the same signature).
type bedrockFront struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newBedrockFront(t *testing.T, stub *awsstub.Stub) *bedrockFront {
	target, err := url.Parse(stub.URL)
	if err != nil {
		t.Fatal(err)
	}
	f := &bedrockFront{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// A workspace's Bedrock key pair serves proxied Converse and
// ConverseStream calls: the proxy signs each with the STS session the
// broker minted (never the long-lived pair, even where the operator lets
// resolve hand it out), for the host it goes to; the stand-in verifies
// the signature; the caller's own signature and token never reach it; the
// event stream comes back frame for frame; the path's model goes through
// the key's modelMap; the call is recorded; and the long-lived secret is
// in no answer (nor in a log: the package's leak check).
func TestTheProxyForwardsBedrockCallsSignedWithTheMintedSession(t *testing.T) {
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	keyID, secret := remember("AKIAPROXYTESTKEY0001"), remember("proxyTestSecret/0123456789abcdefABCDEF+x")
	stub.AddKey(keyID, secret)
	front := newBedrockFront(t, stub)
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintHTTP, c.MintEndpoints = stub.Client(), map[string]map[string]string{"bedrock": {"sts": stub.URL}}
		c.ExposeLongLived = []string{"bedrock"} // the proxy still signs with a session
	}}, map[string]string{"bedrock": front.srv.URL})
	body := map[string]any{"credential": map[string]any{"region": region, "accessKeyId": keyID, "secretAccessKey": secret,
		"modelMap": map[string]any{"claude-haiku": "us.anthropic.claude-3-haiku-20240307-v1:0"}}}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/bedrock/keys/main", body); r.status != http.StatusCreated {
		t.Fatalf("PUT the Bedrock key: %d %s", r.status, r.body)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"bedrock"}})

	// Converse, as an AWS SDK sends it: its own SigV4 (dummy
	// credentials) in Authorization and X-Amz-*, the proxy token in
	// X-Api-Key.
	callersOwn := []string{"X-Api-Key", tok.Token,
		"Authorization", "AWS4-HMAC-SHA256 Credential=AKIACALLERSOWNKEY000/20250101/" + region + "/bedrock/aws4_request, SignedHeaders=host, Signature=00",
		"X-Amz-Date", "20250101T000000Z", "X-Amz-Security-Token", "callers-own-session-token"}
	converse := `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`
	resp, answer := a.proxyCall("POST", "/proxy/bedrock/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", converse, callersOwn...)
	if resp.StatusCode != http.StatusOK || !strings.Contains(answer, "stand-in reply to: hi") {
		t.Fatalf("Converse through the proxy: %d %s", resp.StatusCode, answer)
	}

	// ConverseStream with a bearer proxy token and the modelMap's name:
	// the binary event stream comes back whole, frame by frame.
	resp, answer = a.proxyCall("POST", "/proxy/bedrock/model/claude-haiku/converse-stream", converse, "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		t.Fatalf("ConverseStream through the proxy: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), answer)
	}
	dec := eventstream.NewDecoder()
	in := bytes.NewReader([]byte(answer))
	var types []string
	var text strings.Builder
	for in.Len() > 0 {
		msg, err := dec.Decode(in, nil) // checks each frame's CRCs
		if err != nil {
			t.Fatalf("event %d of the stream: %v", len(types), err)
		}
		typ := msg.Headers.Get(":event-type")
		if typ == nil {
			t.Fatalf("event %d has no :event-type", len(types))
		}
		types = append(types, typ.String())
		var ev struct {
			Delta struct{ Text string } `json:"delta"`
		}
		if err := json.Unmarshal(msg.Payload, &ev); err != nil {
			t.Fatalf("event %s: %v", typ, err)
		}
		text.WriteString(ev.Delta.Text)
	}
	if got := strings.Join(types, ","); got != "messageStart,contentBlockDelta,contentBlockDelta,contentBlockStop,messageStop,metadata" || text.String() != "stand-in reply to: hi" {
		t.Fatalf("events %s, text %q", got, text.String())
	}

	// What the stand-in verified: two calls, each signed with a session
	// (not the long-lived pair), the second for the mapped model.
	calls := stub.Calls()
	if len(calls) != 2 || calls[0].Operation != "Converse" || calls[1].Operation != "ConverseStream" {
		t.Fatalf("the stand-in answered %+v", calls)
	}
	for _, c := range calls {
		if !c.Session || c.AccessKeyID == keyID || !stub.IsSession(c.AccessKeyID) {
			t.Fatalf("a call was not signed with a minted session: %+v", c)
		}
	}
	if calls[0].Model != "anthropic.claude-3-haiku-20240307-v1:0" || calls[1].Model != "us.anthropic.claude-3-haiku-20240307-v1:0" {
		t.Fatalf("models: %q, %q", calls[0].Model, calls[1].Model)
	}
	if n := stub.STSCalls(); n != 1 {
		t.Fatalf("%d STS calls, want 1 (the session is cached)", n)
	}
	front.mu.Lock()
	for _, h := range front.headers {
		if strings.Contains(h.Get("Authorization"), "AKIACALLERSOWNKEY000") || h.Get("X-Amz-Date") == "20250101T000000Z" ||
			h.Get("X-Amz-Security-Token") == "callers-own-session-token" || h.Get("X-Api-Key") != "" {
			t.Errorf("the caller's own credentials reached the stand-in: %v", h)
		}
		for name, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, tok.Token) || strings.Contains(v, secret) || strings.Contains(v, keyID) {
					t.Errorf("%s carries the proxy token or the long-lived pair", name)
				}
			}
		}
	}
	front.mu.Unlock()

	// The calls are recorded for billing.
	var page client.ProxyCallPage
	waitFor(t, "the proxied Bedrock calls are listed", 5*time.Second, func() bool {
		r := a.call("reader", "GET", "/v1/workspaces/ws1/proxy-calls", nil)
		page = client.ProxyCallPage{}
		r.decode(t, &page)
		return r.status == http.StatusOK && len(page.Calls) == 2
	})
	for _, c := range page.Calls {
		if c.Provider != "bedrock" || c.KeyID != "main" || c.Status != 200 || c.Caller != tok.ID || c.BytesOut == 0 {
			t.Fatalf("listed %+v", c)
		}
	}
	raw, _ := io.ReadAll(strings.NewReader(answer))
	for _, text := range []string{string(raw), string(mustJSON(t, page))} {
		if strings.Contains(text, secret) || strings.Contains(text, keyID) {
			t.Fatal("an answer holds the long-lived pair")
		}
	}
}

// A key STS refuses answers 502 credential_mint_failed, and nothing
// reaches Bedrock.
func TestTheProxyAnswersAMintFailureClearly(t *testing.T) {
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	keyID, secret := remember("AKIAPROXYUNKNOWN0002"), remember("proxyTestSecretUnknown/0123456789abcdefA")
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintHTTP, c.MintEndpoints = stub.Client(), map[string]map[string]string{"bedrock": {"sts": stub.URL}}
	}}, map[string]string{"bedrock": stub.URL})
	body := map[string]any{"credential": map[string]any{"region": region, "accessKeyId": keyID, "secretAccessKey": secret}}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/bedrock/keys/main", body); r.status != http.StatusCreated {
		t.Fatalf("PUT the Bedrock key: %d %s", r.status, r.body)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"bedrock"}})
	resp, answer := a.proxyCall("POST", "/proxy/bedrock/model/amazon.nova-micro-v1%3A0/converse", `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`,
		"Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(answer, `"credential_mint_failed"`) || strings.Contains(answer, secret) || strings.Contains(answer, keyID) {
		t.Fatalf("%d %s", resp.StatusCode, answer)
	}
	if n := len(stub.Calls()); n != 0 {
		t.Fatalf("%d calls reached Bedrock", n)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The unmodified aws-sdk-go-v2 bedrockruntime client, its endpoint set to
// the proxy and its own (dummy) credentials, calls Converse and
// ConverseStream through it: the proxy token goes in x-api-key (the SDK's
// Authorization carries its own signature, which the proxy drops), and the
// stand-in verifies the proxy's signature with the minted session.
func TestTheAWSSDKCallsBedrockThroughTheProxy(t *testing.T) {
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	keyID, secret := remember("AKIAPROXYSDKTEST0003"), remember("proxySdkSecret/0123456789abcdefABCDEF+xy")
	stub.AddKey(keyID, secret)
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintHTTP, c.MintEndpoints = stub.Client(), map[string]map[string]string{"bedrock": {"sts": stub.URL}}
	}}, map[string]string{"bedrock": stub.URL})
	body := map[string]any{"credential": map[string]any{"region": region, "accessKeyId": keyID, "secretAccessKey": secret}}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/bedrock/keys/main", body); r.status != http.StatusCreated {
		t.Fatalf("PUT the Bedrock key: %d %s", r.status, r.body)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"bedrock"}})
	sdk := bedrockruntime.New(bedrockruntime.Options{
		Region:       region,
		BaseEndpoint: aws.String(a.srv.URL + "/proxy/bedrock"),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIADUMMYSDKCALLER00", "dummy/dummy/dummy/dummy/dummy/dummy/dumm", ""),
		APIOptions:   []func(*middleware.Stack) error{smithyhttp.SetHeaderValue("X-Api-Key", tok.Token)},
		Retryer:      aws.NopRetryer{},
	})
	ctx := t.Context()
	msgs := []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hello"}}}}
	out, err := sdk.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"), Messages: msgs})
	if err != nil {
		t.Fatalf("Converse: %v", err)
	}
	msg, ok := out.Output.(*brtypes.ConverseOutputMemberMessage)
	if !ok || len(msg.Value.Content) != 1 {
		t.Fatalf("Converse answered %#v", out.Output)
	}
	if text, ok := msg.Value.Content[0].(*brtypes.ContentBlockMemberText); !ok || text.Value != "stand-in reply to: hello" {
		t.Fatalf("Converse answered %#v", msg.Value.Content[0])
	}

	stream, err := sdk.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String("amazon.nova-micro-v1:0"), Messages: msgs})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	es := stream.GetStream()
	var text strings.Builder
	var stopped bool
	for ev := range es.Events() {
		switch v := ev.(type) {
		case *brtypes.ConverseStreamOutputMemberContentBlockDelta:
			if d, ok := v.Value.Delta.(*brtypes.ContentBlockDeltaMemberText); ok {
				text.WriteString(d.Value)
			}
		case *brtypes.ConverseStreamOutputMemberMessageStop:
			stopped = true
		}
	}
	if err := es.Close(); err != nil || es.Err() != nil {
		t.Fatalf("the stream: %v %v", err, es.Err())
	}
	if text.String() != "stand-in reply to: hello" || !stopped {
		t.Fatalf("streamed %q (stopped %v)", text.String(), stopped)
	}
	calls := stub.Calls()
	if len(calls) != 2 || calls[0].Operation != "Converse" || calls[1].Operation != "ConverseStream" {
		t.Fatalf("the stand-in answered %+v", calls)
	}
	for _, c := range calls {
		if !c.Session || !stub.IsSession(c.AccessKeyID) {
			t.Fatalf("a call was not signed with a minted session: %+v", c)
		}
	}
}
