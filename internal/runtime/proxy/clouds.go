package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/keybroker/keybroker/providers"
)

// The clouds whose address and names are in the credential: Azure OpenAI
// (a resource's deployments) and Vertex AI (a project and a location).
// Their routes are worked out per attempt, for the key that serves it.

// azureDeployments reads an azure_openai credential's deployments (model
// → deployment); nil when it has none.
func azureDeployments(cred providers.Credential) map[string]string {
	var m map[string]string
	if raw := cred.Field(providers.FieldDeployments); raw != "" {
		_ = json.Unmarshal([]byte(raw), &m)
	}
	return m
}

// azureDeployment is the deployment that serves name and the model it
// is: name is a model of deps (its deployment), else a deployment of
// deps (the model deployed there), else, when deps is empty, the
// deployment and the model both (Azure's habit of naming a deployment
// after its model). ok is false when deps names it nowhere.
func azureDeployment(deps map[string]string, name string) (deployment, model string, ok bool) {
	if d := deps[name]; d != "" {
		return d, name, true
	}
	for _, m := range slices.Sorted(maps.Keys(deps)) {
		if deps[m] == name {
			return name, m, true
		}
	}
	if len(deps) == 0 {
		return name, name, true
	}
	return "", "", false
}

// azureRoute is where an Azure OpenAI call goes for cred:
//   - Azure's own /openai/deployments/{deployment}/...: the segment is a
//     model of the key's deployments (replaced by its deployment) or a
//     deployment of it;
//   - the OpenAI-style /v1/chat/completions, /v1/completions and
//     /v1/embeddings: the body's model picks the deployment, and the call
//     goes to /openai/deployments/{deployment}/... (the credential's
//     api-version added, as on Azure's own paths); /v1/responses goes to
//     Azure's v1 API, /openai/v1/responses, the body's model replaced by
//     the deployment's name (which that API reads there), and
//     GET /v1/models to /openai/v1/models;
//   - Azure's v1 API (/openai/v1/...): as it is when the body's model is a
//     deployment; a model the key deploys under another name goes to that
//     deployment's path, as above (Responses: the body's model replaced);
//   - Azure's Responses API (/openai/responses, where openai's AzureOpenAI
//     client sends responses.create): the body's model replaced so too.
//
// A model the key's deployments name nowhere (when it has some) is
// refused (404 model_not_deployed), and a proxy token's model list judges
// the model, not the deployment's name.
func azureRoute(call Call, segs []string, rule *rule, model string, cred providers.Credential, body []byte) (target, *Failure) {
	idx, onDeployment := rule.wilds["deployment"]
	name := model
	if onDeployment {
		name = unescape(segs[idx])
	}
	openAIStyle := segs[0] == "v1"
	v1 := len(segs) > 2 && segs[0] == "openai" && segs[1] == "v1"
	if rule.method == http.MethodGet { // a listing
		if openAIStyle {
			return target{path: "/openai" + call.Path}, nil
		}
		return target{path: call.Path}, nil
	}
	if name == "" {
		if openAIStyle {
			return target{}, &Failure{Status: http.StatusBadRequest, Code: "invalid_request", Message: "an OpenAI-style path of Azure OpenAI goes to the deployment of the body's \"model\", " +
				"and this call names none the proxy could read (a JSON body within the retry limit); call Azure's own /openai/deployments/{deployment}/... instead"}
		}
		return target{path: call.Path}, nil // a listing
	}
	dep, m, ok := azureDeployment(azureDeployments(cred), name)
	if !ok {
		return target{}, &Failure{Status: http.StatusNotFound, Code: "model_not_deployed", Message: fmt.Sprintf(
			"the Azure OpenAI key that serves this call has no deployment for %s (its deployments name models and their deployments)", quoteShort(name))}
	}
	if len(call.Models) > 0 && !slices.Contains(call.Models, m) {
		return target{}, &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: "this token may not call this model"}
	}
	responses := segs[len(segs)-1] == "responses"
	switch {
	case onDeployment:
		out := slices.Clone(segs)
		out[idx] = url.PathEscape(dep)
		return target{path: "/" + strings.Join(out, "/"), model: m}, nil
	case responses:
		tg := target{path: call.Path, model: m}
		if openAIStyle {
			tg.path = "/openai/v1/responses"
		}
		if dep != name {
			if body == nil {
				return target{}, &Failure{Status: http.StatusBadRequest, Code: "invalid_request", Message: fmt.Sprintf(
					"the body's model goes to Azure as its deployment's name, and a body over the retry limit is not rewritten: name the deployment, %s", quoteShort(dep))}
			}
			var err error
			if tg.body, err = withModel(body, dep); err != nil {
				return target{}, &Failure{Status: http.StatusBadRequest, Code: "malformed_json", Message: "the request body is not a JSON object"}
			}
		}
		return tg, nil
	case openAIStyle:
		return target{path: "/openai/deployments/" + url.PathEscape(dep) + "/" + strings.Join(segs[1:], "/"), model: m}, nil
	case v1 && dep != name && rule.method == http.MethodPost:
		return target{path: "/openai/deployments/" + url.PathEscape(dep) + "/" + strings.Join(segs[2:], "/"), model: m}, nil
	}
	return target{path: call.Path, model: m}, nil
}

// withModel is a JSON object body with its top-level "model" set to
// model (the other members as they were, in the order of their names).
func withModel(body []byte, model string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	encode := func(v any) ([]byte, error) { // as the caller wrote it: '<' stays '<'
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
	}
	v, err := encode(model)
	if err != nil {
		return nil, err
	}
	m["model"] = v
	return encode(m)
}

// vertexRoute is where a Vertex AI call goes for cred: the path's
// {project} and {location} must be the key's, or "-", which becomes the
// key's (a pool's keys may be of several projects and locations; the
// call goes to the serving key's location's host).
func vertexRoute(call Call, segs []string, rule *rule, model string, cred providers.Credential) (target, *Failure) {
	out := slices.Clone(segs)
	changed := false
	for _, f := range []struct{ wild, field, code string }{
		{"project", providers.FieldProject, "project_mismatch"},
		{"location", providers.FieldLocation, "location_mismatch"},
	} {
		i, ok := rule.wilds[f.wild]
		if !ok {
			continue
		}
		want := cred.Field(f.field)
		switch got := unescape(segs[i]); got {
		case want:
		case "-":
			out[i], changed = url.PathEscape(want), true
		default:
			return target{}, &Failure{Status: http.StatusBadRequest, Code: f.code, Message: fmt.Sprintf(
				"the path names another Google Cloud %s than the key that serves this call; write \"-\" for the serving key's %s", f.wild, f.wild)}
		}
	}
	if !changed {
		return target{path: call.Path, model: model}, nil
	}
	return target{path: "/" + strings.Join(out, "/"), model: model}, nil
}
