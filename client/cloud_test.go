package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// TestTheKindsAreThoseOfProviders: the client's names of the cloud kinds
// are the ones the server writes.
func TestTheKindsAreThoseOfProviders(t *testing.T) {
	for got, want := range map[string]string{client.KindAWSBedrock: providers.KindAWSBedrock,
		client.KindAzureOpenAI: providers.KindAzureOpenAI, client.KindGCPVertex: providers.KindGCPVertex} {
		if got != want {
			t.Errorf("client kind %q, providers kind %q", got, want)
		}
	}
}

// decode reads a resolve answer as the client does (the JSON of the wire).
func decode(t *testing.T, answer string) client.ResolveResponse {
	t.Helper()
	var r client.ResolveResponse
	if err := json.Unmarshal([]byte(answer), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// prints is every way a value reaches a log by mistake: each fmt verb,
// slog's text and JSON handlers, and (withJSON) encoding/json.
func prints(t *testing.T, v any, withJSON bool) []string {
	t.Helper()
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v"} {
		out = append(out, fmt.Sprintf(verb, v))
	}
	out = append(out, fmt.Sprint(v), fmt.Sprintln(v), fmt.Sprintf("%v", []any{v}), fmt.Sprintf("%+v", struct{ C any }{v}))
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("resolved", "credential", v)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("resolved", "credential", v)
	out = append(out, b.String())
	if !withJSON {
		return out
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%T): %v", v, err)
	}
	out = append(out, string(js))
	return out
}

// noSecret fails when a print of v, or its JSON, shows one of secrets.
func noSecret(t *testing.T, v any, secrets ...string) {
	t.Helper()
	noSecretIn(t, prints(t, v, true), v, secrets...)
}

func noSecretIn(t *testing.T, printed []string, v any, secrets ...string) {
	t.Helper()
	for _, p := range printed {
		for _, s := range secrets {
			if s != "" && strings.Contains(p, s) {
				t.Fatalf("a print of %T shows a secret: %s", v, p)
			}
		}
	}
}

const (
	sessionSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
	sessionToken  = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789abcdef"
	bedrockAPIKey = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLTAxMjM0NTY3ODk="
	azureToken    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.azure-access-token-example"
	azureAPIKey   = "0123456789abcdef0123456789abcdef"
	vertexToken   = "ya29.c.vertex-access-token-example-0123456789abcdef"
)

func TestBedrockView(t *testing.T) {
	r := decode(t, `{"apiKey":"","kind":"aws_bedrock","expiresAt":"2031-01-02T03:04:05Z",
		"credential":{"region":"eu-west-1","accessKeyId":"ASIAEXAMPLE0123456789","secretAccessKey":"`+sessionSecret+`",
		"sessionToken":"`+sessionToken+`","modelMap":{"claude-sonnet":"eu.anthropic.claude-sonnet-4-20250514-v1:0"}},
		"source":"byok","isBYOK":true,"version":1,"scope":"workspace","keyId":"prod","resolutionId":"res_1"}`)
	b, err := r.Bedrock()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	if b.Region != "eu-west-1" || b.AccessKeyID != "ASIAEXAMPLE0123456789" || b.SecretAccessKey != sessionSecret || b.SessionToken != sessionToken ||
		b.BedrockAPIKey != "" || !b.ExpiresAt.Equal(want) || b.ModelMap["claude-sonnet"] != "eu.anthropic.claude-sonnet-4-20250514-v1:0" {
		t.Fatalf("Bedrock() = %#v (fields %q %q %q %q %v)", b, b.Region, b.AccessKeyID, b.SessionToken, b.BedrockAPIKey, b.ExpiresAt)
	}
	if got := b.ModelID("claude-sonnet"); got != "eu.anthropic.claude-sonnet-4-20250514-v1:0" {
		t.Errorf("ModelID(claude-sonnet) = %q", got)
	}
	if got := b.ModelID("amazon.nova-lite-v1:0"); got != "amazon.nova-lite-v1:0" {
		t.Errorf("ModelID of an unmapped model = %q, want the model", got)
	}
	if got := b.RuntimeEndpoint(); got != "https://bedrock-runtime.eu-west-1.amazonaws.com" {
		t.Errorf("RuntimeEndpoint() = %q", got)
	}
	noSecret(t, b, sessionSecret, sessionToken, "ASIAEXAMPLE0123456789")
	// What the prints show: the non-secret fields and the masks.
	s := b.String()
	for _, shown := range []string{"eu-west-1", providers.MaskKey(sessionSecret), providers.MaskKey(sessionToken), "claude-sonnet", "2031-01-02T03:04:05Z"} {
		if !strings.Contains(s, shown) {
			t.Errorf("String() = %s, lacks %q", s, shown)
		}
	}
	var js map[string]any
	if err := json.Unmarshal(must(json.Marshal(b)), &js); err != nil || js["region"] != "eu-west-1" || js["secretAccessKey"] != providers.MaskKey(sessionSecret) {
		t.Errorf("MarshalJSON: %v (%v)", js, err)
	}
	// The answer printed or logged as a whole shows none either (its
	// JSON is the wire's, the credential in it).
	noSecretIn(t, prints(t, r, false), r, sessionSecret, sessionToken)

	// A Bedrock API key: no session, no expiry.
	r = decode(t, `{"apiKey":"","kind":"aws_bedrock","credential":{"region":"us-east-1","bedrockApiKey":"`+bedrockAPIKey+`"},"keyId":"k","resolutionId":"res_2"}`)
	if b, err = r.Bedrock(); err != nil || b.BedrockAPIKey != bedrockAPIKey || b.AccessKeyID != "" || !b.ExpiresAt.IsZero() || b.ModelMap != nil {
		t.Fatalf("Bedrock() of an API key answer = %#v, %v", b, err)
	}
	noSecret(t, b, bedrockAPIKey)
}

