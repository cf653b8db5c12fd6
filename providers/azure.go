package providers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Azure OpenAI: a resource's endpoint, an API version, a map of model →
// deployment, and either the resource's API key (sent as api-key) or
// Entra ID client credentials, from which keybroker mints an access token
// (sent as a bearer token; the client secret never leaves keybroker).

// KindAzureOpenAI is the credential kind of Azure OpenAI.
const KindAzureOpenAI = "azure_openai"

// The fields of an azure_openai credential. The derived credential of
// Entra client credentials has endpoint, apiVersion, deployments and
// accessToken; that of an API key is the credential itself.
const (
	FieldEndpoint     = "endpoint"
	FieldAPIVersion   = "apiVersion"
	FieldDeployments  = "deployments"
	FieldTenantID     = "tenantId"
	FieldClientID     = "clientId"
	FieldClientSecret = "clientSecret"
)

// AzureScope is the scope of the Entra tokens keybroker mints.
const AzureScope = "https://cognitiveservices.azure.com/.default"

// entraAuthority is Entra ID's public token service; the tenant's path
// follows it.
const entraAuthority = "https://login.microsoftonline.com"

func init() {
	uuid := keyRule{minLen: 36, maxLen: 36, allowed: isHexOrDash, allowedText: "hexadecimal digits and '-'", shape: uuidShape}
	register(Provider{ID: "azure-openai", DisplayName: "Azure OpenAI",
		Credential: Schema{Kind: KindAzureOpenAI, Fields: []Field{
			{Name: FieldEndpoint, VaultField: "endpoint", Required: true, Label: "Endpoint",
				Hint: "the resource's endpoint: https://<resource>.openai.azure.com or https://<resource>.cognitiveservices.azure.com", valid: checkAzureEndpoint},
			{Name: FieldAPIVersion, VaultField: "api_version", Required: true, Label: "API version",
				Hint: `the API version, a date such as "2024-10-21", optionally with "-preview"`, valid: checkAzureAPIVersion},
			{Name: FieldDeployments, VaultField: "deployments", Type: FieldMap, Label: "Deployments", MapLabels: [2]string{"Model", "Deployment"},
				Hint: "model → deployment name, for calls on OpenAI-style paths that name a model", valid: checkDeployments},
			{Name: FieldAPIKey, VaultField: VaultFieldAPIKey, Secret: true, Label: "API key", Choice: "apiKey",
				Hint: "the resource's key: 32 to 128 letters and digits (or give the Entra client credentials instead)",
				rule: &keyRule{minLen: 32, maxLen: 128, allowed: isAlnum, allowedText: "letters and digits"}},
			{Name: FieldTenantID, VaultField: "tenant_id", Label: "Tenant ID", Choice: "entra", Hint: "the Entra tenant id (a UUID)", rule: &uuid},
			{Name: FieldClientID, VaultField: "client_id", Label: "Client ID", Choice: "entra", Hint: "the application (client) id (a UUID)", rule: &uuid},
			{Name: FieldClientSecret, VaultField: "client_secret", Secret: true, Label: "Client secret", Choice: "entra",
				Hint: "the application's client secret value (not its id): 16 to 256 visible ASCII characters",
				rule: &keyRule{minLen: 16, maxLen: 256, allowed: isVisibleASCII, allowedText: "visible ASCII characters"}},
		}, Validate: oneAzureWay, ChoicesLabel: "How keybroker signs in to Azure OpenAI", Choices: []Choice{
			{ID: "apiKey", Label: "The resource's API key", Required: []string{FieldAPIKey}},
			{ID: "entra", Label: "Entra ID client credentials (keybroker hands out short-lived tokens)",
				Required: []string{FieldTenantID, FieldClientID, FieldClientSecret}},
		}},
		Authorize: azureAuthorize,
		Derive:    azureDerive,
		Check:     CheckSpec{BaseURL: "{endpoint}", BaseURLFor: azureBaseURL, Path: "/openai/models"},
		// Azure's own paths (the {deployment} a model of the key's
		// deployments or a deployment), the OpenAI-style paths (the
		// body's model picks the deployment: the proxy sends them to
		// Azure's paths) and Azure's v1 API.
		Proxy: ProxySpec{Endpoints: []Endpoint{
			post("/openai/deployments/{deployment}/chat/completions"), post("/openai/deployments/{deployment}/completions"),
			post("/openai/deployments/{deployment}/embeddings"),
			post("/openai/responses", "model", "tools[type=image_generation].model"), get("/openai/models"),
			post("/v1/chat/completions", "model"), post("/v1/completions", "model"), post("/v1/embeddings", "model"),
			post("/v1/responses", "model", "tools[type=image_generation].model"), get("/v1/models"),
			post("/openai/v1/chat/completions", "model"), post("/openai/v1/embeddings", "model"),
			post("/openai/v1/responses", "model", "tools[type=image_generation].model"), get("/openai/v1/models"),
		}, Headers: []ProxyHeader{{Name: "X-Ms-Client-Request-Id"}}, BaseURLFor: azureBaseURL},
		Dev: New(KindAzureOpenAI, map[string]string{FieldEndpoint: "https://keybroker-dev-fake.openai.azure.com", FieldAPIVersion: "2024-06-01",
			FieldDeployments: `{"gpt-4o":"gpt-4o-dev-fake"}`, FieldAPIKey: "FAKEazureDevKeyNotReal0123456789"}),
	})
}

