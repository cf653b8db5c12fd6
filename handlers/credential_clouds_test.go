package handlers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.opentelemetry.io/otel"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// cloudSecrets are the secret values of one cloud credential and what
// was minted from it, for the searches of TestCloudCredentialsNeverLeave.
type cloudSecrets []string

// add remembers s for the package's leak checks (the server log, every
// error answer, the pg_dump of the test's database) and for this test's
// own searches; a PEM private key is searched for line by line.
func (c *cloudSecrets) add(s string) {
	*c = append(*c, remember(s))
	if !strings.Contains(s, "\n") {
		return
	}
	for _, line := range strings.Split(s, "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			*c = append(*c, remember(line))
		}
	}
}

// in reports whether text holds one of the secrets or a private key.
func (c cloudSecrets) in(text string) bool {
	for _, s := range c {
		if strings.Contains(text, s) {
			return true
		}
	}
	return strings.Contains(text, "PRIVATE KEY")
}

// TestCloudCredentialsNeverLeave puts a key of each cloud kind through
// every admin answer, a key check, resolve (which mints from it at the
// stand-in of the cloud's token service), a refused write and a failed
// mint, and then searches the answers, the spans, the metrics, the
// server log, every error answer and a dump of PostgreSQL for the secret
// fields — Bedrock's secret access key, Azure's client
// secret, each line of the service account's private key — and for the
// tokens minted from them. Only resolve may hand out what was minted, and
// nothing hands out the long-lived secret.
func TestCloudCredentialsNeverLeave(t *testing.T) {
	var secrets cloudSecrets

	// The stand-ins, each knowing the credential it will be shown.
	const region, role, extID = "eu-west-1", "arn:aws:iam::" + awsstub.Account + ":role/kb-bedrock", "kb-external-id-0123456789"
	aws := awsstub.New(t, region)
	awsID, awsSecret := "AKIA"+strings.ToUpper(openaiKey(t)[8:24]), "cloudLeakSecret/"+openaiKey(t)[8:32]
	aws.AddKey(awsID, awsSecret)
	aws.DenyBedrock(awsID)
	aws.AddRole(role, extID)
	secrets.add(awsSecret) // the external id is not a secret (AWS says so): it is a public field

	const tenant, clientID = "11111111-2222-3333-4444-555555555555", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	clientSecret := "Q~leak." + openaiKey(t)[8:40]
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(tenant, clientID, clientSecret)
	azure := cloudstub.NewAzureOpenAI(t, "", entra, map[string]string{"gpt4o-prod": "gpt-4o"})
	secrets.add(clientSecret)

	google := cloudstub.NewGoogle(t)
	const saEmail, project = "broker@kb-leak-project.iam.gserviceaccount.com", "kb-leak-project"
	sa, saKey := cloudstub.ServiceAccountFile(t, saEmail, project, "https://oauth2.googleapis.com/token")
	google.AddServiceAccount(saEmail, project, "https://oauth2.googleapis.com/token", &saKey.PublicKey)
	var saFields map[string]string
	if err := json.Unmarshal([]byte(sa), &saFields); err != nil {
		t.Fatal(err)
	}
	secrets.add(saFields["private_key"])
	secrets.add(saFields["private_key_id"])

	// Spans of the server and the broker go to a recorder; metrics to a
	// registry of the test's own.
	ended := recordSpans()
	reg := prometheus.NewRegistry()
	mintEndpoints := map[string]map[string]string{"bedrock": {"sts": aws.URL}, "azure-openai": {"entra": entra.URL + "/"}, "vertex": {"google_token": google.TokenURL()}}
	checker, err := providers.NewChecker(providers.CheckerConfig{
		BaseURLs:      providers.BaseURLs{"bedrock": aws.URL, "azure-openai": azure.URL, "vertex": google.URL},
		MintEndpoints: mintEndpoints,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIGround(t, handlers.ModeAll, kbtest.Options{Checker: checker, Broker: func(c *broker.Config) {
		c.MintHTTP, c.MintEndpoints, c.Metrics = http.DefaultClient, mintEndpoints, broker.NewMetrics(reg)
	}}, func(o *handlers.Options, _ *keyGround) { o.Tracer = otel.GetTracerProvider() })

	keys := []struct {
		provider   string
		credential map[string]any
		minted     []string // the fields of the minted credential that are secret
	}{
		{"bedrock", map[string]any{"region": region, "accessKeyId": awsID, "secretAccessKey": awsSecret, "roleArn": role, "externalId": extID}, []string{"secretAccessKey", "sessionToken"}},
		{"azure-openai", map[string]any{"endpoint": "https://kb-leak.openai.azure.com", "apiVersion": "2024-10-21", "deployments": map[string]any{"gpt-4o": "gpt4o-prod"},
			"tenantId": tenant, "clientId": clientID, "clientSecret": clientSecret}, []string{"accessToken"}},
		{"vertex", map[string]any{"project": project, "location": "europe-west4", "serviceAccountJson": sa}, []string{"accessToken"}},
	}
	var answers []string
	for _, k := range keys {
		path := "/v1/workspaces/ws1/providers/" + k.provider + "/keys/main"
		r := a.call("admin", "PUT", path+"?verify=true", map[string]any{"credential": k.credential})
		if r.status != http.StatusCreated {
			t.Fatalf("PUT a checked %s key: %d %s", k.provider, r.status, r.body)
		}
		answers = append(answers, string(r.body))
		for _, p := range []string{path, "/v1/workspaces/ws1/providers/" + k.provider + "/keys", "/v1/workspaces/ws1/keys", "/v1/workspaces/ws1/effective", "/v1/workspaces/ws1/audit"} {
			r := a.call("admin", "GET", p, nil)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p, r.status, r.body)
			}
			answers = append(answers, string(r.body))
		}
		r = a.call("resolver", "POST", "/v1/resolve", map[string]any{"workspace": "ws1", "provider": k.provider})
		if r.status != http.StatusOK {
			t.Fatalf("resolve %s: %d %s", k.provider, r.status, r.body)
		}
		var res struct {
			Credential map[string]any `json:"credential"`
			ExpiresAt  string         `json:"expiresAt"`
		}
		r.decode(t, &res)
		if secrets.in(string(r.body)) || res.ExpiresAt == "" {
			t.Fatalf("resolve of the %s key handed out a long-lived secret or no expiry", k.provider)
		}
		for _, f := range k.minted {
			v, _ := res.Credential[f].(string)
			if v == "" {
				t.Fatalf("resolve of the %s key: no minted %s", k.provider, f)
			}
			secrets.add(v)
		}
	}
	if aws.STSCalls() == 0 || entra.Mints() == 0 || google.Mints() == 0 {
		t.Fatalf("mints at the stand-ins: STS %d, Entra %d, Google %d", aws.STSCalls(), entra.Mints(), google.Mints())
	}

	// A refused write quoting every secret (a region that is none) and a
	// mint the token service refuses (a client secret Entra does not
	// know): the answers name the field or the failure, never a value
	// (the package's check of error answers), and the refused write
	// changes nothing.
	bad := map[string]any{"region": "europe-1", "accessKeyId": awsID, "secretAccessKey": awsSecret, "roleArn": role, "externalId": extID}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/bedrock/keys/main", map[string]any{"credential": bad}); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.message(), "region") {
		t.Fatalf("a Bedrock key in no region: %d %s", r.status, r.body)
	}
	wrong := "Q~wrong." + openaiKey(t)[8:40]
	secrets.add(wrong)
	azureWrong := map[string]any{"endpoint": "https://kb-leak.openai.azure.com", "apiVersion": "2024-10-21", "tenantId": tenant, "clientId": clientID, "clientSecret": wrong}
	if r := a.call("admin", "PUT", "/v1/workspaces/ws1/providers/azure-openai/keys/main", map[string]any{"credential": azureWrong}); r.status != http.StatusOK {
		t.Fatalf("rotate the Azure key: %d %s", r.status, r.body)
	}
	if r := a.call("resolver", "POST", "/v1/resolve", map[string]any{"workspace": "ws1", "provider": "azure-openai"}); r.status != http.StatusBadGateway || r.code() != "credential_mint_failed" {
		t.Fatalf("resolve of a key Entra refuses: %d %s", r.status, r.body)
	}

	for i, body := range answers {
		if secrets.in(body) {
			t.Errorf("admin answer %d holds a secret field or a minted token", i)
		}
	}
	if len(ended()) == 0 {
		t.Fatal("no span was recorded: the search of the spans would prove nothing")
	}
	for _, s := range ended() {
		text := s.Name() + " " + s.Status().Description
		for _, kv := range s.Attributes() {
			text += " " + kv.Value.String()
		}
		for _, ev := range s.Events() {
			text += " " + ev.Name
			for _, kv := range ev.Attributes {
				text += " " + kv.Value.String()
			}
		}
		if secrets.in(text) {
			t.Errorf("span %q holds a secret field or a minted token", s.Name())
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&metrics, f); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(metrics.String(), `keybroker_credential_mints_total{outcome="ok",provider="bedrock"}`) {
		t.Fatalf("the mints were not counted: the search of the metrics would prove nothing\n%s", metrics.String())
	}
	if secrets.in(metrics.String()) {
		t.Error("the metrics hold a secret field or a minted token")
	}
}
