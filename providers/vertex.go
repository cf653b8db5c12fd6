package providers

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2/google"
)

// Google Vertex AI: a service-account key file that never leaves
// keybroker; resolve hands out an OAuth 2.0 access token (scope
// cloud-platform) minted from it, which goes as a bearer token to
// https://<location>-aiplatform.googleapis.com. The proxy forwards
// Gemini's generateContent and streamGenerateContent and Anthropic's
// models on Vertex (rawPredict, streamRawPredict).

// KindGCPVertex is the credential kind of Google Vertex AI.
const KindGCPVertex = "gcp_vertex"

// The fields of a gcp_vertex credential. The derived credential has
// project, location and accessToken (never serviceAccountJson).
const (
	FieldProject            = "project"
	FieldLocation           = "location"
	FieldServiceAccountJSON = "serviceAccountJson"
	FieldAccessToken        = "accessToken"
)

// VertexScope is the OAuth 2.0 scope of the tokens keybroker mints.
const VertexScope = "https://www.googleapis.com/auth/cloud-platform"

func init() {
	register(Provider{ID: "vertex", DisplayName: "Google Vertex AI",
		Credential: Schema{Kind: KindGCPVertex, Fields: []Field{
			{Name: FieldProject, VaultField: "project", Required: true, Label: "Project ID",
				Hint: "a Google Cloud project id: 6 to 30 lowercase letters, digits and '-', starting with a letter", valid: checkGCPProject},
			{Name: FieldLocation, VaultField: "location", Required: true, Label: "Location",
				Hint: `a Google Cloud region such as "us-central1", or "global"`, valid: checkGCPLocation},
			{Name: FieldServiceAccountJSON, VaultField: "service_account_json", Secret: true, Required: true, Label: "Service-account key file", File: true,
				Hint:  `a service-account key file (JSON with "type": "service_account", client_email, an RSA private_key and token_uri)`,
				valid: checkServiceAccount, preview: previewServiceAccount},
		}},
		Authorize: vertexBearer,
		Derive:    vertexDerive,
		// Listing publisher models exists only in v1beta1 (v1 has only
		// the get of one model); it takes any valid token of a project
		// where the Vertex AI API is enabled.
		Check: CheckSpec{BaseURL: "https://{location}-aiplatform.googleapis.com", BaseURLFor: vertexBaseURL, Path: "/v1beta1/publishers/google/models?pageSize=1"},
		Proxy: ProxySpec{Endpoints: vertexEndpoints(), BaseURLFor: vertexBaseURL,
			Headers: []ProxyHeader{{Name: "X-Goog-Api-Client"}, {Name: "Anthropic-Beta", Values: anthropicBetas}}},
		Dev: New(KindGCPVertex, map[string]string{FieldProject: "keybroker-dev-fake", FieldLocation: "europe-west4",
			FieldServiceAccountJSON: devServiceAccount()}),
		DevDerived: New(KindGCPVertex, map[string]string{FieldProject: "keybroker-dev-fake", FieldLocation: "europe-west4",
			FieldAccessToken: "ya29.FAKE-dev-access-token-not-real"}),
	})
}

// vertexEndpoints are the inference endpoints of Gemini and of
// Anthropic's models on Vertex, under v1 and v1beta1 (Google's SDKs use
// both); the model is the path's.
func vertexEndpoints() []Endpoint {
	var out []Endpoint
	for _, v := range []string{"/v1", "/v1beta1"} {
		base := v + "/projects/{project}/locations/{location}/publishers/"
		for _, verb := range []string{"google/models/{model}:generateContent", "google/models/{model}:streamGenerateContent",
			"anthropic/models/{model}:rawPredict", "anthropic/models/{model}:streamRawPredict"} {
			out = append(out, Endpoint{Method: http.MethodPost, Path: base + verb})
		}
	}
	return out
}

// vertexBaseURL is the Vertex AI API of the credential's location:
// https://<location>-aiplatform.googleapis.com, or
// https://aiplatform.googleapis.com for "global".
func vertexBaseURL(c Credential) string {
	loc := c.Field(FieldLocation)
	if loc == "global" || loc == "" {
		return "https://aiplatform.googleapis.com"
	}
	return "https://" + loc + "-aiplatform.googleapis.com"
}

