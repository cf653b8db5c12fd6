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

// googleTokenURI is the token_uri of the tests' service-account files
// (the assertions' audience); the broker posts them to the stand-in.
const googleTokenURI = "https://oauth2.googleapis.com/token"

// vertexAccount makes a service account of project known to g and
// returns its key file and the lines of its private key (for leak checks).
func vertexAccount(t *testing.T, g *cloudstub.Google, email, project string) (string, string) {
	t.Helper()
	sa, key := cloudstub.ServiceAccountFile(t, email, project, googleTokenURI)
	g.AddServiceAccount(email, project, googleTokenURI, &key.PublicKey)
	var f struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(sa), &f); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(f.PrivateKey, "\n") {
		if len(line) >= 16 {
			remember(line)
		}
	}
	return sa, f.PrivateKey
}

// newVertexGround is a proxy whose Vertex calls reach g at every regional
// host (and the global one), with tokens minted by g from the service
// accounts.
func newVertexGround(t *testing.T, g *cloudstub.Google) (*api, *hostRouter) {
	t.Helper()
	hosts := map[string]string{"aiplatform.googleapis.com": g.URL}
	for _, loc := range []string{"europe-west4", "us-central1", "us-east5"} {
		hosts[loc+"-aiplatform.googleapis.com"] = g.URL
	}
	router := newHostRouter(t, hosts)
	a := newProxyAPIGround(t, kbtest.Options{Broker: func(c *broker.Config) {
		c.MintEndpoints = map[string]map[string]string{"vertex": {"google_token": g.TokenURL()}}
	}}, nil, func(c *proxy.Config) { c.Transport = router })
	return a, router
}

