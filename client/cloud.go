package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

// The typed views of a resolve answer's cloud credential
// (ResolveResponse.Bedrock, AzureOpenAI, Vertex): the fields of
// providers/bedrock.go, azure.go and vertex.go by name, so that a program
// need not know them. Each view's String, GoString, Format (every verb),
// LogValue and MarshalJSON show the non-secret fields and a masked
// preview of each secret one (docs/credentials.md), never a secret; the
// secret fields are read by name only.

// The credential kinds of the three clouds (ResolveResponse.Kind), as
// package providers names them.
const (
	KindAWSBedrock  = "aws_bedrock"
	KindAzureOpenAI = "azure_openai"
	KindGCPVertex   = "gcp_vertex"
)

// ErrOtherKind is what a typed view wraps when the answer holds a
// credential of another kind (an api_key answer, or another cloud's).
var ErrOtherKind = errors.New("keybroker: the resolved credential is of another kind")

// ErrBadCredential is what a typed view wraps when the answer's
// credential lacks a field the kind needs, or a field has the wrong type.
// The error names the field, never a value.
var ErrBadCredential = errors.New("keybroker: the resolved credential is incomplete")

// otherKind is ErrOtherKind naming the kind wanted and the kind got.
func otherKind(want, got string) error {
	if got == "" {
		got = "api_key"
	}
	return fmt.Errorf("%w: it is %q, not %q", ErrOtherKind, got, want)
}

// credentialFields reads a resolve answer's credential by field name.
type credentialFields struct {
	kind string
	m    map[string]any
	err  error
}

func (f *credentialFields) str(name string) string {
	switch v := f.m[name].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		f.fail("%w: the %s field %q is not a string", ErrBadCredential, f.kind, name)
		return ""
	}
}

// mapOf reads a map field: a JSON object of strings as it arrives
// (map[string]any), or a map[string]string.
func (f *credentialFields) mapOf(name string) map[string]string {
	switch v := f.m[name].(type) {
	case nil:
		return nil
	case map[string]string:
		return maps.Clone(v)
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				f.fail("%w: the %s field %q is not an object of strings", ErrBadCredential, f.kind, name)
				return nil
			}
			out[k] = s
		}
		return out
	default:
		f.fail("%w: the %s field %q is not an object of strings", ErrBadCredential, f.kind, name)
		return nil
	}
}

// need fails unless one of the groups of fields is all present.
func (f *credentialFields) need(groups ...[]string) {
	for _, g := range groups {
		if !slices.ContainsFunc(g, func(n string) bool { s, _ := f.m[n].(string); return s == "" }) {
			return
		}
	}
	var want []string
	for _, g := range groups {
		want = append(want, strings.Join(g, "+"))
	}
	if len(want) == 1 {
		f.fail("%w: the %s credential lacks %s", ErrBadCredential, f.kind, want[0])
		return
	}
	f.fail("%w: the %s credential has none of %s", ErrBadCredential, f.kind, strings.Join(want, ", "))
}

func (f *credentialFields) fail(format string, a ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, a...)
	}
}

// view checks the answer's kind and reads its credential.
func (r ResolveResponse) view(kind string) (*credentialFields, error) {
	if r.Kind != kind {
		return nil, otherKind(kind, r.Kind)
	}
	return &credentialFields{kind: kind, m: r.Credential}, nil
}

// BedrockCredential is an aws_bedrock resolve answer: an STS session
// (AccessKeyID, SecretAccessKey, SessionToken) that stops working at
// ExpiresAt, or a Bedrock API key (BedrockAPIKey, no ExpiresAt), or —
// only for a provider whose long-lived credentials the operator exposes —
// the key pair itself with the role to assume. Region is where Bedrock
// runs; ModelMap maps a caller's model names to inference profile ids or
// ARNs (ModelID).
//
// With aws-sdk-go-v2, each field goes to the field of the same name of
// aws.Credentials (CanExpire when ExpiresAt is set, Expires ExpiresAt):
// see docs/clouds.md.
type BedrockCredential struct {
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	BedrockAPIKey   string
	// RoleARN, ExternalID and SessionName come only with an exposed
	// long-lived key pair.
	RoleARN     string
	ExternalID  string
	SessionName string
	ModelMap    map[string]string
	ExpiresAt   time.Time
}