func TestAzureOpenAIView(t *testing.T) {
	r := decode(t, `{"apiKey":"","kind":"azure_openai","expiresAt":"2031-01-02T03:04:05Z",
		"credential":{"endpoint":"https://acme-prod.openai.azure.com","apiVersion":"2024-10-21",
		"deployments":{"gpt-4o":"acme-gpt-4o","text-embedding-3-small":"acme-embed"},"accessToken":"`+azureToken+`"},
		"keyId":"prod","resolutionId":"res_1"}`)
	a, err := r.AzureOpenAI()
	if err != nil {
		t.Fatal(err)
	}
	if a.Endpoint != "https://acme-prod.openai.azure.com" || a.APIVersion != "2024-10-21" || a.AccessToken != azureToken || a.APIKey != "" || a.ExpiresAt.IsZero() {
		t.Fatalf("AzureOpenAI() = %#v", a)
	}
	if d, ok := a.Deployment("gpt-4o"); !ok || d != "acme-gpt-4o" {
		t.Errorf("Deployment(gpt-4o) = %q, %v", d, ok)
	}
	if d, ok := a.Deployment("o3"); ok || d != "" {
		t.Errorf("Deployment of an unmapped model = %q, %v; want none", d, ok)
	}
	noSecret(t, a, azureToken)
	if s := a.String(); !strings.Contains(s, "acme-prod.openai.azure.com") || !strings.Contains(s, "acme-embed") || !strings.Contains(s, providers.MaskKey(azureToken)) {
		t.Errorf("String() = %s: the endpoint, the deployments and the token's mask are shown", s)
	}

	// The resource's API key: handed out as it is, without expiry.
	r = decode(t, `{"apiKey":"","kind":"azure_openai","credential":{"endpoint":"https://acme.openai.azure.com","apiVersion":"2024-10-21","apiKey":"`+azureAPIKey+`"},"keyId":"k","resolutionId":"r"}`)
	if a, err = r.AzureOpenAI(); err != nil || a.APIKey != azureAPIKey || a.AccessToken != "" || !a.ExpiresAt.IsZero() {
		t.Fatalf("AzureOpenAI() of an API key answer = %#v, %v", a, err)
	}
	noSecret(t, a, azureAPIKey)
}

func TestVertexView(t *testing.T) {
	r := decode(t, `{"apiKey":"","kind":"gcp_vertex","expiresAt":"2031-01-02T03:04:05Z",
		"credential":{"project":"acme-ml","location":"europe-west4","accessToken":"`+vertexToken+`"},"keyId":"prod","resolutionId":"res_1"}`)
	v, err := r.Vertex()
	if err != nil {
		t.Fatal(err)
	}
	if v.Project != "acme-ml" || v.Location != "europe-west4" || v.AccessToken != vertexToken || v.ExpiresAt.IsZero() {
		t.Fatalf("Vertex() = %#v", v)
	}
	if got := v.BaseURL(); got != "https://europe-west4-aiplatform.googleapis.com" {
		t.Errorf("BaseURL() = %q", got)
	}
	v.Location = "global"
	if got := v.BaseURL(); got != "https://aiplatform.googleapis.com" {
		t.Errorf("BaseURL() of global = %q", got)
	}
	noSecret(t, v, vertexToken)
	if s := v.String(); !strings.Contains(s, "acme-ml") || !strings.Contains(s, providers.MaskKey(vertexToken)) {
		t.Errorf("String() = %s", s)
	}
	// An exposed key file shows nothing of itself, not even its edges.
	v.ServiceAccountJSON = `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n","client_email":"sa@acme-ml.iam.gserviceaccount.com"}`
	noSecret(t, v, vertexToken, "PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", `{"type"`, `.com"}`)
}

