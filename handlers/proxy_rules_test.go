package handlers_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/client"
)

// providersStandIn stands in for OpenAI, Anthropic, Google and Exa, each
// under its own prefix of one server (its base URL). It checks what each
// provider checks of a call — its key, in its header, and nothing else
// that could be a credential — and records each call it gets.
type providersStandIn struct {
	srv   *httptest.Server
	keys  map[string]string // provider → the workspace's key
	mu    sync.Mutex
	calls []seenCall
	bad   []string
}

type seenCall struct {
	provider, method, path string
	header                 http.Header
	body                   string
}

// providerKeyHeaders are where each provider takes its key.
var providerKeyHeaders = map[string]string{"openai": "Authorization", "anthropic": "X-Api-Key", "google": "X-Goog-Api-Key", "exa": "X-Api-Key"}

func newProvidersStandIn(t *testing.T) *providersStandIn {
	s := &providersStandIn{keys: map[string]string{
		"openai":    openaiTestKey("rules"),
		"anthropic": "sk-ant-api03-rules-" + strings.Repeat("a", 30),
		"google":    "AIza" + strings.Repeat("g", 35),
		"exa":       "3f2b6c1e-8a4d-4f7b-9c2e-5d1a0b9e8f7c",
	}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *providersStandIn) baseURLs() map[string]string {
	out := map[string]string{}
	for p := range s.keys {
		out[p] = s.srv.URL + "/" + p
	}
	return out
}

func (s *providersStandIn) serve(w http.ResponseWriter, r *http.Request) {
	provider, path, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, seenCall{provider: provider, method: r.Method, path: "/" + path, header: r.Header.Clone(), body: string(body)})
	want := s.keys[provider]
	got := r.Header.Get(providerKeyHeaders[provider])
	if provider == "openai" {
		got, _ = strings.CutPrefix(got, "Bearer ")
	}
	if want == "" || got != want {
		s.bad = append(s.bad, provider+": the key is not the workspace's, or not in its header")
		http.Error(w, `{"error":{"message":"invalid key"}}`, http.StatusUnauthorized)
		return
	}
	for h := range providerKeyHeaders {
		if name := providerKeyHeaders[h]; name != providerKeyHeaders[provider] && r.Header.Get(name) != "" {
			s.bad = append(s.bad, provider+": another credential header arrived: "+name)
		}
	}
	if provider == "anthropic" && r.Header.Get("Anthropic-Version") == "" {
		http.Error(w, `{"error":{"message":"anthropic-version: header is required"}}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"provider":%q,"path":%q}`, provider, "/"+path)
}

func (s *providersStandIn) seen() []seenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenCall(nil), s.calls...)
}

func (s *providersStandIn) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bad...)
}

