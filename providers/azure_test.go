package providers_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/providers"
)

const (
	azureEndpoint = "https://kb-test.openai.azure.com"
	azureKey      = "0123456789abcdef0123456789abcdefAZUREkey"
	azureTenant   = "11111111-2222-3333-4444-555555555555"
	azureClient   = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	azureSecret   = "Q~stub.client-secret_value~0123456789"
	azureDeploys  = `{"gpt-4o":"gpt4o-prod","text-embedding-3-small":"embed-small"}`
)

func azureProvider(t *testing.T) *providers.Provider {
	t.Helper()
	p, ok := providers.DefaultRegistry().Lookup("azure-openai")
	if !ok {
		t.Fatal("no azure-openai provider")
	}
	return p
}

func azureCred(fields map[string]string) providers.Credential {
	m := map[string]string{providers.FieldEndpoint: azureEndpoint, providers.FieldAPIVersion: "2024-10-21", providers.FieldDeployments: azureDeploys}
	for k, v := range fields {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return providers.New(providers.KindAzureOpenAI, m)
}

func azureKeyCred() providers.Credential {
	return azureCred(map[string]string{providers.FieldAPIKey: azureKey})
}

func azureEntraCred(secret string) providers.Credential {
	return azureCred(map[string]string{providers.FieldTenantID: azureTenant, providers.FieldClientID: azureClient, providers.FieldClientSecret: secret})
}

func TestAzureValidationNamesTheFieldNeverTheValue(t *testing.T) {
	p := azureProvider(t)
	for name, c := range map[string]providers.Credential{
		"api key":                  azureKeyCred(),
		"entra":                    azureEntraCred(azureSecret),
		"cognitiveservices host":   azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: "https://kb-test.cognitiveservices.azure.com/"}),
		"preview api version":      azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldAPIVersion: "2025-04-01-preview"}),
		"no deployments":           azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldDeployments: ""}),
		"32 hex digits (old keys)": azureCred(map[string]string{providers.FieldAPIKey: "0123456789abcdef0123456789abcdef"}),
	} {
		if err := p.Validate(c); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, tc := range []struct {
		name, field, value string
		cred               providers.Credential
	}{
		{"http endpoint", "endpoint", "http://kb-test.openai.azure.com", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: "http://kb-test.openai.azure.com"})},
		{"another host", "endpoint", "https://kb-test.example.com", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: "https://kb-test.example.com"})},
		{"a look-alike host", "endpoint", "openai.azure.com.evil.example", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: "https://kb.openai.azure.com.evil.example"})},
		{"a path", "endpoint", "/openai/deployments", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: azureEndpoint + "/openai/deployments"})},
		{"user in endpoint", "endpoint", "me:pw", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: "https://me:pw@kb-test.openai.azure.com"})},
		{"api version not a date", "apiVersion", "latest", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldAPIVersion: "latest"})},
		{"month 13", "apiVersion", "2024-13-01", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldAPIVersion: "2024-13-01"})},
		{"deployments not an object", "deployments", "gpt4o-prod", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldDeployments: `["gpt4o-prod"]`})},
		{"a deployment name with a space", "deployments", "my deploy", azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldDeployments: `{"gpt-4o":"my deploy"}`})},
		{"key with a space", "apiKey", azureKey, azureCred(map[string]string{providers.FieldAPIKey: azureKey + " x"})},
		{"tenant not a UUID", "tenantId", "contoso.onmicrosoft.com", azureCred(map[string]string{providers.FieldTenantID: "contoso.onmicrosoft.com", providers.FieldClientID: azureClient, providers.FieldClientSecret: azureSecret})},
		{"secret with a space", "clientSecret", azureSecret, azureCred(map[string]string{providers.FieldTenantID: azureTenant, providers.FieldClientID: azureClient, providers.FieldClientSecret: "Q~stub client-secret_value~0123456789"})},
		{"both ways", "apiKey", azureSecret, azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldTenantID: azureTenant, providers.FieldClientID: azureClient, providers.FieldClientSecret: azureSecret})},
		{"neither way", "apiKey", azureEndpoint + "x", azureCred(nil)},
		{"entra without its secret", "clientSecret", azureClient + "x", azureCred(map[string]string{providers.FieldTenantID: azureTenant, providers.FieldClientID: azureClient})},
		{"no endpoint", "endpoint", azureKey, azureCred(map[string]string{providers.FieldAPIKey: azureKey, providers.FieldEndpoint: ""})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(tc.cred)
			if !errors.Is(err, providers.ErrInvalidKey) {
				t.Fatalf("not refused: %v", err)
			}
			if reason := providers.PublicReason(err); !strings.Contains(reason, tc.field) {
				t.Errorf("the reason %q does not name %s", reason, tc.field)
			}
			assertNoSecret(t, err.Error(), tc.value, azureKey, azureSecret)
		})
	}
}

