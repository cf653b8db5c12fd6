package providers_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/providers"
)

const (
	googleTokenURI = "https://oauth2.googleapis.com/token"
	saEmail        = "broker@kb-test-project.iam.gserviceaccount.com"
	saProject      = "kb-test-project"
)

func vertexProvider(t *testing.T) *providers.Provider {
	t.Helper()
	p, ok := providers.DefaultRegistry().Lookup("vertex")
	if !ok {
		t.Fatal("no vertex provider")
	}
	return p
}

func vertexCred(project, location, sa string) providers.Credential {
	return providers.New(providers.KindGCPVertex, map[string]string{
		providers.FieldProject: project, providers.FieldLocation: location, providers.FieldServiceAccountJSON: sa})
}

// editSA rewrites members of a service-account file.
func editSA(t *testing.T, sa string, edit func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(sa), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	js, _ := json.Marshal(m)
	return string(js)
}

// assertNoSecret fails when text holds any line of the secret (a PEM key
// is checked line by line) or the secret itself.
func assertNoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(text, s) {
			t.Fatalf("the text quotes a secret: %s", text)
		}
		for _, line := range strings.Split(s, "\n") {
			if len(line) >= 16 && strings.Contains(text, line) {
				t.Fatalf("the text quotes a line of a secret: %s", text)
			}
		}
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Fatalf("the text quotes a private key: %s", text)
	}
}