// Vertex calls go to the serving key's location's host with the access
// token minted from its service account (once: it is cached), never the
// caller's token: Gemini's generateContent and streamGenerateContent
// (server-sent events with alt=sse kept), Anthropic's rawPredict and
// streamRawPredict; "-" for the project and location is the key's; a path
// naming another project or location is refused before Vertex hears of
// it; the calls are recorded; neither the private key nor the token is in
// an answer.
func TestTheProxyForwardsVertexCallsWithTheMintedToken(t *testing.T) {
	g := cloudstub.NewGoogle(t)
	sa, pem := vertexAccount(t, g, "proxy@kb-proxy-project.iam.gserviceaccount.com", "kb-proxy-project")
	a, router := newVertexGround(t, g)
	a.addCredentialKey("ws1", "vertex", "main", 0, map[string]any{"project": "kb-proxy-project", "location": "europe-west4", "serviceAccountJson": sa})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"vertex"}})
	const base = "/proxy/vertex/v1/projects/kb-proxy-project/locations/europe-west4/publishers/"
	gemini := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	claude := `{"anthropic_version":"vertex-2023-10-16","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`

	var answers []string
	for _, tc := range []struct {
		name, path, body, wantPath, wantQ string
		header                            []string
		want                              string
	}{
		{"generateContent", base + "google/models/gemini-2.0-flash-001:generateContent", gemini,
			"/v1/projects/kb-proxy-project/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent", "",
			[]string{"X-Goog-Api-Key", tok.Token}, `"Hello from gemini-2.0-flash-001"`},
		{"rawPredict, the key's project and location", "/proxy/vertex/v1/projects/-/locations/-/publishers/anthropic/models/claude-3-5-haiku@20241022:rawPredict", claude,
			"/v1/projects/kb-proxy-project/locations/europe-west4/publishers/anthropic/models/claude-3-5-haiku@20241022:rawPredict", "",
			[]string{"Authorization", "Bearer " + tok.Token}, `"Hello from claude-3-5-haiku@20241022"`},
		{"generateContent under v1beta1", "/proxy/vertex/v1beta1/projects/kb-proxy-project/locations/-/publishers/google/models/gemini-2.0-flash-001:generateContent", gemini,
			"/v1beta1/projects/kb-proxy-project/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent", "",
			[]string{"X-Goog-Api-Key", tok.Token}, `"Hello from gemini-2.0-flash-001"`},
	} {
		before := len(g.Requests())
		resp, answer := a.proxyCall("POST", tc.path, tc.body, tc.header...)
		if resp.StatusCode != http.StatusOK || !strings.Contains(answer, tc.want) || resp.Header.Get("X-Keybroker-Key-Id") != "main" {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, answer)
		}
		answers = append(answers, answer)
		got := g.Requests()
		if len(got) != before+1 || got[len(got)-1].Path != tc.wantPath || got[len(got)-1].Host != "europe-west4-aiplatform.googleapis.com" {
			t.Fatalf("%s: Vertex got %+v", tc.name, got[before:])
		}
	}

	// Gemini's stream, as server-sent events (alt=sse reaches Vertex).
	resp, answer := a.proxyCall("POST", base+"google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse", gemini, "X-Goog-Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("streamGenerateContent: %d %s", resp.StatusCode, answer)
	}
	var text strings.Builder
	for _, ev := range strings.Split(strings.TrimSpace(strings.ReplaceAll(answer, "\r\n", "\n")), "\n\n") {
		var chunk struct {
			Candidates []struct {
				Content struct {
					Parts []struct{ Text string } `json:"parts"`
				} `json:"content"`
			} `json:"candidates"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &chunk); err != nil || len(chunk.Candidates) != 1 {
			t.Fatalf("event %q: %v", ev, err)
		}
		text.WriteString(chunk.Candidates[0].Content.Parts[0].Text)
	}
	if text.String() != "Hello from gemini-2.0-flash-001" {
		t.Fatalf("streamed %q", text.String())
	}
	if q := g.Requests()[len(g.Requests())-1].RawQuery; q != "alt=sse" {
		t.Fatalf("Vertex got the query %q", q)
	}
	answers = append(answers, answer)

	// Anthropic's stream on Vertex.
	resp, answer = a.proxyCall("POST", base+"anthropic/models/claude-3-5-haiku@20241022:streamRawPredict", claude, "Authorization", "Bearer "+tok.Token)
	var names []string
	for _, line := range strings.Split(answer, "\n") {
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, name)
		}
	}
	if resp.StatusCode != http.StatusOK || strings.Join(names, ",") != "message_start,content_block_delta,message_stop" {
		t.Fatalf("streamRawPredict: %d %v %s", resp.StatusCode, names, answer)
	}
	answers = append(answers, answer)

	// Another project or location than the key's: refused, not sent.
	reached := len(g.Requests())
	for _, tc := range []struct{ path, code string }{
		{"/proxy/vertex/v1/projects/someone-elses/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent", "project_mismatch"},
		{"/proxy/vertex/v1/projects/kb-proxy-project/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent", "location_mismatch"},
	} {
		resp, answer := a.proxyCall("POST", tc.path, gemini, "X-Goog-Api-Key", tok.Token)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(answer, `"`+tc.code+`"`) || strings.Contains(answer, "kb-proxy-project") {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, answer)
		}
		answers = append(answers, answer)
	}
	if n := len(g.Requests()); n != reached {
		t.Fatalf("%d refused calls reached Vertex", n-reached)
	}

	// One token minted and cached; it, and nothing else, authorized
	// every call; the caller's token never reached Vertex.
	minted := g.Issued()
	if g.Mints() != 1 || len(minted) != 1 {
		t.Fatalf("%d tokens minted", g.Mints())
	}
	remember(minted[0])
	for _, req := range g.Requests() {
		if req.Header.Get("Authorization") != "Bearer "+minted[0] || req.Header.Get("X-Goog-Api-Key") != "" {
			t.Fatalf("Vertex got Authorization %q, x-goog-api-key %q", req.Header.Get("Authorization"), req.Header.Get("X-Goog-Api-Key"))
		}
		for name, vs := range req.Header {
			if strings.Contains(strings.Join(vs, " "), tok.Token) {
				t.Fatalf("Vertex got the caller's token in %s", name)
			}
		}
	}
	for _, h := range router.hosts() {
		if h != "europe-west4-aiplatform.googleapis.com" {
			t.Fatalf("a call went to %s", h)
		}
	}

	calls := a.proxyCallsOf("ws1", 7)
	ok := 0
	for _, c := range calls {
		if c.Provider != "vertex" || c.KeyID != "main" || c.Caller != tok.ID {
			t.Fatalf("listed %+v", c)
		}
		if c.Status == http.StatusOK {
			ok++
		}
	}
	if ok != 5 {
		t.Fatalf("%d calls listed as served, want 5", ok)
	}
	assertNothingHolds(t, "an answer", append(answers, string(mustJSON(t, calls))), pem, minted[0])
}

// A pool of two Vertex keys of two projects and locations: the first's
// service account may not use Vertex (403 before the first byte), and the
// call written with "-" is made again with the second, at its own
// location's host. A call naming the first key's project gets the first
// key's refusal back (the second cannot serve it). A proxy token's model
// list judges the path's model; a token for another provider is refused.
func TestTheProxyFailsOverBetweenVertexKeysOfTwoProjects(t *testing.T) {
	g := cloudstub.NewGoogle(t)
	saA, pemA := vertexAccount(t, g, "denied@kb-project-a.iam.gserviceaccount.com", "kb-project-a")
	g.DenyVertex("denied@kb-project-a.iam.gserviceaccount.com")
	saB, pemB := vertexAccount(t, g, "proxy@kb-project-b.iam.gserviceaccount.com", "kb-project-b")
	a, router := newVertexGround(t, g)
	a.addCredentialKey("ws1", "vertex", "first", 0, map[string]any{"project": "kb-project-a", "location": "europe-west4", "serviceAccountJson": saA})
	a.addCredentialKey("ws1", "vertex", "second", 1, map[string]any{"project": "kb-project-b", "location": "us-east5", "serviceAccountJson": saB})
	tok := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"vertex"}, Models: []string{"gemini-2.0-flash-001"}})
	gemini := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`

	resp, answer := a.proxyCall("POST", "/proxy/vertex/v1/projects/-/locations/-/publishers/google/models/gemini-2.0-flash-001:generateContent", gemini, "X-Goog-Api-Key", tok.Token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Keybroker-Key-Id") != "second" {
		t.Fatalf("failover: %d %s", resp.StatusCode, answer)
	}
	answers := []string{answer}
	if hosts := router.hosts(); strings.Join(hosts, ",") != "europe-west4-aiplatform.googleapis.com,us-east5-aiplatform.googleapis.com" {
		t.Fatalf("hosts asked: %v", hosts)
	}
	reqs := g.Requests()
	if len(reqs) != 2 || !strings.HasPrefix(reqs[0].Path, "/v1/projects/kb-project-a/locations/europe-west4/") ||
		!strings.HasPrefix(reqs[1].Path, "/v1/projects/kb-project-b/locations/us-east5/") || g.Calls() != 1 {
		t.Fatalf("Vertex got %+v", reqs)
	}

	// A call naming the first key's project, by a token the first key was
	// not taken from: the first key's refusal comes back as it came.
	fresh := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"vertex"}})
	resp, answer = a.proxyCall("POST", "/proxy/vertex/v1/projects/kb-project-a/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent",
		gemini, "X-Goog-Api-Key", fresh.Token)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, "PERMISSION_DENIED") || resp.Header.Get("X-Keybroker-Key-Id") != "first" {
		t.Fatalf("a call only the refused key could serve: %d %s", resp.StatusCode, answer)
	}
	answers = append(answers, answer)
	if n := len(g.Requests()); n != 3 {
		t.Fatalf("%d calls reached Vertex, want 3", n)
	}

	// The model list, judged by the path's model.
	resp, answer = a.proxyCall("POST", "/proxy/vertex/v1/projects/-/locations/-/publishers/google/models/gemini-2.5-pro:generateContent", gemini, "X-Goog-Api-Key", tok.Token)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"model_not_allowed"`) {
		t.Fatalf("a model not allowed: %d %s", resp.StatusCode, answer)
	}
	other := a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"google"}})
	resp, answer = a.proxyCall("POST", "/proxy/vertex/v1/projects/-/locations/-/publishers/google/models/gemini-2.0-flash-001:generateContent", gemini, "X-Goog-Api-Key", other.Token)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(answer, `"provider_not_allowed"`) {
		t.Fatalf("another provider's token: %d %s", resp.StatusCode, answer)
	}
	if n := len(g.Requests()); n != 3 {
		t.Fatalf("refused calls reached Vertex (%d calls)", n)
	}

	calls := a.proxyCallsOf("ws1", 2)
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
	minted := g.Issued()
	for _, m := range minted {
		remember(m)
	}
	assertNothingHolds(t, "an answer", append(answers, string(mustJSON(t, calls))), append([]string{pemA, pemB}, minted...)...)
}