func isVisibleASCII(c byte) bool { return c > ' ' && c < 0x7f }

// oneAzureWay requires exactly one way of authenticating: the API key, or
// all three Entra client credentials.
func oneAzureWay(c Credential) error {
	var entra, missing []string
	for _, f := range []string{FieldTenantID, FieldClientID, FieldClientSecret} {
		if c.Field(f) != "" {
			entra = append(entra, f)
		} else {
			missing = append(missing, f)
		}
	}
	switch hasKey := c.Field(FieldAPIKey) != ""; {
	case hasKey && len(entra) > 0:
		return refuse("Azure OpenAI credentials take either apiKey or the Entra client credentials (tenantId, clientId, clientSecret), not both")
	case hasKey:
		return nil
	case len(entra) == 0:
		return refuse("Azure OpenAI credentials need apiKey, or the Entra client credentials tenantId, clientId and clientSecret")
	case len(missing) > 0:
		return refuse("Azure OpenAI Entra client credentials lack %s", strings.Join(missing, ", "))
	}
	return nil
}

// checkAzureEndpoint takes an https URL on an Azure OpenAI or Azure AI
// services host, with no path, query, port or user.
func checkAzureEndpoint(label, v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return refuse("%s is not a URL; expected https://<resource>.openai.azure.com", label)
	}
	if u.Scheme != "https" {
		return refuse("%s must be an https URL", label)
	}
	if u.User != nil || u.Port() != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return refuse("%s must be the resource's address alone (https://<resource>.openai.azure.com), without a path, query, port or user", label)
	}
	host := strings.ToLower(u.Hostname())
	for _, suffix := range []string{".openai.azure.com", ".cognitiveservices.azure.com"} {
		if name, ok := strings.CutSuffix(host, suffix); ok && name != "" && !strings.Contains(name, ".") && isResourceName(name) {
			return nil
		}
	}
	return refuse("%s must be on a host <resource>.openai.azure.com or <resource>.cognitiveservices.azure.com", label)
}

func isResourceName(s string) bool {
	if len(s) < 2 || len(s) > 64 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkAzureAPIVersion takes YYYY-MM-DD, optionally followed by
// "-preview".
func checkAzureAPIVersion(label, v string) error {
	d, _ := strings.CutSuffix(v, "-preview")
	ok := len(d) == 10 && d[4] == '-' && d[7] == '-'
	for i := 0; ok && i < len(d); i++ {
		ok = i == 4 || i == 7 || d[i] >= '0' && d[i] <= '9'
	}
	if !ok || d[5:7] < "01" || d[5:7] > "12" || d[8:10] < "01" || d[8:10] > "31" {
		return refuse(`%s must be a date such as "2024-10-21", optionally with "-preview"`, label)
	}
	return nil
}

// checkDeployments takes a JSON object of model → deployment name.
func checkDeployments(label, v string) error {
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
		return refuse("%s must be an object of model → deployment name (strings)", label)
	}
	for model, d := range m {
		if model == "" || len(model) > 256 {
			return refuse("%s: a model name is empty or longer than 256 characters", label)
		}
		if !isDeploymentName(d) {
			return refuse("%s: a deployment name must be 2 to 64 letters, digits, '-', '_' or '.'", label)
		}
	}
	return nil
}