// A proxy token reaches each provider's inference endpoints, by method
// and exact path, and nothing else: files, batches, stored completions,
// organizations, realtime client secrets, fine-tuning are refused with a
// 403 that names the rule, and never reach the provider.
func TestTheProxyForwardsInferenceEndpointsOnly(t *testing.T) {
	provider := newProvidersStandIn(t)
	a := newProxyAPI(t, provider.baseURLs())
	for p, key := range provider.keys {
		a.addPoolKey("ws1", p, "k", key, 0)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"anthropic", "exa", "google", "openai"}})
	bearer := []string{"Authorization", "Bearer " + tok.Token}

	for _, tc := range []struct{ provider, method, path, body string }{
		{"openai", "POST", "/v1/chat/completions", `{"model":"gpt-4o"}`},
		{"openai", "POST", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`},
		{"openai", "POST", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`},
		{"openai", "POST", "/v1/completions", `{"model":"gpt-3.5-turbo-instruct","prompt":"hi"}`},
		{"openai", "GET", "/v1/models", ""},
		{"openai", "GET", "/v1/models/gpt-4o", ""},
		{"anthropic", "POST", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}`},
		{"anthropic", "POST", "/v1/messages/count_tokens", `{"model":"claude-sonnet-4-5","messages":[]}`},
		{"anthropic", "GET", "/v1/models", ""},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:generateContent", `{"contents":[]}`},
		{"google", "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", `{"contents":[]}`},
		{"google", "POST", "/v1/models/text-embedding-004:embedContent", `{"content":{}}`},
		{"google", "GET", "/v1beta/models", ""},
		{"exa", "POST", "/search", `{"query":"q"}`},
		{"exa", "POST", "/answer", `{"query":"q"}`},
	} {
		resp, body := a.proxyCall(tc.method, "/proxy/"+tc.provider+tc.path, tc.body, bearer...)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"provider":"`+tc.provider+`"`) {
			t.Errorf("%s %s %s: %d %s; want the provider's answer", tc.provider, tc.method, tc.path, resp.StatusCode, body)
		}
	}
	reached := len(provider.seen())

	for _, tc := range []struct{ provider, method, path, code string }{
		{"openai", "POST", "/v1/files", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/files", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/files/file-abc/content", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/files/file-abc", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/batches", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/chat/completions", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/chat/completions/chatcmpl-1", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/chat/completions/chatcmpl-1/messages", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/chat/completions/chatcmpl-1", "endpoint_not_allowed"},
		{"openai", "GET", "/v1/organization/projects", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/realtime/sessions", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/realtime/client_secrets", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/fine_tuning/jobs", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/assistants", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/vector_stores", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/uploads", "endpoint_not_allowed"},
		{"openai", "DELETE", "/v1/models/ft:gpt-4o:acme::x", "endpoint_not_allowed"},
		{"openai", "POST", "/v1/chat/completions/", "path_not_allowed"},
		{"openai", "POST", "/v1/chat/completions;x", "path_not_allowed"},
		{"openai", "POST", "/v1/chat/completions%3Bx", "path_not_allowed"},
		{"openai", "GET", "/v1/models/gpt%254o", "path_not_allowed"},
		{"openai", "POST", "/v1//chat/completions", "path_not_allowed"},
		{"anthropic", "POST", "/v1/messages/batches", "endpoint_not_allowed"},
		{"anthropic", "GET", "/v1/files", "endpoint_not_allowed"},
		{"google", "POST", "/upload/v1beta/files", "endpoint_not_allowed"},
		{"google", "GET", "/v1beta/files", "endpoint_not_allowed"},
		{"google", "POST", "/v1beta/cachedContents", "endpoint_not_allowed"},
		{"exa", "POST", "/searchAnything", "endpoint_not_allowed"},
		{"exa", "GET", "/websets/v0/websets", "endpoint_not_allowed"},
	} {
		body := ""
		if tc.method == "POST" {
			body = `{"purpose":"batch"}`
		}
		resp, answer := a.proxyCall(tc.method, "/proxy/"+tc.provider+tc.path, body, bearer...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"code":"`+tc.code+`"`) {
			t.Errorf("%s %s %s: %d %s; want 403 %s", tc.provider, tc.method, tc.path, resp.StatusCode, answer, tc.code)
		}
		if tc.code == "endpoint_not_allowed" && !strings.Contains(answer, tc.method+" "+tc.path+" is not an inference endpoint of "+tc.provider) ||
			tc.code == "endpoint_not_allowed" && !strings.Contains(answer, "--proxy-allow-endpoint") {
			t.Errorf("%s %s %s: the refusal does not name the rule: %s", tc.provider, tc.method, tc.path, answer)
		}
	}
	// HEAD and OPTIONS have no route to the proxy at all.
	for _, method := range []string{"HEAD", "OPTIONS"} {
		if resp, _ := a.proxyCall(method, "/proxy/openai/v1/models", "", bearer...); resp.StatusCode < 400 {
			t.Errorf("%s /v1/models: %d", method, resp.StatusCode)
		}
	}
	if n := len(provider.seen()); n != reached {
		for _, c := range provider.seen()[reached:] {
			t.Errorf("reached the provider: %s %s %s", c.provider, c.method, c.path)
		}
	}
	if p := provider.problems(); len(p) != 0 {
		t.Fatalf("the stand-in refused: %v", p)
	}
}

// Only the common headers and the provider's own reach it: never the
// caller's OpenAI organization or project (they pick whose account pays),
// nor an anthropic-beta feature outside the safe list (refused, named).
func TestTheProxyForwardsAllowedHeadersOnly(t *testing.T) {
	provider := newProvidersStandIn(t)
	a := newProxyAPI(t, provider.baseURLs())
	for p, key := range provider.keys {
		a.addPoolKey("ws1", p, "k", key, 0)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"anthropic", "openai"}})
	resp, body := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token,
		"OpenAI-Organization", "org-victim", "OpenAI-Project", "proj_victim", "OpenAI-Beta", "assistants=v2", "X-Stainless-Lang", "python",
		"User-Agent", "OpenAI/Python 1.99", "X-Forwarded-For", "10.1.2.3", "X-Custom-Thing", "1", "Idempotency-Key", "stainless-retry-1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	calls := provider.seen()
	h := calls[len(calls)-1].header
	for _, name := range []string{"Openai-Organization", "Openai-Project", "Openai-Beta", "X-Forwarded-For", "X-Custom-Thing", "Cookie"} {
		if h.Get(name) != "" {
			t.Errorf("%s reached OpenAI", name)
		}
	}
	for name, want := range map[string]string{"X-Stainless-Lang": "python", "User-Agent": "OpenAI/Python 1.99", "Idempotency-Key": "stainless-retry-1", "Content-Type": "application/json"} {
		if h.Get(name) != want {
			t.Errorf("%s: %q reached OpenAI, want %q", name, h.Get(name), want)
		}
	}

	anthropic := `{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}`
	resp, body = a.proxyCall("POST", "/proxy/anthropic/v1/messages", anthropic, "X-Api-Key", tok.Token,
		"anthropic-version", "2023-06-01", "anthropic-beta", "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14")
	calls = provider.seen()
	if resp.StatusCode != http.StatusOK || calls[len(calls)-1].header.Get("Anthropic-Beta") != "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14" {
		t.Fatalf("a safe anthropic-beta: %d %s", resp.StatusCode, body)
	}
	for _, beta := range []string{"files-api-2025-04-14", "code-execution-2025-05-22", "mcp-client-2025-04-04", "prompt-caching-2024-07-31, message-batches-2024-09-24"} {
		before := len(provider.seen())
		resp, body = a.proxyCall("POST", "/proxy/anthropic/v1/messages", anthropic, "X-Api-Key", tok.Token, "anthropic-beta", beta)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"code":"header_not_allowed"`) || len(provider.seen()) != before {
			t.Errorf("anthropic-beta %s: %d %s; want 403 header_not_allowed, nothing sent", beta, resp.StatusCode, body)
		}
	}
	if p := provider.problems(); len(p) != 0 {
		t.Fatalf("the stand-in refused: %v", p)
	}
}

