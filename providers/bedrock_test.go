package providers_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/providers"
)

const (
	testRegion  = "eu-west-1"
	testKeyID   = "AKIATESTKEYBROKER001"
	testSecret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTESTSECRET"
	testRole    = "arn:aws:iam::123456789012:role/bedrock-invoker"
	testExtID   = "kb-external-id-7f3a"
	testAPIKey  = "ABSKQmVkcm9ja0FQSUtleS1TESTKEYvalue0123456789abcdef"
	testModel   = "anthropic.claude-3-haiku-20240307-v1:0"
	testProfile = "us.anthropic.claude-3-haiku-20240307-v1:0"
)

func bedrock(t *testing.T) *providers.Provider {
	t.Helper()
	p, ok := providers.DefaultRegistry().Lookup("bedrock")
	if !ok {
		t.Fatal("no bedrock provider in the catalogue")
	}
	return p
}

func cred(fields map[string]string) providers.Credential {
	return providers.New(providers.KindAWSBedrock, fields)
}

func pair(extra ...string) map[string]string {
	m := map[string]string{"region": testRegion, "accessKeyId": testKeyID, "secretAccessKey": testSecret}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// stub is a stand-in of testRegion that knows the test's key pair, role
// and API key.
func stub(t *testing.T) *awsstub.Stub {
	s := awsstub.New(t, testRegion)
	s.AddKey(testKeyID, testSecret)
	s.AddRole(testRole, testExtID)
	s.AddAPIKey(testAPIKey)
	return s
}

func mintEnv(s *awsstub.Stub) providers.MintEnv {
	return providers.MintEnv{HTTP: s.Client(), Endpoints: map[string]string{"sts": s.URL}}
}

// noSecrets fails when text holds a value that must never leave keybroker.
func noSecrets(t *testing.T, text string, extra ...string) {
	t.Helper()
	for _, v := range append([]string{testSecret, testAPIKey, testExtID}, extra...) {
		if v != "" && strings.Contains(text, v) {
			t.Errorf("%q leaks a secret value", text)
		}
	}
}

func TestBedrockValidation(t *testing.T) {
	p := bedrock(t)
	good := []map[string]string{
		pair(),
		pair("roleArn", testRole, "externalId", testExtID, "sessionName", "kb-session"),
		pair("roleArn", "arn:aws-us-gov:iam::123456789012:role/path/to/r"),
		pair("modelMap", `{"claude":"`+testProfile+`","nova":"arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-micro-v1:0"}`),
		{"region": "us-east-1", "bedrockApiKey": testAPIKey},
		{"region": "ap-southeast-2", "bedrockApiKey": "bedrock-api-key-" + strings.Repeat("Ab0=", 10)},
	}
	for i, f := range good {
		if err := p.Validate(cred(f)); err != nil {
			t.Errorf("good credential %d refused: %v", i, err)
		}
	}
	bad := []struct {
		name   string
		fields map[string]string
		want   []string // what the message names
	}{
		{"no region", map[string]string{"accessKeyId": testKeyID, "secretAccessKey": testSecret}, []string{"region", "empty"}},
		{"not a region", pair("region", "europe-1"), []string{"region", "not an AWS region"}},
		{"a region without Bedrock", pair("region", "cn-north-9"), []string{"region", "not a region where Bedrock runs"}},
		{"nothing to sign with", map[string]string{"region": testRegion}, []string{"accessKeyId and secretAccessKey", "bedrockApiKey"}},
		{"secret without id", map[string]string{"region": testRegion, "secretAccessKey": testSecret}, []string{"need its accessKeyId"}},
		{"id without secret", map[string]string{"region": testRegion, "accessKeyId": testKeyID}, []string{"need its secretAccessKey"}},
		{"both ways", pair("bedrockApiKey", testAPIKey), []string{"not both", "accessKeyId, secretAccessKey", "bedrockApiKey"}},
		{"api key with a role", map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey, "roleArn": testRole}, []string{"not both", "roleArn"}},
		{"external id without role", pair("externalId", testExtID), []string{"externalId", "add roleArn"}},
		{"role that is no role", pair("roleArn", "arn:aws:iam::123456789012:user/alice"), []string{"roleArn", "not the ARN of an IAM role"}},
		{"bad session name", pair("roleArn", testRole, "sessionName", "has space"), []string{"sessionName"}},
		{"bad external id", pair("roleArn", testRole, "externalId", testExtID+" x"), []string{"externalId"}},
		{"access key id shape", pair("accessKeyId", "AKIAlowercase0000000"), []string{"accessKeyId", "capital letters and digits"}},
		{"access key id prefix", pair("accessKeyId", "XKIA0000000000000000"), []string{"accessKeyId", `"AKIA"`}},
		{"secret length", pair("secretAccessKey", testSecret+"x"), []string{"secretAccessKey", "41 characters"}},
		{"secret with whitespace", pair("secretAccessKey", testSecret[:39]+" "), []string{"secretAccessKey", "whitespace"}},
		{"api key shape", map[string]string{"region": testRegion, "bedrockApiKey": "sk-" + testAPIKey}, []string{"bedrockApiKey", `"ABSK"`}},
		{"model map not an object", pair("modelMap", `["`+testProfile+`"]`), []string{"modelMap", "object"}},
		{"model map target", pair("modelMap", `{"claude":"has space `+testSecret+`"}`), []string{"modelMap", "claude", "inference profile"}},
		{"unknown field", pair("sessionToken", "x"), []string{`no field "sessionToken"`}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(cred(tc.fields))
			if !errors.Is(err, providers.ErrInvalidKey) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
			reason := providers.PublicReason(err)
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					t.Errorf("%q does not say %q", reason, w)
				}
			}
			noSecrets(t, err.Error(), testKeyID, testRole)
		})
	}
}