// TestAViewOfAnotherKindIsAnError: asking a view of the wrong kind is an
// error wrapping ErrOtherKind that names the kind the answer holds; a
// credential lacking what its kind needs is ErrBadCredential naming the
// field, never a value.
func TestAViewOfAnotherKindIsAnError(t *testing.T) {
	apiKey := decode(t, `{"apiKey":"sk-proj-0123456789abcdef0123","kind":"api_key","keyId":"k","resolutionId":"r"}`)
	old := decode(t, `{"apiKey":"sk-proj-0123456789abcdef0123","keyId":"k","resolutionId":"r"}`) // before kinds
	vertex := decode(t, `{"apiKey":"","kind":"gcp_vertex","credential":{"project":"acme-ml","location":"us-central1","accessToken":"`+vertexToken+`"},"keyId":"k","resolutionId":"r"}`)
	views := map[string]func(client.ResolveResponse) error{
		"aws_bedrock":  func(r client.ResolveResponse) error { _, err := r.Bedrock(); return err },
		"azure_openai": func(r client.ResolveResponse) error { _, err := r.AzureOpenAI(); return err },
		"gcp_vertex":   func(r client.ResolveResponse) error { _, err := r.Vertex(); return err },
	}
	for want, view := range views {
		for got, r := range map[string]client.ResolveResponse{"api_key": apiKey, "api_key ": old, "gcp_vertex": vertex} {
			got = strings.TrimSpace(got)
			err := view(r)
			if got == want {
				if err != nil {
					t.Errorf("%s view of a %s answer: %v", want, got, err)
				}
				continue
			}
			if !errors.Is(err, client.ErrOtherKind) || !strings.Contains(err.Error(), `"`+got+`"`) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s view of a %s answer: %v; want ErrOtherKind naming both kinds", want, got, err)
			}
			if err != nil && (strings.Contains(err.Error(), vertexToken) || strings.Contains(err.Error(), "sk-proj-")) {
				t.Errorf("the error shows a secret: %v", err)
			}
		}
	}

	for _, c := range []struct{ answer, field string }{
		{`{"kind":"aws_bedrock","credential":{"accessKeyId":"ASIAEXAMPLE0123456789","secretAccessKey":"` + sessionSecret + `"}}`, "region"},
		{`{"kind":"aws_bedrock","credential":{"region":"eu-west-1","accessKeyId":"ASIAEXAMPLE0123456789"}}`, "secretAccessKey"},
		{`{"kind":"aws_bedrock","credential":{"region":"eu-west-1","bedrockApiKey":"` + bedrockAPIKey + `","modelMap":{"a":1}}}`, "modelMap"},
		{`{"kind":"azure_openai","credential":{"apiVersion":"2024-10-21","accessToken":"` + azureToken + `"}}`, "endpoint"},
		{`{"kind":"azure_openai","credential":{"endpoint":"https://a.openai.azure.com","deployments":"gpt-4o"}}`, "deployments"},
		{`{"kind":"gcp_vertex","credential":{"project":"acme-ml","location":"us-central1"}}`, "accessToken"},
		{`{"kind":"gcp_vertex","credential":{"project":["acme-ml"],"location":"us-central1","accessToken":"` + vertexToken + `"}}`, "project"},
	} {
		r := decode(t, c.answer)
		err := views[r.Kind](r)
		if !errors.Is(err, client.ErrBadCredential) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v; want ErrBadCredential naming %s", c.answer, err, c.field)
			continue
		}
		for _, s := range []string{sessionSecret, bedrockAPIKey, azureToken, vertexToken} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error shows a secret: %v", err)
			}
		}
	}
}