// Bedrock is the answer's aws_bedrock credential; an error wrapping
// ErrOtherKind when it holds another kind, ErrBadCredential when it lacks
// the region or a way in.
func (r ResolveResponse) Bedrock() (BedrockCredential, error) {
	f, err := r.view(KindAWSBedrock)
	if err != nil {
		return BedrockCredential{}, err
	}
	c := BedrockCredential{Region: f.str("region"), AccessKeyID: f.str("accessKeyId"), SecretAccessKey: f.str("secretAccessKey"),
		SessionToken: f.str("sessionToken"), BedrockAPIKey: f.str("bedrockApiKey"), RoleARN: f.str("roleArn"),
		ExternalID: f.str("externalId"), SessionName: f.str("sessionName"), ModelMap: f.mapOf("modelMap"), ExpiresAt: r.ExpiresAt}
	f.need([]string{"region"})
	f.need([]string{"accessKeyId", "secretAccessKey"}, []string{"bedrockApiKey"})
	if f.err != nil {
		return BedrockCredential{}, f.err
	}
	return c, nil
}

// ModelID is the model id, inference profile id or ARN to call for
// model: its ModelMap entry, else model itself.
func (c BedrockCredential) ModelID(model string) string {
	if id := c.ModelMap[model]; id != "" {
		return id
	}
	return model
}

// RuntimeEndpoint is Bedrock's runtime in the credential's region
// (https://bedrock-runtime.<region>.amazonaws.com).
func (c BedrockCredential) RuntimeEndpoint() string {
	return "https://bedrock-runtime." + c.Region + ".amazonaws.com"
}

func (c BedrockCredential) shown() []shownField {
	return []shownField{
		{"Region", "region", c.Region, false}, {"AccessKeyID", "accessKeyId", c.AccessKeyID, true},
		{"SecretAccessKey", "secretAccessKey", c.SecretAccessKey, true}, {"SessionToken", "sessionToken", c.SessionToken, true},
		{"BedrockAPIKey", "bedrockApiKey", c.BedrockAPIKey, true}, {"RoleARN", "roleArn", c.RoleARN, false},
		{"ExternalID", "externalId", c.ExternalID, false}, {"SessionName", "sessionName", c.SessionName, false},
		mapField("ModelMap", "modelMap", c.ModelMap), timeField(c.ExpiresAt),
	}
}

// String shows the non-secret fields and masked previews of the secret ones.
func (c BedrockCredential) String() string { return showText("BedrockCredential", c.shown()) }

// GoString is String: %#v shows no secret either.
func (c BedrockCredential) GoString() string { return c.String() }

// Format makes every verb print String.
func (c BedrockCredential) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer: non-secret fields and masks.
func (c BedrockCredential) LogValue() slog.Value { return showLog(c.shown()) }

// MarshalJSON writes the non-secret fields and the masks: a credential
// that reaches a JSON encoder by mistake leaks nothing.
func (c BedrockCredential) MarshalJSON() ([]byte, error) { return showJSON(c.shown()) }

// AzureOpenAICredential is an azure_openai resolve answer: an Entra
// access token (AccessToken, sent as a bearer token) that stops working
// at ExpiresAt, or the resource's API key (APIKey, sent as api-key; no
// ExpiresAt), or — only for a provider whose long-lived credentials the
// operator exposes — the Entra client credentials themselves. Endpoint is
// the resource (https://<resource>.openai.azure.com), APIVersion the
// api-version of Azure's own paths, Deployments the deployment of each
// model name (Deployment).
type AzureOpenAICredential struct {
	Endpoint    string
	APIVersion  string
	APIKey      string
	AccessToken string
	// TenantID, ClientID and ClientSecret come only with exposed
	// long-lived Entra client credentials.
	TenantID     string
	ClientID     string
	ClientSecret string
	Deployments  map[string]string
	ExpiresAt    time.Time
}