func TestBedrockDeriveGetSessionToken(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	mm := `{"claude":"` + testProfile + `"}`
	d, err := p.Derive(context.Background(), mintEnv(s), cred(pair("modelMap", mm)))
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	c := d.Credential
	id := c.Field("accessKeyId")
	if c.Kind() != providers.KindAWSBedrock || !strings.HasPrefix(id, "ASIA") || !s.IsSession(id) {
		t.Fatalf("not a session the stand-in issued: kind %s, id %s", c.Kind(), id)
	}
	if c.Field("secretAccessKey") == testSecret || c.Field("secretAccessKey") == "" || c.Field("sessionToken") == "" {
		t.Error("the derived credential is not the session's")
	}
	if c.Field("region") != testRegion || c.Field("modelMap") != mm {
		t.Error("region or modelMap not carried over")
	}
	for n, v := range c.Reveal() {
		if v == testSecret || v == testKeyID {
			t.Errorf("the derived credential hands out the long-lived %s", n)
		}
	}
	if left := time.Until(d.ExpiresAt); left < 50*time.Minute || left > 61*time.Minute {
		t.Errorf("expires in %s; want the hour keybroker asks for", left)
	}
	if s.STSCalls() != 1 {
		t.Errorf("%d STS calls", s.STSCalls())
	}
	// A wrong secret is STS's SignatureDoesNotMatch, without a value.
	_, err = p.Derive(context.Background(), mintEnv(s), cred(pair("secretAccessKey", strings.Repeat("x", 40))))
	var me *providers.BedrockMintError
	if !errors.As(err, &me) || me.Code != "SignatureDoesNotMatch" || me.Status != http.StatusForbidden {
		t.Fatalf("wrong secret: %v", err)
	}
	noSecrets(t, err.Error(), strings.Repeat("x", 40))
	// Unknown key id.
	_, err = p.Derive(context.Background(), mintEnv(s), cred(pair("accessKeyId", "AKIAUNKNOWN000000000")))
	if !errors.As(err, &me) || me.Code != "InvalidClientTokenId" {
		t.Fatalf("unknown key: %v", err)
	}
	// Unreachable STS: an error, no value.
	_, err = p.Derive(context.Background(), providers.MintEnv{HTTP: s.Client(), Endpoints: map[string]string{"sts": "http://127.0.0.1:1"}}, cred(pair()))
	if err == nil || errors.As(err, &me) {
		t.Fatalf("unreachable STS: %v", err)
	}
	noSecrets(t, err.Error())
}