// A proxy token's models bound every model the call names: the body's,
// nested ones (a Responses call's image_generation tool), Google's path
// (never a body field Google does not read), a model's own page.
func TestAProxyTokensModelsBoundEveryModelACallNames(t *testing.T) {
	provider := newProvidersStandIn(t)
	a := newProxyAPI(t, provider.baseURLs())
	for p, key := range provider.keys {
		a.addPoolKey("ws1", p, "k", key, 0)
	}
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"google", "openai"},
		Models: []string{"gpt-4o", "gpt-image-1", "gemini-2.0-flash"}})
	bearer := []string{"Authorization", "Bearer " + tok.Token}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"an allowed model", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","input":"hi"}`, 200, ""},
		{"an allowed nested model", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"type":"image_generation","model":"gpt-image-1"}]}`, 200, ""},
		{"a nested model not allowed", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"type":"image_generation","model":"dall-e-3"}]}`, 403, "model_not_allowed"},
		{"an image tool left to the provider's default model", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"type":"image_generation"}]}`, 403, "model_not_allowed"},
		{"a function tool names no model", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"type":"function","name":"f","parameters":{}}]}`, 200, ""},
		{"a nested model in another case", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"type":"image_generation","Model":"dall-e-3"}]}`, 403, "model_not_allowed"},
		{"a nested model twice", "POST", "/proxy/openai/v1/responses", `{"model":"gpt-4o","tools":[{"model":"gpt-image-1","model":"dall-e-3"}]}`, 403, "model_not_allowed"},
		{"an escaped model member", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","mod\u0065l":"o1-pro"}`, 403, "model_not_allowed"},
		{"an escaped model member alone", "POST", "/proxy/openai/v1/chat/completions", `{"mod\u0065l":"gpt-4o"}`, 403, "model_not_allowed"},
		{"a duplicate elsewhere", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","role":"system"}]}`, 400, "malformed_json"},
		{"a body that is not JSON", "POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o",`, 400, "malformed_json"},
		{"an allowed model's page", "GET", "/proxy/openai/v1/models/gpt-4o", "", 200, ""},
		{"another model's page", "GET", "/proxy/openai/v1/models/o1-pro", "", 403, "model_not_allowed"},
		{"the models list names none", "GET", "/proxy/openai/v1/models", "", 403, "model_not_allowed"},
		// Google serves the path's model: the body's model is no way in.
		{"Google: an allowed path", "POST", "/proxy/google/v1beta/models/gemini-2.0-flash:generateContent", `{"model":"o1-pro","contents":[]}`, 200, ""},
		{"Google: another path, an allowed body model", "POST", "/proxy/google/v1beta/models/gemini-2.5-pro:generateContent", `{"model":"gemini-2.0-flash","contents":[]}`, 403, "model_not_allowed"},
		{"Google: no model in the path", "GET", "/proxy/google/v1beta/models", "", 403, "model_not_allowed"},
		{"Google: a batch naming another model", "POST", "/proxy/google/v1beta/models/gemini-2.0-flash:batchEmbedContents", `{"requests":[{"model":"models/text-embedding-004","content":{}}]}`, 403, "model_not_allowed"},
		{"Google: a batch naming the path's model", "POST", "/proxy/google/v1beta/models/gemini-2.0-flash:batchEmbedContents", `{"requests":[{"model":"models/gemini-2.0-flash","content":{}}]}`, 200, ""},
	} {
		resp, body := a.proxyCall(tc.method, tc.path, tc.body, bearer...)
		if resp.StatusCode != tc.status || tc.code != "" && !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s; want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	// What reached the provider is only what was allowed.
	for _, c := range provider.seen() {
		if strings.Contains(c.body, "dall-e-3") || strings.Contains(c.path, "o1-pro") || strings.Contains(c.path, "gemini-2.5-pro") {
			t.Errorf("a call with a model not allowed reached %s: %s %s", c.provider, c.path, c.body)
		}
	}
}

// Azure OpenAI and Vertex AI are forwarded (proxy_azure_test.go,
// proxy_vertex_test.go): a workspace with no key for them gets 404 no_key,
// a path outside their table 403, and nothing reaches a provider.
func TestTheProxyRefusesTheCloudProvidersClearly(t *testing.T) {
	provider := newProvidersStandIn(t)
	a := newProxyAPI(t, provider.baseURLs())
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"vertex", "azure-openai"}})
	bearer := []string{"Authorization", "Bearer " + tok.Token}
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/proxy/vertex/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent", http.StatusNotFound, "no_key"},
		{"/proxy/azure-openai/openai/deployments/gpt4o/chat/completions", http.StatusNotFound, "no_key"},
		{"/proxy/vertex/v1/projects/p/locations/us-central1/endpoints/e1:predict", http.StatusForbidden, "endpoint_not_allowed"},
		{"/proxy/azure-openai/openai/assistants", http.StatusForbidden, "endpoint_not_allowed"},
	} {
		resp, body := a.proxyCall("POST", tc.path, `{"messages":[]}`, bearer...)
		if resp.StatusCode != tc.status || !strings.Contains(body, `"`+tc.code+`"`) {
			t.Errorf("%s: %d %s", tc.path, resp.StatusCode, body)
		}
	}
	provider.mu.Lock()
	defer provider.mu.Unlock()
	if len(provider.calls) != 0 {
		t.Fatalf("the stand-in got %d calls", len(provider.calls))
	}
}