// AzureOpenAI is the answer's azure_openai credential; an error wrapping
// ErrOtherKind when it holds another kind, ErrBadCredential when it lacks
// the endpoint or a way in.
func (r ResolveResponse) AzureOpenAI() (AzureOpenAICredential, error) {
	f, err := r.view(KindAzureOpenAI)
	if err != nil {
		return AzureOpenAICredential{}, err
	}
	c := AzureOpenAICredential{Endpoint: f.str("endpoint"), APIVersion: f.str("apiVersion"), APIKey: f.str("apiKey"),
		AccessToken: f.str("accessToken"), TenantID: f.str("tenantId"), ClientID: f.str("clientId"),
		ClientSecret: f.str("clientSecret"), Deployments: f.mapOf("deployments"), ExpiresAt: r.ExpiresAt}
	f.need([]string{"endpoint"})
	f.need([]string{"accessToken"}, []string{"apiKey"}, []string{"tenantId", "clientId", "clientSecret"})
	if f.err != nil {
		return AzureOpenAICredential{}, f.err
	}
	return c, nil
}

// Deployment is the deployment that serves model, and whether the
// credential maps it.
func (c AzureOpenAICredential) Deployment(model string) (string, bool) {
	d, ok := c.Deployments[model]
	return d, ok && d != ""
}

func (c AzureOpenAICredential) shown() []shownField {
	return []shownField{
		{"Endpoint", "endpoint", c.Endpoint, false}, {"APIVersion", "apiVersion", c.APIVersion, false},
		{"APIKey", "apiKey", c.APIKey, true}, {"AccessToken", "accessToken", c.AccessToken, true},
		{"TenantID", "tenantId", c.TenantID, false}, {"ClientID", "clientId", c.ClientID, false},
		{"ClientSecret", "clientSecret", c.ClientSecret, true},
		mapField("Deployments", "deployments", c.Deployments), timeField(c.ExpiresAt),
	}
}

// String shows the non-secret fields and masked previews of the secret ones.
func (c AzureOpenAICredential) String() string { return showText("AzureOpenAICredential", c.shown()) }

// GoString is String: %#v shows no secret either.
func (c AzureOpenAICredential) GoString() string { return c.String() }

// Format makes every verb print String.
func (c AzureOpenAICredential) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer: non-secret fields and masks.
func (c AzureOpenAICredential) LogValue() slog.Value { return showLog(c.shown()) }

// MarshalJSON writes the non-secret fields and the masks.
func (c AzureOpenAICredential) MarshalJSON() ([]byte, error) { return showJSON(c.shown()) }

// VertexCredential is a gcp_vertex resolve answer: a Google access token
// minted from the service account, sent as a bearer token, that stops
// working at ExpiresAt, or — only for a provider whose long-lived
// credentials the operator exposes — the service account's key file
// (ServiceAccountJSON) itself. BaseURL is where the calls go.
type VertexCredential struct {
	Project     string
	Location    string
	AccessToken string
	// ServiceAccountJSON comes only with an exposed long-lived key file.
	ServiceAccountJSON string
	ExpiresAt          time.Time
}

// Vertex is the answer's gcp_vertex credential; an error wrapping
// ErrOtherKind when it holds another kind, ErrBadCredential when it lacks
// the project, the location or a token.
func (r ResolveResponse) Vertex() (VertexCredential, error) {
	f, err := r.view(KindGCPVertex)
	if err != nil {
		return VertexCredential{}, err
	}
	c := VertexCredential{Project: f.str("project"), Location: f.str("location"), AccessToken: f.str("accessToken"),
		ServiceAccountJSON: f.str("serviceAccountJson"), ExpiresAt: r.ExpiresAt}
	f.need([]string{"project", "location"})
	f.need([]string{"accessToken"}, []string{"serviceAccountJson"})
	if f.err != nil {
		return VertexCredential{}, f.err
	}
	return c, nil
}