func TestBedrockDeriveAssumeRole(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	d, err := p.Derive(context.Background(), mintEnv(s), cred(pair("roleArn", testRole, "externalId", testExtID)))
	if err != nil {
		t.Fatalf("assume role: %v", err)
	}
	if !s.IsSession(d.Credential.Field("accessKeyId")) || d.Credential.Field("sessionToken") == "" || d.Credential.Field("roleArn") != "" {
		t.Fatal("not a role session, or the role's fields handed out")
	}
	for name, f := range map[string]map[string]string{
		"wrong external id": pair("roleArn", testRole, "externalId", "not-the-"+testExtID),
		"no external id":    pair("roleArn", testRole),
		"unknown role":      pair("roleArn", "arn:aws:iam::123456789012:role/other", "externalId", testExtID),
	} {
		_, err := p.Derive(context.Background(), mintEnv(s), cred(f))
		var me *providers.BedrockMintError
		if !errors.As(err, &me) || me.Code != "AccessDenied" || me.Op != "AssumeRole" {
			t.Errorf("%s: %v", name, err)
			continue
		}
		noSecrets(t, err.Error(), "not-the-"+testExtID, testRole, f["roleArn"])
	}
	if s.STSCalls() != 1 {
		t.Errorf("%d sessions issued; the refused ones issued some", s.STSCalls())
	}
}

func TestBedrockDeriveAPIKey(t *testing.T) {
	p := bedrock(t)
	d, err := p.Derive(context.Background(), providers.MintEnv{}, cred(map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey}))
	if err != nil || !d.ExpiresAt.IsZero() || d.Credential.Field("bedrockApiKey") != testAPIKey || d.Credential.Field("region") != testRegion {
		t.Fatalf("an API key is handed out as it is, with no expiry: %v", err)
	}
}

// converse is a Converse request to the stand-in, the way the proxy hands
// one to Authorize: a caller's own signature on it.
func converse(t *testing.T, s *awsstub.Stub, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, s.URL+"/model/"+strings.ReplaceAll(testModel, ":", "%3A")+"/converse", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIACALLER0000000000/20260101/eu-west-1/bedrock/aws4_request, SignedHeaders=host, Signature=00")
	r.Header.Set("X-Amz-Security-Token", "the-caller's-token")
	r.Header.Set("X-Amz-Date", "20260101T000000Z")
	return r
}