// TestTypedViewsOfRealAnswers: keys of the three clouds written through a
// real keybroker (Vault, PostgreSQL, the router), resolved by a resolver
// token, the derived credentials minted at stand-ins of STS, Entra and
// Google's token service that check the long-lived secret: each typed view
// reads what was minted, and no print of it shows a secret.
func TestTypedViewsOfRealAnswers(t *testing.T) {
	ctx := context.Background()
	const region = "eu-west-1"
	aws := awsstub.New(t, region)
	awsID, awsSecret := "AKIA"+strings.ToUpper(newOpenAIKey(t)[8:24]), "typedViewSecret/"+newOpenAIKey(t)[8:32]
	aws.AddKey(awsID, awsSecret)

	const tenant, clientID = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	clientSecret := "Q~typed." + newOpenAIKey(t)[8:40]
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(tenant, clientID, clientSecret)

	google := cloudstub.NewGoogle(t)
	const saEmail, project = "broker@kb-typed-project.iam.gserviceaccount.com", "kb-typed-project"
	sa, saKey := cloudstub.ServiceAccountFile(t, saEmail, project, "https://oauth2.googleapis.com/token")
	google.AddServiceAccount(saEmail, project, "https://oauth2.googleapis.com/token", &saKey.PublicKey)

	s := kbtest.Start(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintHTTP = http.DefaultClient
		c.MintEndpoints = map[string]map[string]string{"bedrock": {"sts": aws.URL}, "azure-openai": {"entra": entra.URL + "/"}, "vertex": {"google_token": google.TokenURL()}}
	}})
	put := func(provider string, credential map[string]any) {
		t.Helper()
		ref := client.KeyRef{Scope: client.Workspace("ws1"), Provider: provider, KeyID: "main"}
		if _, _, err := s.API.PutCredential(ctx, ref, credential, 0, false); err != nil {
			t.Fatalf("put a %s key: %v", provider, err)
		}
	}
	put("bedrock", map[string]any{"region": region, "accessKeyId": awsID, "secretAccessKey": awsSecret,
		"modelMap": map[string]string{"claude-sonnet": "eu.anthropic.claude-sonnet-4-20250514-v1:0"}})
	put("azure-openai", map[string]any{"endpoint": "https://kb-typed.openai.azure.com", "apiVersion": "2024-10-21",
		"deployments": map[string]string{"gpt-4o": "gpt4o-prod"}, "tenantId": tenant, "clientId": clientID, "clientSecret": clientSecret})
	put("vertex", map[string]any{"project": project, "location": "europe-west4", "serviceAccountJson": sa})
	longLived := []string{awsSecret, awsID, clientSecret, "PRIVATE KEY"}

	res, err := s.Resolver.Resolve(ctx, "ws1", "bedrock")
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.Bedrock()
	if err != nil {
		t.Fatal(err)
	}
	if b.Region != region || !aws.IsSession(b.AccessKeyID) || b.SecretAccessKey == "" || b.SessionToken == "" || b.ExpiresAt.IsZero() ||
		b.ModelID("claude-sonnet") != "eu.anthropic.claude-sonnet-4-20250514-v1:0" {
		t.Fatalf("the Bedrock view of a minted session: %v (a session: %v)", b, aws.IsSession(b.AccessKeyID))
	}
	if _, err := res.AzureOpenAI(); !errors.Is(err, client.ErrOtherKind) {
		t.Errorf("the Azure view of a Bedrock answer: %v", err)
	}
	noSecret(t, b, append(longLived, b.SecretAccessKey, b.SessionToken, b.AccessKeyID)...)

	if res, err = s.Resolver.Resolve(ctx, "ws1", "azure-openai"); err != nil {
		t.Fatal(err)
	}
	a, err := res.AzureOpenAI()
	if err != nil {
		t.Fatal(err)
	}
	issued := entra.Issued()
	if a.Endpoint != "https://kb-typed.openai.azure.com" || a.APIVersion != "2024-10-21" || len(issued) != 1 || a.AccessToken != issued[0] ||
		a.ClientSecret != "" || a.ExpiresAt.IsZero() {
		t.Fatalf("the Azure view of a minted token: %v", a)
	}
	if d, ok := a.Deployment("gpt-4o"); !ok || d != "gpt4o-prod" {
		t.Errorf("Deployment(gpt-4o) = %q, %v", d, ok)
	}
	noSecret(t, a, append(longLived, a.AccessToken)...)

	if res, err = s.Resolver.Resolve(ctx, "ws1", "vertex"); err != nil {
		t.Fatal(err)
	}
	v, err := res.Vertex()
	if err != nil {
		t.Fatal(err)
	}
	issued = google.Issued()
	if v.Project != project || v.Location != "europe-west4" || len(issued) != 1 || v.AccessToken != issued[0] || v.ServiceAccountJSON != "" ||
		v.ExpiresAt.IsZero() || v.BaseURL() != "https://europe-west4-aiplatform.googleapis.com" {
		t.Fatalf("the Vertex view of a minted token: %v", v)
	}
	if _, err := res.Bedrock(); !errors.Is(err, client.ErrOtherKind) || !strings.Contains(err.Error(), "gcp_vertex") {
		t.Errorf("the Bedrock view of a Vertex answer: %v", err)
	}
	noSecret(t, v, append(longLived, v.AccessToken)...)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestTypedViewsOfExposedLongLivedCredentials: where the operator exposes
