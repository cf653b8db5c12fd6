package handlers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
)

const (
	azureTenant = "7c1d4f2e-0000-4000-8000-00000000a2e0"
	azureClient = "0b5e9a3c-0000-4000-8000-00000000c11e"
)

// azureDeploymentsOf is the key's deployments (model → deployment) and
// the stand-in's (deployment → model) of the tests.
var (
	azureKeyDeployments = map[string]any{"gpt-4o": "gpt4o-prod", "gpt-4o-mini": "mini-prod", "text-embedding-3-small": "embed-prod"}
	azureDeployed       = map[string]string{"gpt4o-prod": "gpt-4o", "mini-prod": "gpt-4o-mini", "embed-prod": "text-embedding-3-small"}
)

// newAzureGround is a proxy whose Azure OpenAI calls reach the resources
// of hosts (host → stand-in) and whose Entra tokens come from entra.
func newAzureGround(t *testing.T, entra *cloudstub.Entra, hosts map[string]string) (*api, *hostRouter) {
	t.Helper()
	router := newHostRouter(t, hosts)
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintEndpoints = map[string]map[string]string{"azure-openai": {"entra": entra.URL}}
	}}, nil, func(c *proxy.Config) { c.Transport = router })
	return a, router
}

// Calls to Azure OpenAI go to the serving key's resource with its api-key
// (never the caller's token): Azure's own deployment paths (as openai's
// AzureOpenAI client sends them: the model as the deployment, the token in
// api-key, the caller's api-version kept) with the model mapped to its
// deployment, a deployment named as it is, the OpenAI-style paths sent to
// the model's deployment with the key's api-version, a streamed chat
// completion event by event; a model the key does not deploy is refused
// before anything reaches Azure; the calls are recorded; no secret is in
// an answer.
func TestTheProxyForwardsAzureOpenAICallsToTheKeysDeployments(t *testing.T) {
	apiKey := remember("AzureProxyTestKey0123456789abcdefABCDEF")
	entra := cloudstub.NewEntra(t)
	res := cloudstub.NewAzureOpenAI(t, apiKey, nil, azureDeployed)
	a, router := newAzureGround(t, entra, map[string]string{"kb-proxy-a.openai.azure.com": res.URL})
	a.addCredentialKey("ws1", "azure-openai", "main", 0, map[string]any{"endpoint": "https://kb-proxy-a.openai.azure.com",
		"apiVersion": "2024-10-21", "deployments": azureKeyDeployments, "apiKey": apiKey})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"azure-openai"}})
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

	var answers []string
	for _, tc := range []struct {
		name, path, body string
		header           []string
		wantPath, wantQ  string
		wantText         string
	}{
		{"AzureOpenAI's shape", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01", chat, []string{"Api-Key", tok.Token},
			"/openai/deployments/gpt4o-prod/chat/completions", "api-version=2024-06-01", "Hello from gpt4o-prod"},
		{"a deployment's name", "/openai/deployments/mini-prod/chat/completions", chat, []string{"Authorization", "Bearer " + tok.Token},
			"/openai/deployments/mini-prod/chat/completions", "api-version=2024-10-21", "Hello from mini-prod"},
		{"OpenAI-style chat", "/v1/chat/completions", chat, []string{"Authorization", "Bearer " + tok.Token},
			"/openai/deployments/gpt4o-prod/chat/completions", "api-version=2024-10-21", "Hello from gpt4o-prod"},
		{"OpenAI-style embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, []string{"Api-Key", tok.Token},
			"/openai/deployments/embed-prod/embeddings", "api-version=2024-10-21", `"embedding"`},
		{"AzureOpenAI's Responses", "/openai/responses?api-version=2025-03-01-preview", `{"model":"gpt-4o","input":"hi"}`, []string{"Api-Key", tok.Token},
			"/openai/responses", "api-version=2025-03-01-preview", "Hello from gpt4o-prod"},
		{"OpenAI-style Responses", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`, []string{"Api-Key", tok.Token},
			"/openai/v1/responses", "", "Hello from gpt4o-prod"},
		{"Azure's v1 API, a model", "/openai/v1/chat/completions", chat, []string{"Api-Key", tok.Token},
			"/openai/deployments/gpt4o-prod/chat/completions", "api-version=2024-10-21", "Hello from gpt4o-prod"},
		{"Azure's v1 API, a deployment", "/openai/v1/chat/completions", `{"model":"mini-prod","messages":[{"role":"user","content":"hi"}]}`, []string{"Api-Key", tok.Token},
			"/openai/v1/chat/completions", "", "Hello from "},
	} {
		before := len(res.Requests())
		resp, answer := a.proxyCall("POST", "/proxy/azure-openai"+tc.path, tc.body, tc.header...)
		if resp.StatusCode != http.StatusOK || !strings.Contains(answer, tc.wantText) || resp.Header.Get("X-Keybroker-Key-Id") != "main" {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, answer)
		}
		answers = append(answers, answer)
		got := res.Requests()
		if len(got) != before+1 {
			t.Fatalf("%s: %d calls reached Azure", tc.name, len(got)-before)
		}
		req := got[len(got)-1]
		if req.Path != tc.wantPath || req.RawQuery != tc.wantQ || req.Host != "kb-proxy-a.openai.azure.com" {
			t.Fatalf("%s: Azure got %s %s?%s", tc.name, req.Host, req.Path, req.RawQuery)
		}
	}

	// OpenAI's models listing is Azure's v1 API's.
	if resp, answer := a.proxyCall("GET", "/proxy/azure-openai/v1/models", "", "Api-Key", tok.Token); resp.StatusCode != http.StatusOK || !strings.Contains(answer, `"gpt-4o-mini"`) {
		t.Fatalf("the models listing: %d %s", resp.StatusCode, answer)
	}
	if req := res.Requests()[len(res.Requests())-1]; req.Path != "/openai/v1/models" || req.RawQuery != "" {
		t.Fatalf("the listing went to %s?%s", req.Path, req.RawQuery)
	}

	// A streamed chat completion comes back event by event.
	resp, answer := a.proxyCall("POST", "/proxy/azure-openai/v1/chat/completions",
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, answer)
	}
	var text strings.Builder
	events := strings.Split(strings.TrimSpace(answer), "\n\n")
	for _, ev := range events[:len(events)-1] {
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &chunk); err != nil || len(chunk.Choices) != 1 {
			t.Fatalf("event %q: %v", ev, err)
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	if text.String() != "Hello from mini-prod" || events[len(events)-1] != "data: [DONE]" {
		t.Fatalf("streamed %q, last event %q", text.String(), events[len(events)-1])
	}
	answers = append(answers, answer)

	// A model the key deploys nowhere is refused before Azure hears of it.
	served := len(res.Requests())
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"o1","messages":[{"role":"user","content":"hi"}]}`},
		{"/openai/deployments/o1/chat/completions?api-version=2024-10-21", chat},
		{"/openai/v1/chat/completions", `{"model":"o1","messages":[{"role":"user","content":"hi"}]}`},
	} {
		resp, answer := a.proxyCall("POST", "/proxy/azure-openai"+tc.path, tc.body, "Api-Key", tok.Token)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(answer, `"model_not_deployed"`) {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, answer)
		}
		answers = append(answers, answer)
	}
	// An OpenAI-style call whose model cannot be read has no deployment.
	resp, answer = a.proxyCall("POST", "/proxy/azure-openai/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, "Api-Key", tok.Token)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(answer, `"invalid_request"`) {
		t.Fatalf("no model: %d %s", resp.StatusCode, answer)
	}
	if n := len(res.Requests()); n != served {
		t.Fatalf("%d refused calls reached Azure", n-served)
	}

	// What reached Azure: the key in api-key, never the caller's token
	// nor an Authorization header; only the resource's host.
	for _, req := range res.Requests() {
		if req.Header.Get("Api-Key") != apiKey || req.Header.Get("Authorization") != "" {
			t.Fatalf("Azure got api-key %q, Authorization %q", req.Header.Get("Api-Key"), req.Header.Get("Authorization"))
		}
		for name, vs := range req.Header {
			if strings.Contains(strings.Join(vs, " "), tok.Token) || strings.HasPrefix(strings.ToLower(name), "x-keybroker") {
				t.Fatalf("Azure got the caller's %s", name)
			}
		}
	}
	for _, h := range router.hosts() {
		if h != "kb-proxy-a.openai.azure.com" {
			t.Fatalf("a call went to %s", h)
		}
	}

	// The calls are recorded, with the key that served them.
	calls := a.proxyCallsOf("ws1", 14)
	ok := 0
	for _, c := range calls {
		if c.Provider != "azure-openai" || c.KeyID != "main" || c.Caller != tok.ID {
			t.Fatalf("listed %+v", c)
		}
		if c.Status == http.StatusOK {
			ok++
		}
	}
	if ok != 10 {
		t.Fatalf("%d calls listed as served, want 10: %+v", ok, calls)
	}
	assertNothingHolds(t, "an answer", append(answers, string(mustJSON(t, calls))), apiKey)
}