func send(t *testing.T, s *awsstub.Stub, r *http.Request) (int, string) {
	t.Helper()
	resp, err := s.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const converseBody = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`

func TestBedrockAuthorizeSignsAsAWSChecks(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	d, err := p.Derive(context.Background(), mintEnv(s), cred(pair()))
	if err != nil {
		t.Fatal(err)
	}
	session := d.Credential
	signed := func(c providers.Credential) *http.Request {
		r := converse(t, s, converseBody)
		if err := p.Authorize(r, c); err != nil {
			t.Fatal(err)
		}
		return r
	}

	// The session, the long-lived pair and the API key are each accepted;
	// the caller's own signature and token are gone.
	for _, tc := range []struct {
		name string
		c    providers.Credential
	}{
		{"session", session}, {"key pair", cred(pair())},
		{"api key", cred(map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey})},
	} {
		name, r := tc.name, signed(tc.c)
		if strings.Contains(r.Header.Get("Authorization"), "AKIACALLER") || r.Header.Get("X-Amz-Security-Token") == "the-caller's-token" {
			t.Errorf("%s: the caller's credentials were not dropped", name)
		}
		if st, body := send(t, s, r); st != http.StatusOK || !strings.Contains(body, "stand-in reply to: hello") {
			t.Errorf("%s: %d %s", name, st, body)
		}
	}
	calls := s.Calls()
	if len(calls) != 3 || calls[0].Model != testModel || !calls[0].Session || calls[1].Session || calls[1].AccessKeyID != testKeyID {
		t.Fatalf("calls %+v", calls)
	}

	// Each tampering is refused as AWS refuses it.
	tamper := map[string]struct {
		r    func() *http.Request
		code string
		msg  string
	}{
		"changed body": {func() *http.Request {
			r := signed(session)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(converseBody, "hello", "HELLO", 1)))
			return r
		}, "InvalidSignatureException", "signature we calculated does not match"},
		"changed signed header": {func() *http.Request {
			r := signed(session)
			r.Header.Set("Content-Type", "application/x-json")
			return r
		}, "InvalidSignatureException", "signature we calculated does not match"},
		"changed path": {func() *http.Request {
			r := signed(session)
			r.URL.Path, r.URL.RawPath = "/model/amazon.nova-micro-v1:0/converse", ""
			return r
		}, "InvalidSignatureException", "signature we calculated does not match"},
		"wrong secret": {func() *http.Request {
			return signed(cred(pair("secretAccessKey", strings.Repeat("A", 40))))
		}, "InvalidSignatureException", "signature we calculated does not match"},
		"wrong region": {func() *http.Request {
			c := session.Reveal()
			c["region"] = "eu-west-2"
			return signed(cred(c))
		}, "InvalidSignatureException", "scoped to a valid region"},
		"wrong service": {func() *http.Request {
			r := converse(t, s, converseBody)
			r.Header.Del("Authorization")
			r.Header.Del("X-Amz-Security-Token")
			r.Header.Del("X-Amz-Date")
			h := sha256.Sum256([]byte(converseBody))
			sum := hex.EncodeToString(h[:])
			_ = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, r, sum, "s3", testRegion, time.Now())
			return r
		}, "InvalidSignatureException", "scoped to correct service"},
		"session token missing": {func() *http.Request {
			r := signed(session)
			r.Header.Del("X-Amz-Security-Token")
			return r
		}, "UnrecognizedClientException", "security token included in the request is invalid"},
		"unknown API key": {func() *http.Request {
			return signed(cred(map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey + "x"}))
		}, "AccessDeniedException", "API Key"},
		"no signature": {func() *http.Request {
			r := converse(t, s, converseBody)
			r.Header.Del("Authorization")
			return r
		}, "MissingAuthenticationTokenException", "Missing Authentication Token"},
	}
	for name, tc := range tamper {
		t.Run(name, func(t *testing.T) {
			resp, err := s.Client().Do(tc.r())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("X-Amzn-Errortype"), tc.code+":") || !strings.HasPrefix(string(b), `{"message":"`) || !strings.Contains(string(b), tc.msg) {
				t.Errorf("%d %s %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), b)
			}
		})
	}
	// A signature whose date is more than 5 minutes from AWS's clock.
	s.SetSkew(10 * time.Minute)
	if st, body := send(t, s, signed(session)); st != http.StatusForbidden || !strings.Contains(body, "Signature expired") {
		t.Errorf("a stale signature: %d %s", st, body)
	}
	if len(s.Calls()) != 3 {
		t.Errorf("a refused call reached the model: %+v", s.Calls())
	}
}

func TestBedrockCheck(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	c := cred(pair())
	if got := (providers.BaseURLs{}).CheckURL(p, c); got != "https://bedrock.eu-west-1.amazonaws.com" {
		t.Errorf("check URL %s", got)
	}
	if got := (providers.BaseURLs{}).ProxyURL(p, c); got != "https://bedrock-runtime.eu-west-1.amazonaws.com" {
		t.Errorf("proxy URL %s", got)
	}
	if got := (providers.BaseURLs{"bedrock": s.URL + "/"}).ProxyURL(p, c); got != s.URL {
		t.Errorf("an override does not win: %s", got)
	}
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{"bedrock": s.URL}, Transport: s.Client().Transport,
		Mint: providers.MintEnv{Endpoints: map[string]string{"sts": s.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		c    providers.Credential
		want string
	}{
		"key pair":     {c, providers.VerdictAccepted},
		"api key":      {cred(map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey}), providers.VerdictAccepted},
		"wrong secret": {cred(pair("secretAccessKey", strings.Repeat("B", 40))), providers.VerdictRefused},
		"unknown key":  {cred(pair("accessKeyId", "AKIAUNKNOWN000000000")), providers.VerdictRefused},
		"wrong region": {cred(pair("region", "us-west-2")), providers.VerdictRefused},
	} {
		res := checker.Check(context.Background(), p, tc.c)
		if res.Verdict != tc.want {
			t.Errorf("%s: %+v", name, res)
		}
		noSecrets(t, res.Detail)
	}
	// Two checks reached Bedrock (the cases run in map order): the key
	// pair's, signed with a session, and the API key's, a bearer token.
	calls := s.Calls()
	var signed, bearer int
	for _, c := range calls {
		switch {
		case c.Operation != "ListFoundationModels":
		case c.AccessKeyID == "":
			bearer++
		case c.Session:
			signed++
		}
	}
	if len(calls) != 2 || signed != 1 || bearer != 1 {
		t.Errorf("calls %+v: the key pair's check is not made with a session", calls)
	}
}

