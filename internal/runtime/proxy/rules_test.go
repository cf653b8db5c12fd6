package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/providers"
)

func defaultRules(t *testing.T, added ...string) map[string]*providerRules {
	t.Helper()
	rules, err := compileRules(providers.DefaultRegistry(), added)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// judge is what the rule table says of a call: "" when it passes (with
// the path's model after "="), or the refusal's code.
func judge(rules map[string]*providerRules, provider, method, path string) string {
	prov, _ := providers.DefaultRegistry().Lookup(provider)
	segs, why := cleanSegments(path, slashSegment(prov, path))
	if why != "" {
		return "path_not_allowed"
	}
	r, model, ok := rules[provider].match(method, segs)
	if !ok {
		return "endpoint_not_allowed"
	}
	if r.pathModel {
		return "=" + model
	}
	return ""
}

// Every provider of the registry forwards its inference endpoints only,
// by method and exact path.
func TestEveryProviderForwardsItsInferenceEndpointsOnly(t *testing.T) {
	rules := defaultRules(t)
	for _, p := range providers.DefaultRegistry().All() {
		if len(rules[p.ID].rules) == 0 {
			t.Errorf("%s forwards nothing", p.ID)
		}
	}
	const ok = ""
	for _, tc := range []struct{ provider, method, path, want string }{
		{"openai", "POST", "/v1/chat/completions", ok},
		{"openai", "POST", "/v1/responses", ok},
		{"openai", "POST", "/v1/embeddings", ok},
		{"openai", "POST", "/v1/completions", ok},
		{"openai", "GET", "/v1/models", ok},
		{"openai", "GET", "/v1/models/gpt-4o", "=gpt-4o"},
		{"openai", "GET", "/v1/models/ft:gpt-4o:acme::abc", "=ft:gpt-4o:acme::abc"},
		{"openai", "GET", "/v1/models/ft%3Agpt-4o", "=ft:gpt-4o"},
		// Stored data, files, organizations, credentials that work
		// outside the proxy: refused, whatever the method.
		{"openai", "GET", "/v1/chat/completions", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/chat/completions/chatcmpl-1", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/chat/completions/chatcmpl-1/messages", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/chat/completions/chatcmpl-1", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/responses/resp_1", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/files", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/files", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/files/file-1", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/batches", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/uploads", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/realtime/sessions", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/realtime/client_secrets", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/organization/users", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/fine_tuning/jobs", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/assistants", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/vector_stores", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/models/ft:gpt-4o:acme::abc", "endpoint_not_allowed"},
		{"openai", "PUT", "/v1/chat/completions", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/audio/transcriptions", "endpoint_not_allowed"},
		// No prefix matches, no near misses.
		{"openai", "POST", "/v1/chat/completionsX", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/chat/completions/x", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/Chat/Completions", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/chat/c%6Fmpletions", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/models/a/b", "endpoint_not_allowed"},
		// Paths that are not clean never reach the table.
		{"openai", "POST", "/v1/chat/completions;x=1", "path_not_allowed"},
		{"openai", "POST", "/v1/chat;/completions", "path_not_allowed"},
		{"openai", "POST", "/v1/chat/completions%3B", "path_not_allowed"},
		{"openai", "GET", "/v1/models/gpt%254o", "path_not_allowed"},
		{"openai", "GET", "/v1/models/%2e%2e", "path_not_allowed"},
		{"openai", "GET", "/v1/models/%2E", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a%2Fb", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a%5Cb", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a%00", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a%2", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a%zz", "path_not_allowed"},
		{"openai", "GET", "/v1/models/a\\b", "path_not_allowed"},
		{"openai", "GET", "/v1/models/..", "path_not_allowed"},
		{"openai", "GET", "/v1/./models", "path_not_allowed"},
		{"openai", "POST", "//v1/chat/completions", "path_not_allowed"},
		{"openai", "POST", "/v1/chat//completions", "path_not_allowed"},
		{"openai", "POST", "/v1/chat/completions/", "path_not_allowed"},
		{"openai", "POST", "", "path_not_allowed"},
		{"openai", "POST", "/", "path_not_allowed"},

		{"anthropic", "POST", "/v1/messages", ok},
		{"anthropic", "POST", "/v1/messages/count_tokens", ok},
		{"anthropic", "GET", "/v1/models", ok},
		{"anthropic", "GET", "/v1/models/claude-sonnet-4-5", "=claude-sonnet-4-5"},
		{"anthropic", "POST", "/v1/messages/batches", "endpoint_not_allowed"},
		{"anthropic", "GET", "/v1/messages/batches/b1/results", "endpoint_not_allowed"},
		{"anthropic", "POST", "/v1/files", "endpoint_not_allowed"},
		{"anthropic", "GET", "/v1/organizations/me", "endpoint_not_allowed"},

		// Amazon Bedrock: a model id may be an ARN, its '/' escaped as
		// AWS's SDKs escape it; nowhere else, and never a dot segment.
		{"bedrock", "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "=anthropic.claude-3-haiku-20240307-v1:0"},
		{"bedrock", "POST", "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.m-v1%3A0/invoke",
			"=arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.m-v1:0"},
		{"bedrock", "POST", "/model/anthropic%2Fclaude/converse", "path_not_allowed"},
		{"bedrock", "POST", "/model/arn%3Aaws%2F..%2Fx/converse", "path_not_allowed"},
		{"bedrock", "POST", "/model/arn%3Aaws%2F%2Fx/converse", "path_not_allowed"},
		{"bedrock", "POST", "/model/x/converse/arn%3Aa%2Fb", "path_not_allowed"},
		{"openai", "GET", "/v1/models/arn%3Aaws%2Fx", "path_not_allowed"},
		// Azure OpenAI: its own paths, the OpenAI-style ones, its v1 API.
		{"azure-openai", "POST", "/openai/deployments/gpt-4o/chat/completions", ok},
		{"azure-openai", "POST", "/openai/deployments/gpt4o-prod/embeddings", ok},
		{"azure-openai", "POST", "/v1/chat/completions", ok},
		{"azure-openai", "POST", "/v1/completions", ok},
		{"azure-openai", "POST", "/v1/embeddings", ok},
		{"azure-openai", "POST", "/openai/v1/chat/completions", ok},
		{"azure-openai", "GET", "/openai/v1/models", ok},
		{"azure-openai", "POST", "/openai/assistants", "endpoint_not_allowed"},
		{"azure-openai", "POST", "/openai/deployments/gpt-4o/files", "endpoint_not_allowed"},
		// Vertex AI: Gemini and Anthropic's models, the model the path's.
		{"vertex", "POST", "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent", "=gemini-2.0-flash"},
		{"vertex", "POST", "/v1/projects/-/locations/-/publishers/anthropic/models/claude-3-5-haiku@20241022:streamRawPredict", "=claude-3-5-haiku@20241022"},
		{"vertex", "POST", "/v1/projects/p/locations/us-central1/endpoints/e:predict", "endpoint_not_allowed"},
		{"vertex", "POST", "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:countTokens", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:generateContent", "=gemini-2.0-flash"},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", "=gemini-2.0-flash"},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:countTokens", "=gemini-2.0-flash"},
		{"google", "POST", "/v1beta/models/text-embedding-004:embedContent", "=text-embedding-004"},
		{"google", "POST", "/v1beta/models/text-embedding-004:batchEmbedContents", "=text-embedding-004"},
		{"google", "POST", "/v1/models/gemini-2.0-flash:generateContent", "=gemini-2.0-flash"},
		{"google", "GET", "/v1beta/models", ok},
		{"google", "GET", "/v1beta/models/gemini-2.0-flash", "=gemini-2.0-flash"},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:generateContentX", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/models/a:b:generateContent", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/models/:generateContent", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/tunedModels/mine:generateContent", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/cachedContents", "endpoint_not_allowed"},
		{"google", "GET", "/v1beta/files", "endpoint_not_allowed"},
		{"google", "POST", "/upload/v1beta/files", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:predict", "endpoint_not_allowed"},

		{"exa", "POST", "/search", ok},
		{"exa", "POST", "/contents", ok},
		{"exa", "POST", "/findSimilar", ok},
		{"exa", "POST", "/answer", ok},
		{"exa", "POST", "/searchAnything", "endpoint_not_allowed"},
		{"exa", "POST", "/search/x", "endpoint_not_allowed"},
		{"exa", "GET", "/search", "endpoint_not_allowed"},
		{"exa", "GET", "/websets/v0/websets", "endpoint_not_allowed"},
		{"exa", "POST", "/research/v1", "endpoint_not_allowed"},

		{"mistral", "POST", "/v1/chat/completions", ok},
		{"mistral", "POST", "/v1/fim/completions", ok},
		{"mistral", "POST", "/v1/embeddings", ok},
		{"mistral", "POST", "/v1/files", "endpoint_not_allowed"},
		{"mistral", "POST", "/v1/fine_tuning/jobs", "endpoint_not_allowed"},
		{"xai", "POST", "/v1/chat/completions", ok},
		{"xai", "POST", "/v1/responses", ok},
		{"xai", "GET", "/v1/api-key", "endpoint_not_allowed"},
		{"zai", "POST", "/api/paas/v4/chat/completions", ok},
		{"zai", "POST", "/api/paas/v4/files", "endpoint_not_allowed"},
		{"moonshot", "POST", "/v1/chat/completions", ok},
		{"moonshot", "POST", "/v1/files", "endpoint_not_allowed"},
		{"fireworks", "POST", "/inference/v1/chat/completions", ok},
		{"fireworks", "POST", "/v1/accounts/me/datasets", "endpoint_not_allowed"},
		{"together", "POST", "/v1/chat/completions", ok},
		{"together", "POST", "/v1/files/upload", "endpoint_not_allowed"},
		{"baseten", "POST", "/v1/chat/completions", ok},
		{"baseten", "GET", "/v1/secrets", "endpoint_not_allowed"},
	} {
		if got := judge(rules, tc.provider, tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s %s: %q, want %q", tc.provider, tc.method, tc.path, got, tc.want)
		}
	}
}

// An operator adds endpoints per provider; a setting that is not one is
// refused at start, saying why.
func TestAnOperatorAddsEndpoints(t *testing.T) {
	rules := defaultRules(t, "openai=POST /v1/audio/transcriptions", " anthropic = GET /v1/files/{id} ", "")
	if got := judge(rules, "openai", "POST", "/v1/audio/transcriptions"); got != "" {
		t.Fatalf("an added endpoint: %q", got)
	}
	if got := judge(rules, "anthropic", "GET", "/v1/files/file_1"); got != "" {
		t.Fatalf("an added endpoint with a wildcard: %q", got)
	}
	if got := judge(rules, "mistral", "POST", "/v1/audio/transcriptions"); got != "endpoint_not_allowed" {
		t.Fatalf("another provider's addition passed: %q", got)
	}
	for _, tc := range []struct{ spec, want string }{
		{"openai POST /v1/files", "not provider=METHOD /path"},
		{"openai=/v1/files", "not provider=METHOD /path"},
		{"nosuch=POST /v1/files", `no provider "nosuch"`},
		{"openai=post /v1/files", `method "post"`},
		{"openai=HEAD /v1/files", `method "HEAD"`},
		{"openai=POST v1/files", "must start with /"},
		{"openai=POST /v1//files", "empty segment"},
		{"openai=POST /v1/../files", "dot segment"},
		{"openai=POST /v1/files;x", "holds a character"},
		{"openai=POST /v1/fi%6Ces", "holds a character"},
		{"openai=POST /v1/{id", "not {name}"},
		{"openai=POST /v1/{}", "not {name}"},
		{"openai=POST /v1/{id}x", "not {name}"},
	} {
		_, err := compileRules(providers.DefaultRegistry(), []string{tc.spec})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--proxy-allow-endpoint") {
			t.Errorf("%q: %v; want an error saying %q", tc.spec, err, tc.want)
		}
	}
}

// Only the common headers and the provider's own reach it; a value a
// provider's header may not take is refused.
func TestOnlyAllowedHeadersAreForwarded(t *testing.T) {
	rules := defaultRules(t)
	in := http.Header{}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Accept": "text/event-stream", "User-Agent": "OpenAI/Python 1.0", "X-Stainless-Lang": "python",
		"Idempotency-Key": "k1", "Openai-Organization": "org-victim", "Openai-Project": "proj-victim", "Openai-Beta": "assistants=v2",
		"X-Forwarded-For": "10.0.0.1", "Cookie": "a=b", "X-Keybroker-Workspace": "ws1", "Anthropic-Version": "2023-06-01",
		"Anthropic-Beta": "prompt-caching-2024-07-31", "X-Custom": "1", "X-Client-Request-Id": "r1",
	} {
		in.Set(k, v)
	}
	out, why := rules["openai"].forwardHeaders(in)
	if why != "" {
		t.Fatal(why)
	}
	var got []string
	for k := range out {
		got = append(got, k)
	}
	for _, k := range []string{"Content-Type", "Accept", "User-Agent", "X-Stainless-Lang", "Idempotency-Key", "X-Client-Request-Id"} {
		if out.Get(k) == "" {
			t.Errorf("openai: %s was dropped", k)
		}
	}
	if len(out) != 6 {
		t.Errorf("openai: forwarded %v", got)
	}
	out, why = rules["anthropic"].forwardHeaders(in)
	if why != "" || out.Get("Anthropic-Beta") != "prompt-caching-2024-07-31" || out.Get("Anthropic-Version") == "" || out.Get("X-Client-Request-Id") != "" {
		t.Fatalf("anthropic: %v %q", out, why)
	}
	in.Set("Connection", "X-Stainless-Lang")
	if out, _ := rules["openai"].forwardHeaders(in); out.Get("X-Stainless-Lang") != "" || out.Get("Connection") != "" {
		t.Error("a header Connection names (hop-by-hop) was forwarded")
	}
	in.Set("Anthropic-Beta", "prompt-caching-2024-07-31, files-api-2025-04-14")
	if _, why = rules["anthropic"].forwardHeaders(in); !strings.Contains(why, "files-api-2025-04-14") {
		t.Fatalf("anthropic-beta files-api: %q", why)
	}
}