// vertexBearer sends a derived credential's access token.
func vertexBearer(r *http.Request, c Credential) error {
	tok := c.Field(FieldAccessToken)
	if tok == "" {
		return errors.New("a gcp_vertex credential must be minted into an access token before it is sent")
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// vertexDerive mints an access token from the service account: a JWT
// signed with its private key, exchanged at its token_uri (or at
// env's "google_token" endpoint, with the file's token_uri still the
// assertion's audience).
func vertexDerive(ctx context.Context, env MintEnv, c Credential) (Derived, error) {
	cfg, err := google.JWTConfigFromJSON([]byte(c.Field(FieldServiceAccountJSON)), VertexScope)
	if err != nil {
		return Derived{}, errors.New("providers: the vertex serviceAccountJson is not a service-account key file")
	}
	cfg.Audience = cfg.TokenURL
	cfg.TokenURL = env.Endpoint("google_token", cfg.TokenURL)
	tok, err := cfg.TokenSource(mintContext(ctx, env)).Token()
	if err != nil {
		return Derived{}, mintFailure("google_token", err)
	}
	if tok.AccessToken == "" {
		return Derived{}, &MintError{Service: "google_token", Status: http.StatusOK, Code: "no_access_token"}
	}
	return Derived{
		Credential: New(KindGCPVertex, map[string]string{FieldProject: c.Field(FieldProject), FieldLocation: c.Field(FieldLocation),
			FieldAccessToken: tok.AccessToken}),
		ExpiresAt: expiry(tok),
	}, nil
}

// checkGCPProject is Google's rule for a project id.
func checkGCPProject(label, v string) error {
	if len(v) < 6 || len(v) > 30 {
		return refuse("%s is %d characters long; a project id has 6 to 30", label, len(v))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return refuse("%s may contain only lowercase letters, digits and '-' (character %d is not one)", label, i+1)
		}
	}
	if v[0] < 'a' || v[0] > 'z' || v[len(v)-1] == '-' {
		return refuse("%s must start with a letter and not end with '-'", label)
	}
	return nil
}

// checkGCPLocation takes "global" or a region's shape: lowercase words
// joined by '-', the last ending in its number (us-central1,
// northamerica-northeast2, europe-west12).
func checkGCPLocation(label, v string) error {
	if v == "global" {
		return nil
	}
	bad := refuse(`%s must be a Google Cloud region such as "us-central1" or "europe-west4", or "global"`, label)
	if len(v) > 40 {
		return bad
	}
	parts := strings.Split(v, "-")
	if len(parts) < 2 {
		return bad
	}
	for i, p := range parts {
		letters := strings.TrimRight(p, "0123456789")
		digits := p[len(letters):]
		if letters == "" || strings.Trim(letters, "abcdefghijklmnopqrstuvwxyz") != "" || (i < len(parts)-1) != (digits == "") {
			return bad
		}
	}
	return nil
}

// serviceAccount is the part of a service-account key file keybroker
// reads.
type serviceAccount struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// maxServiceAccountJSON bounds a key file (Google's are about 2.3 KB).
const maxServiceAccountJSON = 16 << 10

// checkServiceAccount checks that v is a service-account key file, naming
// what is wrong and never quoting it (a JSON syntax error is reported by
// its offset only).
// previewServiceAccount shows which account and key a service-account
// file holds — its client_email and a preview of its private_key_id (an
// identifier, as the Google Cloud console lists it) — where a preview of
// the file's first and last characters would say nothing.
func previewServiceAccount(v string) string {
	var sa serviceAccount
	if err := json.Unmarshal([]byte(v), &sa); err != nil || sa.ClientEmail == "" {
		return ""
	}
	if sa.PrivateKeyID == "" {
		return sa.ClientEmail
	}
	return sa.ClientEmail + " (key " + MaskKey(sa.PrivateKeyID) + ")"
}

func checkServiceAccount(label, v string) error {
	if len(v) > maxServiceAccountJSON {
		return refuse("%s is %d bytes long; a service-account key file is at most %d", label, len(v), maxServiceAccountJSON)
	}
	var sa serviceAccount
	if err := json.Unmarshal([]byte(v), &sa); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return refuse("%s is not JSON (syntax error at byte %d); paste the whole key file", label, se.Offset)
		}
		return refuse("%s is not a service-account key file (a JSON object whose members are strings)", label)
	}
	switch {
	case sa.Type != "service_account":
		return refuse(`%s is not a service-account key file: its "type" must be "service_account"`, label)
	case !strings.Contains(sa.ClientEmail, "@") || strings.ContainsAny(sa.ClientEmail, " \t\r\n"):
		return refuse("%s has no client_email (the service account's address)", label)
	case sa.PrivateKey == "":
		return refuse("%s has no private_key", label)
	}
	if err := checkRSAKey(sa.PrivateKey); err != nil {
		return refuse("%s: private_key %s", label, err.Error())
	}
	u, err := url.Parse(sa.TokenURI)
	if sa.TokenURI == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return refuse("%s: token_uri must be the https URL of Google's token service (https://oauth2.googleapis.com/token)", label)
	}
	return nil
}