// TestBedrockCheckUsesTheRole: a key pair that may only assume a role is
// checked with the role's session, as resolve hands it out; a role it may
// not assume is refused, an STS that fails is unreachable.
func TestBedrockCheckUsesTheRole(t *testing.T) {
	s := stub(t)
	s.DenyBedrock(testKeyID)
	p := bedrock(t)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{"bedrock": s.URL}, Transport: s.Client().Transport,
		Mint: providers.MintEnv{Endpoints: map[string]string{"sts": s.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		c    providers.Credential
		want string
	}{
		"the role":          {cred(pair("roleArn", testRole, "externalId", testExtID)), providers.VerdictAccepted},
		"the pair alone":    {cred(pair()), providers.VerdictRefused},
		"wrong external id": {cred(pair("roleArn", testRole, "externalId", "other-id")), providers.VerdictRefused},
	} {
		res := checker.Check(context.Background(), p, tc.c)
		if res.Verdict != tc.want {
			t.Errorf("%s: %+v", name, res)
		}
		noSecrets(t, res.Detail, testRole)
	}
	down, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{"bedrock": s.URL},
		Mint: providers.MintEnv{Endpoints: map[string]string{"sts": "http://127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := down.Check(context.Background(), p, cred(pair())); res.Verdict != providers.VerdictUnreachable {
		t.Errorf("STS down: %+v", res)
	}
}

// TestBedrockSDKAgainstTheStandIn: AWS's own Go client, unmodified, calls
// the stand-in with the session keybroker derived: Converse and
// ConverseStream work, so the stand-in checks signatures as AWS does.
func TestBedrockSDKAgainstTheStandIn(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	d, err := p.Derive(context.Background(), mintEnv(s), cred(pair("roleArn", testRole, "externalId", testExtID)))
	if err != nil {
		t.Fatal(err)
	}
	c := d.Credential
	client := bedrockruntime.New(bedrockruntime.Options{
		Region:       c.Field("region"),
		Credentials:  credentials.NewStaticCredentialsProvider(c.Field("accessKeyId"), c.Field("secretAccessKey"), c.Field("sessionToken")),
		BaseEndpoint: aws.String(s.URL),
		HTTPClient:   s.Client(),
		Retryer:      aws.NopRetryer{},
	})
	ctx := context.Background()
	msgs := []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hi there"}}}}
	out, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(testModel), Messages: msgs})
	if err != nil {
		t.Fatalf("Converse: %v", err)
	}
	msg, ok := out.Output.(*brtypes.ConverseOutputMemberMessage)
	if !ok || len(msg.Value.Content) != 1 {
		t.Fatalf("Converse output %#v", out.Output)
	}
	if text, _ := msg.Value.Content[0].(*brtypes.ContentBlockMemberText); text == nil || text.Value != "stand-in reply to: hi there" {
		t.Fatalf("Converse text %#v", msg.Value.Content[0])
	}

	stream, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(testProfile), Messages: msgs})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	events := stream.GetStream()
	var text strings.Builder
	var stop brtypes.StopReason
	for ev := range events.Events() {
		switch e := ev.(type) {
		case *brtypes.ConverseStreamOutputMemberContentBlockDelta:
			if d, ok := e.Value.Delta.(*brtypes.ContentBlockDeltaMemberText); ok {
				text.WriteString(d.Value)
			}
		case *brtypes.ConverseStreamOutputMemberMessageStop:
			stop = e.Value.StopReason
		}
	}
	if err := events.Close(); err != nil || events.Err() != nil {
		t.Fatalf("stream: %v %v", err, events.Err())
	}
	if text.String() != "stand-in reply to: hi there" || stop != brtypes.StopReasonEndTurn {
		t.Fatalf("ConverseStream gave %q, stop %q", text.String(), stop)
	}

	// The same client with the long-lived secret changed is refused as
	// AWS refuses it.
	bad := bedrockruntime.New(bedrockruntime.Options{Region: testRegion, BaseEndpoint: aws.String(s.URL), HTTPClient: s.Client(), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider(c.Field("accessKeyId"), strings.Repeat("C", 40), c.Field("sessionToken"))})
	_, err = bad.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(testModel), Messages: msgs})
	if err == nil || !strings.Contains(err.Error(), "signature we calculated does not match") {
		t.Fatalf("a wrong secret: %v", err)
	}
	calls := s.Calls()
	if len(calls) != 2 || calls[0].Operation != "Converse" || calls[1].Operation != "ConverseStream" || calls[1].Model != testProfile || !calls[1].Session {
		t.Fatalf("calls %+v", calls)
	}
}