// BaseURL is the Vertex AI API of the credential's location:
// https://<location>-aiplatform.googleapis.com, or
// https://aiplatform.googleapis.com for "global".
func (c VertexCredential) BaseURL() string {
	if c.Location == "global" || c.Location == "" {
		return "https://aiplatform.googleapis.com"
	}
	return "https://" + c.Location + "-aiplatform.googleapis.com"
}

func (c VertexCredential) shown() []shownField {
	return []shownField{
		{"Project", "project", c.Project, false}, {"Location", "location", c.Location, false},
		{"AccessToken", "accessToken", c.AccessToken, true},
		{"ServiceAccountJSON", "serviceAccountJson", c.ServiceAccountJSON, true}, timeField(c.ExpiresAt),
	}
}

// String shows the non-secret fields and masked previews of the secret ones.
func (c VertexCredential) String() string { return showText("VertexCredential", c.shown()) }

// GoString is String: %#v shows no secret either.
func (c VertexCredential) GoString() string { return c.String() }

// Format makes every verb print String.
func (c VertexCredential) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer: non-secret fields and masks.
func (c VertexCredential) LogValue() slog.Value { return showLog(c.shown()) }

// MarshalJSON writes the non-secret fields and the masks.
func (c VertexCredential) MarshalJSON() ([]byte, error) { return showJSON(c.shown()) }

// shownField is one field of a typed view as its printing shows it: a
// secret's value is never shown, only its mask; empty fields are left out.
type shownField struct {
	goName, jsonName string
	value            string
	secret           bool
}

// mapField shows a map field (model → deployment), which holds no secret,
// in the order of its names.
func mapField(goName, jsonName string, m map[string]string) shownField {
	if len(m) == 0 {
		return shownField{goName: goName, jsonName: jsonName}
	}
	b, _ := json.Marshal(m) // sorted by name
	return shownField{goName: goName, jsonName: jsonName, value: string(b)}
}

func timeField(t time.Time) shownField {
	if t.IsZero() {
		return shownField{goName: "ExpiresAt", jsonName: "expiresAt"}
	}
	return shownField{goName: "ExpiresAt", jsonName: "expiresAt", value: t.UTC().Format(time.RFC3339)}
}

// shows is what printing shows of f: its value, or its mask.
func (f shownField) shows() string {
	if f.secret {
		return maskSecret(f.value)
	}
	return f.value
}

func showText(name string, fields []shownField) string {
	var b strings.Builder
	b.WriteString("client." + name + "{")
	first := true
	for _, f := range fields {
		if f.value == "" {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(f.goName + ":" + f.shows())
	}
	b.WriteString("}")
	return b.String()
}

func showLog(fields []shownField) slog.Value {
	var attrs []slog.Attr
	for _, f := range fields {
		if f.value != "" {
			attrs = append(attrs, slog.String(f.jsonName, f.shows()))
		}
	}
	return slog.GroupValue(attrs...)
}

func showJSON(fields []shownField) ([]byte, error) {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		switch {
		case f.value == "":
		case f.goName == "ModelMap" || f.goName == "Deployments":
			out[f.jsonName] = json.RawMessage(f.value)
		default:
			out[f.jsonName] = f.shows()
		}
	}
	return json.Marshal(out)
}

// maskSecret is the masked preview of a secret that keybroker's answers
// show (docs/credentials.md; providers.MaskKey): up to 8 characters →
// "••••••••"; up to 12 → first 4 + "..." + last 4; otherwise first 6 +
// "..." + last 4. A value of more than one line (a key file) shows
// nothing of itself.
func maskSecret(s string) string {
	switch n := len(s); {
	case n <= 8 || strings.ContainsAny(s, "\n{"):
		return "••••••••"
	case n <= 12:
		return s[:4] + "..." + s[n-4:]
	default:
		return s[:6] + "..." + s[n-4:]
	}
}