// A pool of two Azure keys of two resources: the first's api-key is
// refused (401) before the first byte, and the call is made again with the
// second, an Entra application whose token the broker minted (the client
// secret never leaves keybroker), at its own resource. A proxy token's
// model list judges the model, whether the call names it or its
// deployment; a token for another provider is refused; neither the keys,
// the client secret nor the minted token are in an answer (nor, by the
// package's checks, in a log or the database).
func TestTheProxyFailsOverBetweenAzureKeysAndHonoursModelLists(t *testing.T) {
	wrongKey := remember("AzureProxyTestWrongKey0123456789abcdef")
	secret := remember("azure~proxy.client-secret_0123456789")
	entra := cloudstub.NewEntra(t)
	entra.AddApplication(azureTenant, azureClient, secret)
	first := cloudstub.NewAzureOpenAI(t, remember("AzureProxyTestRealKeyOfA0123456789abcd"), nil, azureDeployed)
	second := cloudstub.NewAzureOpenAI(t, "", entra, azureDeployed)
	a, router := newAzureGround(t, entra, map[string]string{"kb-first.openai.azure.com": first.URL, "kb-second.cognitiveservices.azure.com": second.URL})
	a.addCredentialKey("ws1", "azure-openai", "first", 0, map[string]any{"endpoint": "https://kb-first.openai.azure.com",
		"apiVersion": "2024-10-21", "deployments": azureKeyDeployments, "apiKey": wrongKey})
	a.addCredentialKey("ws1", "azure-openai", "second", 1, map[string]any{"endpoint": "https://kb-second.cognitiveservices.azure.com",
		"apiVersion": "2025-01-01-preview", "deployments": azureKeyDeployments, "tenantId": azureTenant, "clientId": azureClient, "clientSecret": secret})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"azure-openai"}, Models: []string{"gpt-4o"}})

	resp, answer := a.proxyCall("POST", "/proxy/azure-openai/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
		`{"messages":[{"role":"user","content":"hi"}]}`, "Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "second" || !strings.Contains(answer, "Hello from gpt4o-prod") {
		t.Fatalf("failover: %d %s (key %s)", resp.StatusCode, answer, resp.Header.Get("X-Keybroker-Key-Id"))
	}
	if hosts := router.hosts(); len(hosts) != 2 || hosts[0] != "kb-first.openai.azure.com" || hosts[1] != "kb-second.cognitiveservices.azure.com" {
		t.Fatalf("hosts asked: %v", hosts)
	}
	if first.Calls() != 0 || second.Calls() != 1 || entra.Mints() != 1 {
		t.Fatalf("first served %d, second %d, Entra minted %d", first.Calls(), second.Calls(), entra.Mints())
	}
	// The second resource got a bearer token its Entra issued; the first
	// the stored key; neither the caller's token.
	if got := first.Requests()[0].Header.Get("Api-Key"); got != wrongKey {
		t.Fatalf("the first resource got api-key %q", got)
	}
	minted := entra.Issued()
	if len(minted) != 1 {
		t.Fatalf("Entra issued %d tokens", len(minted))
	}
	remember(minted[0])
	if req := second.Requests()[0]; req.Header.Get("Authorization") != "Bearer "+minted[0] || req.Header.Get("Api-Key") != "" {
		t.Fatalf("the second resource got Authorization %q, api-key %q", req.Header.Get("Authorization"), req.Header.Get("Api-Key"))
	}

	// The model list: the model's deployment passes, another model (by
	// its name, or its deployment's) is refused before Azure hears of it.
	answers := []string{answer}
	resp, answer = a.proxyCall("POST", "/proxy/azure-openai/openai/deployments/gpt4o-prod/chat/completions",
		`{"messages":[{"role":"user","content":"hi"}]}`, "Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the allowed model's deployment: %d %s", resp.StatusCode, answer)
	}
	answers = append(answers, answer)
	reached := len(first.Requests()) + len(second.Requests())
	for _, tc := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`},
		{"/openai/deployments/mini-prod/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`},
		{"/openai/deployments/gpt-4o-mini/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/embeddings", `{"input":"hi"}`},
	} {
		resp, answer := a.proxyCall("POST", "/proxy/azure-openai"+tc.path, tc.body, "Authorization", "Bearer "+tok.Token)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"model_not_allowed"`) {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, answer)
		}
		answers = append(answers, answer)
	}
	if n := len(first.Requests()) + len(second.Requests()); n != reached {
		t.Fatalf("%d calls of models not allowed reached Azure", n-reached)
	}

	// A token for another provider may not call Azure.
	other := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}})
	resp, answer = a.proxyCall("POST", "/proxy/azure-openai/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`, "Api-Key", other.Token)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"provider_not_allowed"`) {
		t.Fatalf("another provider's token: %d %s", resp.StatusCode, answer)
	}

	// The records: the failed-over call names the key that served it.
	calls := a.proxyCallsOf("ws1", 5)
	var retried int
	for _, c := range calls {
		if c.Retried {
			retried++
			if c.KeyID != "second" || c.Status != http.StatusOK {
				t.Fatalf("the retried call is listed as %+v", c)
			}
		}
	}
	if retried != 1 {
		t.Fatalf("%d calls listed as retried: %+v", retried, calls)
	}
	assertNothingHolds(t, "an answer", append(answers, string(mustJSON(t, calls))), wrongKey, secret, minted[0])
}