func TestBedrockAuthorizeRefusesTheKeyPairOfARole(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse", strings.NewReader("{}"))
	err := bedrock(t).Authorize(r, cred(pair("roleArn", testRole)))
	if err == nil || r.Header.Get("Authorization") != "" {
		t.Fatalf("signed with the pair that only assumes the role: %v", err)
	}
	noSecrets(t, err.Error(), testKeyID, testRole)
}

func TestBedrockPreviewMasksTheSecretItHas(t *testing.T) {
	s := bedrock(t).Credential
	if got := s.Preview(cred(map[string]string{"region": testRegion, "bedrockApiKey": testAPIKey})); got != testAPIKey[:6]+"..."+testAPIKey[len(testAPIKey)-4:] {
		t.Errorf("API key preview %q", got)
	}
	if got := s.Preview(cred(pair())); got != testKeyID[:6]+"..."+testKeyID[len(testKeyID)-4:] {
		t.Errorf("key pair preview %q", got)
	}
}

func TestBedrockModelMap(t *testing.T) {
	c := cred(pair("modelMap", `{"claude":"`+testProfile+`"}`))
	if got := providers.BedrockModel(c, "claude"); got != testProfile {
		t.Errorf("mapped %s", got)
	}
	if got := providers.BedrockModel(c, testModel); got != testModel {
		t.Errorf("unmapped %s", got)
	}
}

