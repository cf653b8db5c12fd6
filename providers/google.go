package providers

import (
	"net/http"
	"strings"
)

// Google AI (Gemini): the key in x-goog-api-key, the model in the path
// (/models/{model}:generateContent), and bodies that name models as
// "models/<id>".
func init() {
	register(Provider{ID: "google", DisplayName: "Google AI (Gemini)",
		Credential: apiKey(`starts with "AIza", 39 characters`, keyRule{prefixes: []string{"AIza"}, minLen: 39, maxLen: 39, allowed: isTokenChar,
			allowedText: "letters, digits, '-' and '_'"}),
		Authorize: headerKey("X-Goog-Api-Key", ""),
		Check:     CheckSpec{BaseURL: "https://generativelanguage.googleapis.com", Path: "/v1beta/models?pageSize=1"},
		Proxy:     ProxySpec{Endpoints: googleEndpoints(), Headers: []ProxyHeader{{Name: "X-Goog-Api-Client"}}},
		ModelName: googleModel,
		Dev:       APIKey("AIzaFAKE-hosted-dev-key-not-real-google")})
}

// googleModel is Google's rule for a model a body names: "models/<id>"
// is the model <id>.
func googleModel(name string) string { return strings.TrimPrefix(name, "models/") }

// googleEndpoints are Gemini's inference endpoints under /v1beta and /v1:
// the model is the path's, never a body field (Google's API takes the
// path's); a body's own model names, when present, must be allowed too.
func googleEndpoints() []Endpoint {
	var out []Endpoint
	for _, v := range []string{"/v1beta", "/v1"} {
		g := func(verb string, models ...string) Endpoint {
			return Endpoint{Method: http.MethodPost, Path: v + "/models/{model}:" + verb, Models: models}
		}
		out = append(out,
			g("generateContent"), g("streamGenerateContent"), g("countTokens", "generateContentRequest.model"),
			g("embedContent", "model"), g("batchEmbedContents", "requests[].model"),
			get(v+"/models"), get(v+"/models/{model}"))
	}
	return out
}