// checkRSAKey says what is wrong with a PEM private key, in words that
// quote nothing of it.
func checkRSAKey(p string) error {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return errors.New("is not a PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := k.(*rsa.PrivateKey); !ok {
			return fmt.Errorf("is a %T key, not an RSA key", k)
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	return errors.New("does not parse as an RSA private key (PKCS #8 or PKCS #1)")
}

// devServiceAccount is the service-account file of `keybroker dev`'s fake
// hosted key: it passes the rule, and Google accepts it never (no service
// account has it). Its RSA key (1,024 bits, PKCS #8 DER) was generated
// for this purpose alone and is public here, so it is worth nothing; the
// tests generate their own keys.
func devServiceAccount() string {
	const der = "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALHlZtUuuXj0MSSPJKQr+InPvt2o2lBDw9V8sQXN90F4joNl" +
		"rGUhDXAdwJeiBgX2AyCykIoUIp6VPUgw9BaQn7ccQBPOI8ddv5EjIYsaA7gfkTNCFYxo/htmTRXLZ1CbEzIWEEJoMz/hhPaP" +
		"afTQMArjGiG4OJj8gpYBZ12ctxz3AgMBAAECgYAZ3VEgsKztvY9BkgBRUEVQACDviGPJZLjd2sXAIsyOu9D4oLk6cN5LzT+Z" +
		"rEh06GpXAC9MrBXGectRqjBq8XcPAcHWQ0rMzspCJ43By8PP4LU3onyYjM+qqhunm/lQfVcdQP0kmZSnui1uqZyWNenTHLW5" +
		"EWD9v0ZjnEP67w1TQQJBAMhGd1XxXG+kXkt9YI1POe6QTFrFbQH0o/9dscBbraLl7zpMeviWa6qvZPFAkvpyENmu3wrK91bu" +
		"bho3E2sCGcECQQDjZOBRbS+h+jwMnIpDDAHyDVhzUqyMr1etsZCEgx01hjbp1RC/1+aVBlz4oPiOuAZoc4BHvGbC2K7BtQGc" +
		"27S3AkAfXani8+IeOgfqmsA8YWQZUNAkhzcDT2U/4VStY65WDNzirIe11xkVqlKM1iguwR6SeSjFb/Q80Sq9QFLyN2oBAkEA" +
		"sIj9OVn589dwTR4unNSyofdIZueVO/dYq2lB2A5uW8Jh2XFnenij86gn/4IA1dP6bZbVzVtvr+9G5O2gXeWXywJAT3tffLmX" +
		"r2oo9dXwbko2LYEuYt+AK9WUR1gcqcTeMVD6qdXgaB8of+IaXD1OHsEyhTuqTQVzQ9vzOdHosv5QsQ=="
	raw, err := base64.StdEncoding.DecodeString(der)
	if err != nil {
		panic(err)
	}
	js, err := json.Marshal(serviceAccount{Type: "service_account", ClientEmail: "keybroker-dev@keybroker-dev-fake.iam.gserviceaccount.com",
		PrivateKeyID: "fake-dev-key", PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: raw})),
		TokenURI: "https://oauth2.googleapis.com/token"})
	if err != nil {
		panic(err)
	}
	return string(js)
}