// BenchmarkAuthorize: what the proxy adds per call to put a credential in
// a request with a 2 KiB body: a bearer header, and a SigV4 signature
// (body read and hashed, canonical request, HMAC chain).
func BenchmarkAuthorize(b *testing.B) {
	reg := providers.DefaultRegistry()
	openai, _ := reg.Lookup("openai")
	bed, _ := reg.Lookup("bedrock")
	session := cred(pair(providers.FieldSessionToken, strings.Repeat("T", 400)))
	body := strings.Repeat("x", 2048)
	for _, bc := range []struct {
		name string
		p    *providers.Provider
		c    providers.Credential
	}{{"bearer", openai, providers.APIKey("sk-bench-0123456789abcdef")}, {"sigv4", bed, session}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, _ := http.NewRequest(http.MethodPost, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				if err := bc.p.Authorize(r, bc.c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBedrockSDKThroughAReSigningProxy: the way the credential proxy will
// use Authorize. AWS's Go client, with the proxy as its endpoint and
// credentials of its own (which mean nothing to AWS), calls a reverse
// proxy that drops them and re-signs each request with keybroker's derived
// session for the stand-in: Converse, ConverseStream, InvokeModel and
// InvokeModelWithResponseStream work, the binary event streams pass
// through unchanged, and the caller's key id never reaches AWS.
func TestBedrockSDKThroughAReSigningProxy(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	d, err := p.Derive(context.Background(), mintEnv(s), cred(pair()))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(providers.BaseURLs{"bedrock": s.URL}.ProxyURL(p, d.Credential))
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = "" // the signed host is where the request goes
			if err := p.Authorize(pr.Out, d.Credential); err != nil {
				t.Errorf("authorize: %v", err)
			}
		},
		Transport: s.Client().Transport,
	})
	t.Cleanup(proxy.Close)
	client := bedrockruntime.New(bedrockruntime.Options{Region: testRegion, BaseEndpoint: aws.String(proxy.URL), Retryer: aws.NopRetryer{},
		Credentials: credentials.NewStaticCredentialsProvider("AKIACALLERSOWNKEY000", strings.Repeat("c", 40), "")})
	ctx := context.Background()
	msgs := []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "via the proxy"}}}}
	if _, err := client.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(testModel), Messages: msgs}); err != nil {
		t.Fatalf("Converse: %v", err)
	}
	stream, err := client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(testModel), Messages: msgs})
	if err != nil {
		t.Fatalf("ConverseStream: %v", err)
	}
	var text strings.Builder
	for ev := range stream.GetStream().Events() {
		if e, ok := ev.(*brtypes.ConverseStreamOutputMemberContentBlockDelta); ok {
			if d, ok := e.Value.Delta.(*brtypes.ContentBlockDeltaMemberText); ok {
				text.WriteString(d.Value)
			}
		}
	}
	if err := stream.GetStream().Err(); err != nil || text.String() != "stand-in reply to: via the proxy" {
		t.Fatalf("ConverseStream: %q %v", text.String(), err)
	}
	inv, err := client.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(testModel), ContentType: aws.String("application/json"),
		Body: []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)})
	if err != nil || !strings.Contains(string(inv.Body), "stand-in reply") {
		t.Fatalf("InvokeModel: %v", err)
	}
	rs, err := client.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(testModel),
		ContentType: aws.String("application/json"), Body: []byte(`{"messages":[]}`)})
	if err != nil {
		t.Fatalf("InvokeModelWithResponseStream: %v", err)
	}
	var chunks []string
	for ev := range rs.GetStream().Events() {
		if c, ok := ev.(*brtypes.ResponseStreamMemberChunk); ok {
			chunks = append(chunks, string(c.Value.Bytes))
		}
	}
	if err := rs.GetStream().Err(); err != nil || len(chunks) != 1 || !strings.Contains(chunks[0], "stand-in reply") {
		t.Fatalf("InvokeModelWithResponseStream: %q %v", chunks, err)
	}
	calls := s.Calls()
	if len(calls) != 4 {
		t.Fatalf("calls %+v", calls)
	}
	for _, c := range calls {
		if c.AccessKeyID != d.Credential.Field("accessKeyId") || !c.Session {
			t.Errorf("%s was not signed with keybroker's session: %+v", c.Operation, c)
		}
	}
}

// TestBedrockSignsEachSecretWithItsOwnKey: a call made with the real key
// pair, then one with the same access key id and another secret (a tenant
// who knows an access key id, which is no secret): the second is refused
// by AWS's check, however soon after the first, the same day, region and
// service (a signer shared by every credential signed it with the first's
// derived key).
func TestBedrockSignsEachSecretWithItsOwnKey(t *testing.T) {
	s := stub(t)
	p := bedrock(t)
	for i, tc := range []struct {
		c    providers.Credential
		want int
	}{
		{cred(pair()), http.StatusOK},
		{cred(pair("secretAccessKey", strings.Repeat("B", 40))), http.StatusForbidden},
		{cred(pair()), http.StatusOK},
		{cred(pair("secretAccessKey", strings.Repeat("C", 40))), http.StatusForbidden},
	} {
		r := converse(t, s, converseBody)
		if err := p.Authorize(r, tc.c); err != nil {
			t.Fatal(err)
		}
		if st, body := send(t, s, r); st != tc.want {
			t.Fatalf("call %d: %d %s, want %d", i, st, body, tc.want)
		}
	}
	if n := len(s.Calls()); n != 2 {
		t.Fatalf("%d calls reached the model, want the 2 with the real secret", n)
	}
}