func TestAzureAPIKeyDerivesToItself(t *testing.T) {
	p := azureProvider(t)
	entra := cloudstub.NewEntra(t)
	c := azureKeyCred()
	d, err := p.Derive(context.Background(), providers.MintEnv{HTTP: http.DefaultClient, Endpoints: map[string]string{"entra": entra.URL}}, c)
	if err != nil || !d.Credential.Equal(c) || !d.ExpiresAt.IsZero() || entra.Mints() != 0 {
		t.Fatalf("derive of an API key: %v, expires %v, %d mints", err, d.ExpiresAt, entra.Mints())
	}
	if got, ok := providers.AzureDeployment(d.Credential, "gpt-4o"); !ok || got != "gpt4o-prod" {
		t.Fatalf("deployment of gpt-4o: %q %v", got, ok)
	}
	if _, ok := providers.AzureDeployment(d.Credential, "gpt-5"); ok {
		t.Fatal("a model the map does not name has a deployment")
	}
}

// azureCall sends body to the stand-in at path with credential c put in
// by the provider's Authorize.
func azureCall(t *testing.T, p *providers.Provider, srv *cloudstub.AzureOpenAI, method, path, body string, c providers.Credential) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := p.Authorize(req, c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAzureEntraMintAndCalls(t *testing.T) {
	ctx := context.Background()
	p := azureProvider(t)
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(azureTenant, azureClient, azureSecret)
	srv := cloudstub.NewAzureOpenAI(t, azureKey, entra, map[string]string{"gpt4o-prod": "gpt-4o", "embed-small": "text-embedding-3-small"})
	env := providers.MintEnv{HTTP: http.DefaultClient, Endpoints: map[string]string{"entra": entra.URL + "/"}}

	d, err := p.Derive(ctx, env, azureEntraCred(azureSecret))
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	got := d.Credential.Reveal()
	if len(got) != 4 || got[providers.FieldAccessToken] == "" || got[providers.FieldEndpoint] != azureEndpoint ||
		got[providers.FieldAPIVersion] != "2024-10-21" || got[providers.FieldDeployments] != azureDeploys || d.ExpiresAt.IsZero() {
		t.Fatalf("derived %v, expires %v", d.Credential, d.ExpiresAt)
	}
	if entra.Mints() != 1 {
		t.Fatalf("%d mints", entra.Mints())
	}
	chat := `{"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []providers.Credential{d.Credential, azureKeyCred()} {
		// Azure's own paths: the caller's api-version passes, and one is
		// added from the credential when the caller gave none.
		for _, path := range []string{"/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview", "/openai/deployments/gpt4o-prod/chat/completions"} {
			if status, body := azureCall(t, p, srv, "POST", path, chat, c); status != 200 || !strings.Contains(body, `"model":"gpt-4o"`) {
				t.Errorf("%s: %d %s", path, status, body)
			}
		}
		if status, body := azureCall(t, p, srv, "POST", "/openai/deployments/embed-small/embeddings", `{"input":"hi"}`, c); status != 200 || !strings.Contains(body, `"embedding"`) {
			t.Errorf("embeddings: %d %s", status, body)
		}
		// The OpenAI-style path names the deployment the map gives.
		dep, _ := providers.AzureDeployment(c, "gpt-4o")
		if status, body := azureCall(t, p, srv, "POST", "/openai/v1/chat/completions", `{"model":"`+dep+`","messages":[{"role":"user","content":"hi"}]}`, c); status != 200 || !strings.Contains(body, "chat.completion") {
			t.Errorf("v1 chat: %d %s", status, body)
		}
		if status, _ := azureCall(t, p, srv, "POST", "/openai/deployments/nope/chat/completions", chat, c); status != 404 {
			t.Errorf("an unknown deployment: %d", status)
		}
	}
	// Authorize adds no api-version on /openai/v1/ paths, and keeps the
	// caller's elsewhere.
	req, _ := http.NewRequest("POST", "https://kb-test.openai.azure.com/openai/v1/chat/completions", nil)
	if err := p.Authorize(req, azureKeyCred()); err != nil || req.URL.RawQuery != "" || req.Header.Get("Api-Key") != azureKey {
		t.Fatalf("v1: %v %q", err, req.URL.RawQuery)
	}
	req, _ = http.NewRequest("POST", "https://kb-test.openai.azure.com/openai/deployments/x/chat/completions?api-version=2023-05-15", nil)
	if err := p.Authorize(req, d.Credential); err != nil || req.URL.Query().Get("api-version") != "2023-05-15" || req.Header.Get("Api-Key") != "" ||
		req.Header.Get("Authorization") != "Bearer "+got[providers.FieldAccessToken] {
		t.Fatalf("deployments: %v %q %v", err, req.URL.RawQuery, req.Header)
	}
	// The stand-in refuses a wrong key and a token its Entra did not issue,
	// and a call without api-version on Azure's paths.
	wrong := azureCred(map[string]string{providers.FieldAPIKey: strings.Repeat("f", 32)})
	forged := azureCred(map[string]string{providers.FieldAccessToken: "eyJ0eXAi.forged"})
	for _, c := range []providers.Credential{wrong, forged} {
		if status, _ := azureCall(t, p, srv, "POST", "/openai/deployments/gpt4o-prod/chat/completions", chat, c); status != 401 {
			t.Errorf("refused credential: %d", status)
		}
	}
	noVersion := providers.New(providers.KindAzureOpenAI, map[string]string{providers.FieldAPIKey: azureKey})
	if status, _ := azureCall(t, p, srv, "POST", "/openai/deployments/gpt4o-prod/chat/completions", chat, noVersion); status != 404 {
		t.Errorf("no api-version: %d", status)
	}
	// The long-lived Entra credential is never sent as it is.
	req, _ = http.NewRequest("GET", srv.URL, nil)
	if err := p.Authorize(req, azureEntraCred(azureSecret)); err == nil {
		t.Fatal("the client secret was authorized as is")
	}
}

func TestAzureEntraRefusalsQuoteNoSecret(t *testing.T) {
	ctx := context.Background()
	p := azureProvider(t)
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(azureTenant, azureClient, azureSecret)
	env := providers.MintEnv{HTTP: http.DefaultClient, Endpoints: map[string]string{"entra": entra.URL}}
	for _, tc := range []struct {
		name   string
		cred   providers.Credential
		status int
		code   string
	}{
		{"wrong secret", azureEntraCred("Q~a-wrong-secret-0123456789"), 401, "invalid_client"},
		{"unknown client", azureCred(map[string]string{providers.FieldTenantID: azureTenant, providers.FieldClientID: "99999999-bbbb-cccc-dddd-eeeeeeeeeeee", providers.FieldClientSecret: azureSecret}), 400, "unauthorized_client"},
		{"unknown tenant", azureCred(map[string]string{providers.FieldTenantID: "99999999-2222-3333-4444-555555555555", providers.FieldClientID: azureClient, providers.FieldClientSecret: azureSecret}), 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Derive(ctx, env, tc.cred)
			var me *providers.MintError
			if !errors.As(err, &me) || !me.Refused || me.Status != tc.status || me.Code != tc.code || me.Service != "entra" {
				t.Fatalf("%#v", err)
			}
			assertNoSecret(t, err.Error(), azureSecret, "Q~a-wrong-secret-0123456789")
			if strings.Contains(err.Error(), "AADSTS") {
				t.Fatalf("the error quotes Entra's description: %v", err)
			}
		})
	}
	if entra.Mints() != 0 {
		t.Fatalf("%d tokens issued", entra.Mints())
	}
}

func TestAzureCheck(t *testing.T) {
	ctx := context.Background()
	p := azureProvider(t)
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(azureTenant, azureClient, azureSecret)
	srv := cloudstub.NewAzureOpenAI(t, azureKey, entra, map[string]string{"gpt4o-prod": "gpt-4o"})
	c, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"azure-openai": srv.URL},
		Mint: providers.MintEnv{Endpoints: map[string]string{"entra": entra.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, cred := range map[string]providers.Credential{"api key": azureKeyCred(), "entra": azureEntraCred(azureSecret)} {
		if r := c.Check(ctx, p, cred); r.Verdict != providers.VerdictAccepted || r.Status != 200 {
			t.Errorf("%s: %+v", name, r)
		}
	}
	for name, cred := range map[string]providers.Credential{
		"wrong key":    azureCred(map[string]string{providers.FieldAPIKey: strings.Repeat("f", 32)}),
		"wrong secret": azureEntraCred("Q~a-wrong-secret-0123456789"),
	} {
		r := c.Check(ctx, p, cred)
		if r.Verdict != providers.VerdictRefused {
			t.Errorf("%s: %+v", name, r)
		}
		assertNoSecret(t, r.Detail, azureSecret, "Q~a-wrong-secret-0123456789", strings.Repeat("f", 32))
	}
	if srv.Calls() != 2 {
		t.Errorf("the resource served %d checks", srv.Calls())
	}
}

// The preview of an Entra credential is its client secret's, masked (the
// first secret field it has, not the absent apiKey).
func TestAzurePreviewOfEntraCredentials(t *testing.T) {
	p := azureProvider(t)
	if got, want := p.Credential.Preview(azureEntraCred(azureSecret)), providers.MaskKey(azureSecret); got != want || strings.Contains(got, azureSecret) {
		t.Fatalf("preview %q, want %q", got, want)
	}
	if got := p.Credential.Preview(azureKeyCred()); got != providers.MaskKey(azureKey) {
		t.Fatalf("preview of a key %q", got)
	}
}