func isDeploymentName(s string) bool {
	if len(s) < 2 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isTokenChar(c) && c != '.' {
			return false
		}
	}
	return true
}

// AzureDeployment is the deployment that serves model under credential c
// (long-lived or derived: both carry deployments), for the proxy's
// OpenAI-style paths; false when the map does not name the model.
func AzureDeployment(c Credential, model string) (string, bool) {
	var m map[string]string
	if json.Unmarshal([]byte(c.Field(FieldDeployments)), &m) != nil {
		return "", false
	}
	d, ok := m[model]
	return d, ok && d != ""
}

// azureAuthorize sends an Entra access token as a bearer token, or the
// API key as api-key; on Azure's own paths (not /openai/v1/) it adds the
// credential's api-version when the request names none.
func azureAuthorize(r *http.Request, c Credential) error {
	switch {
	case c.Field(FieldAccessToken) != "":
		r.Header.Set("Authorization", "Bearer "+c.Field(FieldAccessToken))
	case c.Field(FieldAPIKey) != "":
		r.Header.Set("Api-Key", c.Field(FieldAPIKey))
	default:
		return errors.New("an azure_openai credential with Entra client credentials must be minted into an access token before it is sent")
	}
	if v := c.Field(FieldAPIVersion); v != "" && !strings.HasPrefix(r.URL.Path, "/openai/v1/") {
		q := r.URL.Query()
		if q.Get("api-version") == "" {
			q.Set("api-version", v)
			r.URL.RawQuery = q.Encode()
		}
	}
	return nil
}

// azureDerive mints an Entra access token from client credentials (the
// token service is env's "entra" endpoint or Entra's own, followed by
// /<tenant>/oauth2/v2.0/token). A credential with an API key mints
// nothing: its derived credential is itself, with no expiry (the key is
// what Azure takes, and what resolve hands out).
func azureDerive(ctx context.Context, env MintEnv, c Credential) (Derived, error) {
	if c.Field(FieldAPIKey) != "" {
		return Derived{Credential: c}, nil
	}
	tenant := c.Field(FieldTenantID)
	if tenant == "" || c.Field(FieldClientID) == "" || c.Field(FieldClientSecret) == "" {
		return Derived{}, errors.New("providers: the azure_openai credential has neither apiKey nor Entra client credentials")
	}
	cfg := clientcredentials.Config{
		ClientID: c.Field(FieldClientID), ClientSecret: c.Field(FieldClientSecret),
		TokenURL:  strings.TrimRight(env.Endpoint("entra", entraAuthority), "/") + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token",
		Scopes:    []string{AzureScope},
		AuthStyle: oauth2.AuthStyleInParams,
	}
	tok, err := cfg.Token(mintContext(ctx, env))
	if err != nil {
		return Derived{}, mintFailure("entra", err)
	}
	if tok.AccessToken == "" {
		return Derived{}, &MintError{Service: "entra", Status: http.StatusOK, Code: "no_access_token"}
	}
	out := map[string]string{FieldEndpoint: c.Field(FieldEndpoint), FieldAPIVersion: c.Field(FieldAPIVersion), FieldAccessToken: tok.AccessToken}
	if d := c.Field(FieldDeployments); d != "" {
		out[FieldDeployments] = d
	}
	return Derived{Credential: New(KindAzureOpenAI, out), ExpiresAt: expiry(tok)}, nil
}

// azureBaseURL is where a credential's calls go: its resource's endpoint.
func azureBaseURL(c Credential) string { return c.Field(FieldEndpoint) }
