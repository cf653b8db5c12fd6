package handlers_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
	"github.com/keybroker/keybroker/internal/runtime/proxy"
)

// The ARN of the stand-in's inference profile (us-east-1, its account).
const profileARN = "arn:aws:bedrock:us-east-1:" + awsstub.Account + ":inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"

// InvokeModel and InvokeModelWithResponseStream alone (no Converse), with
// model ids that are ARNs: written in the path as AWS's SDKs escape them
// (':' as %3A, '/' as %2F), reached through a modelMap, and sent by the
// unmodified aws-sdk-go-v2 client; the stand-in recomputes each SigV4
// signature over the canonical URI (escaped once more), so a path the
// proxy escaped otherwise is refused. A %2F outside an ARN, or in an ARN
// with a dot segment, is not forwarded.
func TestTheProxyForwardsBedrockInvokeModelWithARNModelIDs(t *testing.T) {
	const region = "us-east-1"
	stub := awsstub.New(t, region)
	keyID, secret := remember("AKIAPROXYINVOKE00004"), remember("proxyInvokeSecret/0123456789abcdefABCDEF")
	stub.AddKey(keyID, secret)
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintHTTP, c.MintEndpoints = stub.Client(), map[string]map[string]string{"bedrock": {"sts": stub.URL}}
	}}, map[string]string{"bedrock": stub.URL})
	a.addCredentialKey("ws1", "bedrock", "main", 0, map[string]any{"region": region, "accessKeyId": keyID, "secretAccessKey": secret,
		"modelMap": map[string]any{"claude-haiku": profileARN}})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"bedrock"}})
	invoke := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`

	escapedARN := strings.NewReplacer(":", "%3A", "/", "%2F").Replace(profileARN)
	resp, answer := a.proxyCall("POST", "/proxy/bedrock/model/"+escapedARN+"/invoke", invoke, "X-Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(answer, `"stand-in reply"`) {
		t.Fatalf("InvokeModel with an ARN: %d %s", resp.StatusCode, answer)
	}
	resp, answer = a.proxyCall("POST", "/proxy/bedrock/model/claude-haiku/invoke-with-response-stream", invoke, "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		t.Fatalf("InvokeModelWithResponseStream through the modelMap: %d %q", resp.StatusCode, answer)
	}
	msg, err := eventstream.NewDecoder().Decode(bytes.NewReader([]byte(answer)), nil)
	if err != nil || msg.Headers.Get(":event-type").String() != "chunk" {
		t.Fatalf("the stream's first frame: %v", err)
	}

	// The unmodified SDK: a foundation model's ARN, then a model id.
	sdk := bedrockruntime.New(bedrockruntime.Options{
		Region:       region,
		BaseEndpoint: aws.String(a.srv.URL + "/proxy/bedrock"),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIADUMMYSDKCALLER00", "dummy/dummy/dummy/dummy/dummy/dummy/dumm", ""),
		APIOptions:   []func(*middleware.Stack) error{smithyhttp.SetHeaderValue("X-Api-Key", tok.Token)},
		Retryer:      aws.NopRetryer{},
	})
	foundationARN := "arn:aws:bedrock:" + region + "::foundation-model/amazon.nova-micro-v1:0"
	out, err := sdk.InvokeModel(t.Context(), &bedrockruntime.InvokeModelInput{ModelId: aws.String(foundationARN), ContentType: aws.String("application/json"), Body: []byte(invoke)})
	if err != nil {
		t.Fatalf("the SDK's InvokeModel with an ARN: %v", err)
	}
	var reply struct{ Completion string }
	if json.Unmarshal(out.Body, &reply) != nil || reply.Completion != "stand-in reply" {
		t.Fatalf("InvokeModel answered %s", out.Body)
	}
	st, err := sdk.InvokeModelWithResponseStream(t.Context(), &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String("amazon.nova-micro-v1:0"),
		ContentType: aws.String("application/json"), Body: []byte(invoke)})
	if err != nil {
		t.Fatalf("the SDK's InvokeModelWithResponseStream: %v", err)
	}
	var chunks []string
	for ev := range st.GetStream().Events() {
		if c, ok := ev.(*brtypes.ResponseStreamMemberChunk); ok {
			chunks = append(chunks, string(c.Value.Bytes))
		}
	}
	if err := st.GetStream().Close(); err != nil || st.GetStream().Err() != nil || len(chunks) != 1 || !strings.Contains(chunks[0], "stand-in reply") {
		t.Fatalf("streamed %q (%v, %v)", chunks, err, st.GetStream().Err())
	}

	var got []string
	for _, c := range stub.Calls() {
		if !c.Session || !stub.IsSession(c.AccessKeyID) {
			t.Fatalf("a call was not signed with a minted session: %+v", c)
		}
		got = append(got, c.Operation+" "+c.Model)
	}
	want := []string{"InvokeModel " + profileARN, "InvokeModelWithResponseStream " + profileARN,
		"InvokeModel " + foundationARN, "InvokeModelWithResponseStream amazon.nova-micro-v1:0"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the stand-in served:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// '/' escaped outside an ARN, or making a dot segment: not forwarded.
	for _, model := range []string{"anthropic.claude%2Fx", "arn%3Aaws%3Abedrock%2F..%2Fx", "arn%3Aaws%3Abedrock%2F%2Fx"} {
		resp, answer := a.proxyCall("POST", "/proxy/bedrock/model/"+model+"/invoke", invoke, "X-Api-Key", tok.Token)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"path_not_allowed"`) {
			t.Fatalf("%s: %d %s", model, resp.StatusCode, answer)
		}
	}
	if n := len(stub.Calls()); n != 4 {
		t.Fatalf("%d calls reached Bedrock", n)
	}
	a.proxyCallsOf("ws1", 4)
}