func TestVertexValidationNamesTheFieldNeverTheValue(t *testing.T) {
	p := vertexProvider(t)
	sa, _ := cloudstub.ServiceAccountFile(t, saEmail, saProject, googleTokenURI)
	if err := p.Validate(vertexCred(saProject, "us-central1", sa)); err != nil {
		t.Fatalf("a good credential: %v", err)
	}
	for _, loc := range []string{"global", "europe-west4", "northamerica-northeast2", "asia-southeast1"} {
		if err := p.Validate(vertexCred(saProject, loc, sa)); err != nil {
			t.Errorf("location %s: %v", loc, err)
		}
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	userFile := `{"type":"authorized_user","client_id":"x.apps.googleusercontent.com","client_secret":"d-FL95Q19q7MQmFpd7hHD0Ty","refresh_token":"1//0eSECRETrefresh"}`
	for _, tc := range []struct {
		name, field string
		cred        providers.Credential
	}{
		{"short project", "project", vertexCred("abc", "us-central1", sa)},
		{"project in capitals", "project", vertexCred("KB-Test-Project", "us-central1", sa)},
		{"project ending with -", "project", vertexCred("kb-test-project-", "us-central1", sa)},
		{"location with _", "location", vertexCred(saProject, "us_central1", sa)},
		{"location without number", "location", vertexCred(saProject, "moon-base", sa)},
		{"a sentence, not JSON", "serviceAccountJson", vertexCred(saProject, "us-central1", "my secret pasted sentence")},
		{"a user's credentials file", "serviceAccountJson", vertexCred(saProject, "us-central1", userFile)},
		{"no client_email", "serviceAccountJson", vertexCred(saProject, "us-central1", editSA(t, sa, func(m map[string]any) { delete(m, "client_email") }))},
		{"private_key not PEM", "serviceAccountJson", vertexCred(saProject, "us-central1", editSA(t, sa, func(m map[string]any) { m["private_key"] = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" }))},
		{"an EC private key", "serviceAccountJson", vertexCred(saProject, "us-central1", editSA(t, sa, func(m map[string]any) { m["private_key"] = ecPEM }))},
		{"token_uri over http", "serviceAccountJson", vertexCred(saProject, "us-central1", editSA(t, sa, func(m map[string]any) { m["token_uri"] = "http://oauth2.googleapis.com/token" }))},
		{"members that are not strings", "serviceAccountJson", vertexCred(saProject, "us-central1", editSA(t, sa, func(m map[string]any) { m["type"] = 7 }))},
		{"no service account", "serviceAccountJson", providers.New(providers.KindGCPVertex, map[string]string{"project": saProject, "location": "us-central1"})},
		{"an unknown field", "privateKey", providers.New(providers.KindGCPVertex, map[string]string{"project": saProject, "location": "us-central1", "serviceAccountJson": sa, "privateKey": "x"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(tc.cred)
			if !errors.Is(err, providers.ErrInvalidKey) {
				t.Fatalf("not refused: %v", err)
			}
			if reason := providers.PublicReason(err); !strings.Contains(reason, tc.field) {
				t.Errorf("the reason %q does not name %s", reason, tc.field)
			}
			assertNoSecret(t, err.Error(), sa, ecPEM, userFile, "d-FL95Q19q7MQmFpd7hHD0Ty", "my secret pasted sentence", "1//0eSECRETrefresh")
		})
	}
}

// googleSetup is a stand-in Google that knows one service account whose
// file names Google's real token_uri (the audience), with the mint
// pointed at the stand-in.
func googleSetup(t *testing.T) (*cloudstub.Google, providers.MintEnv, string) {
	t.Helper()
	g := cloudstub.NewGoogle(t)
	sa, key := cloudstub.ServiceAccountFile(t, saEmail, saProject, googleTokenURI)
	g.AddServiceAccount(saEmail, saProject, googleTokenURI, &key.PublicKey)
	return g, providers.MintEnv{HTTP: http.DefaultClient, Endpoints: map[string]string{"google_token": g.TokenURL()}}, sa
}

func TestVertexDeriveMintsATokenTheStandInTakes(t *testing.T) {
	ctx := context.Background()
	p := vertexProvider(t)
	g, env, sa := googleSetup(t)
	long := vertexCred(saProject, "us-central1", sa)
	before := time.Now()
	d, err := p.Derive(ctx, env, long)
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	if g.Mints() != 1 {
		t.Fatalf("%d mints", g.Mints())
	}
	got := d.Credential.Reveal()
	if len(got) != 3 || got[providers.FieldProject] != saProject || got[providers.FieldLocation] != "us-central1" ||
		!strings.HasPrefix(got[providers.FieldAccessToken], "ya29.stub-") || d.Credential.Kind() != providers.KindGCPVertex {
		t.Fatalf("the derived credential has fields %v", d.Credential)
	}
	for _, v := range got {
		assertNoSecret(t, v, sa)
	}
	if d.ExpiresAt.Before(before.Add(50*time.Minute)) || d.ExpiresAt.After(time.Now().Add(time.Hour)) {
		t.Fatalf("expires at %v", d.ExpiresAt)
	}
	if base := p.Check.BaseURLFor(d.Credential); base != "https://us-central1-aiplatform.googleapis.com" {
		t.Fatalf("base URL %s", base)
	}
	if base := p.Check.BaseURLFor(vertexCred(saProject, "global", sa)); base != "https://aiplatform.googleapis.com" {
		t.Fatalf("global base URL %s", base)
	}

	call := func(path, body string, c providers.Credential) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, g.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if !c.IsZero() {
			if err := p.Authorize(req, c); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	gemini := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	claude := `{"anthropic_version":"vertex-2023-10-16","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	base := "/v1/projects/" + saProject + "/locations/us-central1/publishers/"
	for _, tc := range []struct {
		path, body, want string
	}{
		{base + "google/models/gemini-2.0-flash:generateContent", gemini, `"candidates"`},
		{base + "google/models/gemini-2.0-flash:streamGenerateContent?alt=sse", gemini, "data: {"},
		{"/v1beta1/projects/" + saProject + "/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent", gemini, `[{"candidates"`},
		{base + "anthropic/models/claude-sonnet-4@20250514:rawPredict", claude, `"type":"message"`},
		{base + "anthropic/models/claude-sonnet-4@20250514:streamRawPredict", claude, "event: message_start"},
	} {
		if status, body := call(tc.path, tc.body, d.Credential); status != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.path, status, body)
		}
	}
	// The stand-in refuses what Vertex refuses: no token, a token it did
	// not issue, another project.
	if status, _ := call(base+"google/models/gemini-2.0-flash:generateContent", gemini, providers.Credential{}); status != 401 {
		t.Errorf("no token: %d", status)
	}
	forged := providers.New(providers.KindGCPVertex, map[string]string{providers.FieldAccessToken: "ya29.not-issued"})
	if status, _ := call(base+"google/models/gemini-2.0-flash:generateContent", gemini, forged); status != 401 {
		t.Errorf("a token it did not issue: %d", status)
	}
	if status, _ := call("/v1/projects/someone-elses/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent", gemini, d.Credential); status != 403 {
		t.Errorf("another project: %d", status)
	}
	// The long-lived credential is never sent.
	req, _ := http.NewRequest(http.MethodGet, g.URL, nil)
	if err := p.Authorize(req, long); err == nil {
		t.Fatal("the long-lived credential was authorized as is")
	}
}

func TestVertexDeriveWithTheFilesOwnTokenURI(t *testing.T) {
	g := cloudstub.NewGoogle(t)
	sa, key := cloudstub.ServiceAccountFile(t, saEmail, saProject, g.TokenURL())
	g.AddServiceAccount(saEmail, saProject, g.TokenURL(), &key.PublicKey)
	// The rule takes https token URIs only; the mint itself follows the
	// file when no endpoint is configured.
	d, err := vertexProvider(t).Derive(context.Background(), providers.MintEnv{HTTP: http.DefaultClient}, vertexCred(saProject, "global", sa))
	if err != nil || d.Credential.Field(providers.FieldAccessToken) == "" {
		t.Fatalf("derive: %v", err)
	}
}

func TestVertexDeriveRefusedWithoutQuotingTheKey(t *testing.T) {
	ctx := context.Background()
	p := vertexProvider(t)
	g, env, sa := googleSetup(t)
	// A file of the same account with a key the stand-in does not know:
	// the signature does not verify.
	other, _ := cloudstub.ServiceAccountFile(t, saEmail, saProject, googleTokenURI)
	// An account the stand-in does not know.
	stranger, _ := cloudstub.ServiceAccountFile(t, "stranger@kb-test-project.iam.gserviceaccount.com", saProject, googleTokenURI)
	// The right key, the wrong audience.
	wrongAud := editSA(t, sa, func(m map[string]any) { m["token_uri"] = "https://oauth2.example.com/token" })
	for name, file := range map[string]string{"unknown key": other, "unknown account": stranger, "wrong audience": wrongAud} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Derive(ctx, env, vertexCred(saProject, "us-central1", file))
			var me *providers.MintError
			if !errors.As(err, &me) || !me.Refused || me.Status != 400 || me.Code != "invalid_grant" || me.Service != "google_token" {
				t.Fatalf("%#v", err)
			}
			assertNoSecret(t, err.Error(), file, sa)
			if strings.Contains(err.Error(), "Invalid") {
				t.Fatalf("the error quotes the token service's description: %v", err)
			}
		})
	}
	if g.Mints() != 0 {
		t.Fatalf("%d tokens issued", g.Mints())
	}
	// A token service that does not answer.
	down := providers.MintEnv{HTTP: http.DefaultClient, Endpoints: map[string]string{"google_token": "http://127.0.0.1:1/token"}}
	_, err := p.Derive(ctx, down, vertexCred(saProject, "us-central1", sa))
	var me *providers.MintError
	if !errors.As(err, &me) || me.Refused || me.Status != 0 {
		t.Fatalf("unreachable: %#v", err)
	}
	assertNoSecret(t, err.Error(), sa)
}

func TestVertexCheckMintsThenListsPublisherModels(t *testing.T) {
	ctx := context.Background()
	p := vertexProvider(t)
	g, env, sa := googleSetup(t)
	c, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"vertex": g.URL}, Mint: env})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Check(ctx, p, vertexCred(saProject, "us-central1", sa)); r.Verdict != providers.VerdictAccepted || r.Status != 200 {
		t.Fatalf("the right account: %+v", r)
	}
	other, _ := cloudstub.ServiceAccountFile(t, saEmail, saProject, googleTokenURI)
	r := c.Check(ctx, p, vertexCred(saProject, "us-central1", other))
	if r.Verdict != providers.VerdictRefused || !strings.Contains(r.Detail, "google_token") {
		t.Fatalf("an unknown key: %+v", r)
	}
	assertNoSecret(t, r.Detail, other)
	down, _ := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"vertex": g.URL},
		Mint: providers.MintEnv{Endpoints: map[string]string{"google_token": "http://127.0.0.1:1/token"}}})
	if r := down.Check(ctx, p, vertexCred(saProject, "us-central1", sa)); r.Verdict != providers.VerdictUnreachable {
		t.Fatalf("the token service down: %+v", r)
	}
	if g.Mints() != 1 {
		t.Fatalf("%d mints", g.Mints())
	}
}

// The derived credential prints no token.
func TestVertexDerivedCredentialIsRedacted(t *testing.T) {
	_, env, sa := googleSetup(t)
	d, err := vertexProvider(t).Derive(context.Background(), env, vertexCred(saProject, "us-central1", sa))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	js, _ := json.Marshal(d)
	b.Write(js)
	b.WriteString(d.Credential.String())
	if tok := d.Credential.Field(providers.FieldAccessToken); strings.Contains(b.String(), tok) {
		t.Fatalf("printed the token: %s", b.String())
	}
}

// TestVertexPreviewNamesTheAccount: the masked preview of a
// service-account file is its client_email and a preview of its key id —
// which account and which key, where the file's first and last characters
// would say nothing — and never a line of the private key.
func TestVertexPreviewNamesTheAccount(t *testing.T) {
	sa, _ := cloudstub.ServiceAccountFile(t, saEmail, saProject, googleTokenURI)
	var f map[string]string
	if err := json.Unmarshal([]byte(sa), &f); err != nil {
		t.Fatal(err)
	}
	c := vertexCred(saProject, "us-central1", sa)
	schema := vertexProvider(t).Credential
	want := saEmail + " (key " + providers.MaskKey(f["private_key_id"]) + ")"
	if got := schema.Masks(c)[providers.FieldServiceAccountJSON]; got != want {
		t.Fatalf("mask %q, want %q", got, want)
	}
	if got := schema.Preview(c); got != providers.MaskKey(sa) {
		t.Fatalf("the 16-character preview (maskedKey) is %q", got)
	}
	assertNoSecret(t, want, f["private_key"], f["private_key_id"])
	// The preview sent back as the file (a page echoing it) is refused:
	// it is no key file.
	if err := vertexProvider(t).Validate(vertexCred(saProject, "us-central1", want)); err == nil || !strings.Contains(err.Error(), "serviceAccountJson is not JSON") {
		t.Fatalf("the preview sent back as the file: %v", err)
	}
}