// the providers' long-lived credentials, resolve hands the key itself out
// and the views carry its fields (the role, the Entra client, the key
// file), still printing none of its secrets.
func TestTypedViewsOfExposedLongLivedCredentials(t *testing.T) {
	ctx := context.Background()
	s := kbtest.Start(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.ExposeLongLived = []string{"bedrock", "azure-openai", "vertex"}
	}})
	const role, extID = "arn:aws:iam::123456789012:role/kb-bedrock", "kb-external-id-0123456789"
	awsID, awsSecret := "AKIA"+strings.ToUpper(newOpenAIKey(t)[8:24]), "typedViewSecret/"+newOpenAIKey(t)[8:32]
	const tenant, clientID = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	clientSecret := "Q~typed." + newOpenAIKey(t)[8:40]
	sa, _ := cloudstub.ServiceAccountFile(t, "broker@kb-typed-project.iam.gserviceaccount.com", "kb-typed-project", "https://oauth2.googleapis.com/token")
	var saFields map[string]string
	if err := json.Unmarshal([]byte(sa), &saFields); err != nil {
		t.Fatal(err)
	}
	for provider, credential := range map[string]map[string]any{
		"bedrock": {"region": "eu-west-1", "accessKeyId": awsID, "secretAccessKey": awsSecret, "roleArn": role, "externalId": extID},
		"azure-openai": {"endpoint": "https://kb-typed.openai.azure.com", "apiVersion": "2024-10-21",
			"tenantId": tenant, "clientId": clientID, "clientSecret": clientSecret},
		"vertex": {"project": "kb-typed-project", "location": "global", "serviceAccountJson": sa},
	} {
		ref := client.KeyRef{Scope: client.Workspace("ws1"), Provider: provider, KeyID: "main"}
		if _, _, err := s.API.PutCredential(ctx, ref, credential, 0, false); err != nil {
			t.Fatalf("put a %s key: %v", provider, err)
		}
	}
	secrets := []string{awsSecret, awsID, clientSecret, saFields["private_key_id"], "PRIVATE KEY"}

	res, err := s.Resolver.Resolve(ctx, "ws1", "bedrock")
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.Bedrock()
	if err != nil || b.AccessKeyID != awsID || b.SecretAccessKey != awsSecret || b.RoleARN != role || b.ExternalID != extID || b.SessionToken != "" || !b.ExpiresAt.IsZero() {
		t.Fatalf("the Bedrock view of an exposed key pair: %v, %v", b, err)
	}
	noSecret(t, b, secrets...)
	if s := b.String(); !strings.Contains(s, role) || !strings.Contains(s, extID) {
		t.Errorf("String() = %s: the role and the external id are no secrets, and are shown", s)
	}

	if res, err = s.Resolver.Resolve(ctx, "ws1", "azure-openai"); err != nil {
		t.Fatal(err)
	}
	a, err := res.AzureOpenAI()
	if err != nil || a.TenantID != tenant || a.ClientID != clientID || a.ClientSecret != clientSecret || a.AccessToken != "" || !a.ExpiresAt.IsZero() {
		t.Fatalf("the Azure view of exposed client credentials: %v, %v", a, err)
	}
	noSecret(t, a, secrets...)

	if res, err = s.Resolver.Resolve(ctx, "ws1", "vertex"); err != nil {
		t.Fatal(err)
	}
	v, err := res.Vertex()
	if err != nil || v.ServiceAccountJSON != sa || v.AccessToken != "" || v.BaseURL() != "https://aiplatform.googleapis.com" {
		t.Fatalf("the Vertex view of an exposed key file: %v, %v", v, err)
	}
	noSecret(t, v, secrets...)
}