// A pool of two Bedrock keys of two regions: the first's calls are
// refused (403 AccessDeniedException, before the first byte), and the
// call is made again with the second key, at the runtime of its own
// region, signed for that region with a session minted by that region's
// STS. Each region is a stand-in of its own (a signature scoped to the
// other region is refused), reached as DNS would reach it.
func TestTheProxyFailsOverToABedrockKeyOfAnotherRegion(t *testing.T) {
	eu, us := awsstub.New(t, "eu-west-1"), awsstub.New(t, "us-west-2")
	euID, euSecret := remember("AKIAPROXYREGIONEU005"), remember("proxyRegionEuSecret/0123456789abcdefABCD")
	usID, usSecret := remember("AKIAPROXYREGIONUS006"), remember("proxyRegionUsSecret/0123456789abcdefABCD")
	eu.AddKey(euID, euSecret)
	eu.DenyBedrock(euID)
	us.AddKey(usID, usSecret)
	router := newHostRouter(t, map[string]string{
		"sts.eu-west-1.amazonaws.com": eu.URL, "bedrock-runtime.eu-west-1.amazonaws.com": eu.URL,
		"sts.us-west-2.amazonaws.com": us.URL, "bedrock-runtime.us-west-2.amazonaws.com": us.URL,
	})
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) { c.MintHTTP = router.client() }}, nil,
		func(c *proxy.Config) { c.Transport = router })
	a.addCredentialKey("ws1", "bedrock", "eu", 0, map[string]any{"region": "eu-west-1", "accessKeyId": euID, "secretAccessKey": euSecret})
	a.addCredentialKey("ws1", "bedrock", "us", 1, map[string]any{"region": "us-west-2", "accessKeyId": usID, "secretAccessKey": usSecret})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"bedrock"}})

	resp, answer := a.proxyCall("POST", "/proxy/bedrock/model/amazon.nova-micro-v1%3A0/converse", `{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`,
		"Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "us" || !strings.Contains(answer, "stand-in reply to: hi") {
		t.Fatalf("failover: %d %s (key %s)", resp.StatusCode, answer, resp.Header.Get("X-Keybroker-Key-Id"))
	}
	var runtimes []string
	for _, h := range router.hosts() {
		if strings.HasPrefix(h, "bedrock-runtime.") {
			runtimes = append(runtimes, h)
		}
	}
	if strings.Join(runtimes, ",") != "bedrock-runtime.eu-west-1.amazonaws.com,bedrock-runtime.us-west-2.amazonaws.com" {
		t.Fatalf("runtimes asked: %v (all hosts %v)", runtimes, router.hosts())
	}
	if len(eu.Calls()) != 0 || eu.STSCalls() != 1 || us.STSCalls() != 1 {
		t.Fatalf("eu served %d calls, STS minted %d (eu) and %d (us)", len(eu.Calls()), eu.STSCalls(), us.STSCalls())
	}
	if c := us.Calls(); len(c) != 1 || c[0].Operation != "Converse" || !c[0].Session || !us.IsSession(c[0].AccessKeyID) {
		t.Fatalf("us served %+v", c)
	}
	calls := a.proxyCallsOf("ws1", 1)
	if len(calls) != 1 || calls[0].KeyID != "us" || !calls[0].Retried || calls[0].Status != http.StatusOK {
		t.Fatalf("listed %+v", calls)
	}
	assertNothingHolds(t, "an answer", []string{answer, string(mustJSON(t, calls))}, euSecret, usSecret, euID, usID)
}
