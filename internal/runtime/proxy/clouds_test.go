package proxy

import (
	"testing"

	"github.com/keybroker/keybroker/providers"
)

// routeOf is route's answer for a call of provider to path with the body's
// model: "path model" or the refusal's code.
func routeOf(t *testing.T, provider, method, path, model string, models []string, cred providers.Credential) string {
	t.Helper()
	prov, _ := providers.DefaultRegistry().Lookup(provider)
	segs, why := cleanSegments(path, slashSegment(prov, path))
	if why != "" {
		t.Fatalf("%s: %s", path, why)
	}
	r, pathModel, ok := defaultRules(t)[provider].match(method, segs)
	if !ok {
		t.Fatalf("%s %s matches no rule", method, path)
	}
	if pathModel != "" {
		model = pathModel
	}
	tg, f := route(prov, Call{Path: path, Models: models}, segs, r, model, cred, []byte(`{"model":"`+model+`","input":"hi"}`))
	if f != nil {
		return f.Code
	}
	if tg.body != nil {
		return tg.path + " " + tg.model + " " + string(tg.body)
	}
	return tg.path + " " + tg.model
}

func TestAzureCallsGoToTheKeysDeployments(t *testing.T) {
	mapped := providers.New(providers.KindAzureOpenAI, map[string]string{providers.FieldEndpoint: "https://a.openai.azure.com", providers.FieldAPIVersion: "2024-10-21",
		providers.FieldDeployments: `{"gpt-4o":"gpt4o-prod","o1":"o1"}`, providers.FieldAccessToken: "t"})
	bare := providers.New(providers.KindAzureOpenAI, map[string]string{providers.FieldEndpoint: "https://a.openai.azure.com", providers.FieldAPIVersion: "2024-10-21", providers.FieldAccessToken: "t"})
	for _, tc := range []struct {
		path, model string
		models      []string
		cred        providers.Credential
		want        string
	}{
		{"/openai/deployments/gpt-4o/chat/completions", "", nil, mapped, "/openai/deployments/gpt4o-prod/chat/completions gpt-4o"},
		{"/openai/deployments/gpt4o-prod/chat/completions", "", nil, mapped, "/openai/deployments/gpt4o-prod/chat/completions gpt-4o"},
		{"/openai/deployments/o1/completions", "", nil, mapped, "/openai/deployments/o1/completions o1"},
		{"/openai/deployments/gpt-4o-mini/chat/completions", "", nil, mapped, "model_not_deployed"},
		{"/openai/deployments/gpt-4o-mini/chat/completions", "", nil, bare, "/openai/deployments/gpt-4o-mini/chat/completions gpt-4o-mini"},
		{"/v1/chat/completions", "gpt-4o", nil, mapped, "/openai/deployments/gpt4o-prod/chat/completions gpt-4o"},
		{"/v1/embeddings", "o1", nil, mapped, "/openai/deployments/o1/embeddings o1"},
		{"/v1/completions", "gpt-4o", nil, bare, "/openai/deployments/gpt-4o/completions gpt-4o"},
		{"/v1/chat/completions", "", nil, mapped, "invalid_request"},
		{"/v1/chat/completions", "davinci", nil, mapped, "model_not_deployed"},
		{"/openai/v1/chat/completions", "gpt-4o", nil, mapped, "/openai/deployments/gpt4o-prod/chat/completions gpt-4o"},
		{"/openai/v1/chat/completions", "gpt4o-prod", nil, mapped, "/openai/v1/chat/completions gpt-4o"},
		{"/openai/v1/chat/completions", "o1", nil, mapped, "/openai/v1/chat/completions o1"},
		// Responses: Azure's v1 API, which reads the deployment in the
		// body's model.
		{"/v1/responses", "gpt-4o", nil, mapped, `/openai/v1/responses gpt-4o {"input":"hi","model":"gpt4o-prod"}`},
		{"/v1/responses", "o1", nil, mapped, "/openai/v1/responses o1"},
		{"/openai/v1/responses", "gpt4o-prod", nil, mapped, "/openai/v1/responses gpt-4o"},
		{"/openai/v1/responses", "gpt-4o", nil, mapped, `/openai/v1/responses gpt-4o {"input":"hi","model":"gpt4o-prod"}`},
		{"/openai/responses", "gpt-4o", nil, mapped, `/openai/responses gpt-4o {"input":"hi","model":"gpt4o-prod"}`},
		{"/openai/responses", "nope", nil, mapped, "model_not_deployed"},
		// A token's model list judges the model, named or deployed.
		{"/openai/deployments/gpt4o-prod/chat/completions", "", []string{"gpt-4o"}, mapped, "/openai/deployments/gpt4o-prod/chat/completions gpt-4o"},
		{"/openai/deployments/gpt4o-prod/chat/completions", "", []string{"gpt4o-prod"}, mapped, "model_not_allowed"},
		{"/v1/chat/completions", "o1", []string{"gpt-4o"}, mapped, "model_not_allowed"},
	} {
		if got := routeOf(t, "azure-openai", "POST", tc.path, tc.model, tc.models, tc.cred); got != tc.want {
			t.Errorf("%s (model %q, list %v): %s, want %s", tc.path, tc.model, tc.models, got, tc.want)
		}
	}
	for _, path := range []string{"/openai/v1/models", "/v1/models"} {
		if got := routeOf(t, "azure-openai", "GET", path, "", nil, mapped); got != "/openai/v1/models " {
			t.Errorf("the listing %s: %s", path, got)
		}
	}
	if _, err := withModel([]byte(`{"model":"a","input":"<b>&"}`), "d<"); err != nil {
		t.Fatal(err)
	}
	if b, _ := withModel([]byte(`{"model":"a","input":"<b>&"}`), "d<"); string(b) != `{"input":"<b>&","model":"d<"}` {
		t.Errorf("withModel: %s", b)
	}
}

func TestVertexCallsAreTheKeysProjectAndLocation(t *testing.T) {
	cred := providers.New(providers.KindGCPVertex, map[string]string{providers.FieldProject: "kb-proj", providers.FieldLocation: "europe-west4", providers.FieldAccessToken: "t"})
	const tail = "/publishers/google/models/gemini-2.0-flash:generateContent"
	for _, tc := range []struct{ path, want string }{
		{"/v1/projects/kb-proj/locations/europe-west4" + tail, "/v1/projects/kb-proj/locations/europe-west4" + tail + " gemini-2.0-flash"},
		{"/v1/projects/-/locations/-" + tail, "/v1/projects/kb-proj/locations/europe-west4" + tail + " gemini-2.0-flash"},
		{"/v1beta1/projects/-/locations/europe-west4" + tail, "/v1beta1/projects/kb-proj/locations/europe-west4" + tail + " gemini-2.0-flash"},
		{"/v1/projects/other/locations/europe-west4" + tail, "project_mismatch"},
		{"/v1/projects/kb-proj/locations/us-central1" + tail, "location_mismatch"},
		{"/v1/projects/kb%2Dproj/locations/-" + tail, "/v1/projects/kb%2Dproj/locations/europe-west4" + tail + " gemini-2.0-flash"}, // as the caller escaped it
	} {
		if got := routeOf(t, "vertex", "POST", tc.path, "", nil, cred); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
	}
}
