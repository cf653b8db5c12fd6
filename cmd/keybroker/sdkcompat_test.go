package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/awsstub"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/testpki"
)

// The unmodified official SDKs from npm (clients/sdkcompat: the AWS SDK's
// Bedrock runtime client, openai's AzureOpenAI, @google/genai on Vertex)
// call through a proxy replica over the real Vault and PostgreSQL, which
// serves TLS as deployed (the AWS SDK speaks HTTP/2 by default). Each
// cloud is its stand-in (internal/fixtures/awsstub, cloudstub), which
// checks what the real one checks: the SigV4 signature, the Azure key,
// the Google access token minted from the service account. A recording
// pass-through in front of each stand-in refuses any call that carries a
// keybroker token, and keeps what the token services answered, so that
// the minted credentials can be looked for too: neither they nor the
// long-lived secrets nor the proxy token may appear in a replica's log,
// the Node output or a dump of the database.

// TestSDKBedrockRuntimeThroughTheProxy: @aws-sdk/client-bedrock-runtime,
// its endpoint set to the proxy, calls Converse, ConverseStream (the
// event stream iterated), InvokeModel and InvokeModelWithResponseStream,
// signed with its own dummy credentials and the proxy token in x-api-key,
// and Converse with the proxy token as a Bedrock API key; the stand-in
// verifies every call's signature with the session the proxy minted.
func TestSDKBedrockRuntimeThroughTheProxy(t *testing.T) {
	const region = "eu-west-1"
	stub := awsstub.New(t, region)
	keyID := "AKIA" + randomFrom(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
	secret := randomFrom(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40)
	stub.AddKey(keyID, secret)
	// STS and Bedrock are one stand-in; the front keeps STS's answers
	// (path /), which hold the minted sessions.
	front := newSDKFront(t, stub.URL, func(r *http.Request) bool { return r.URL.Path == "/" }, false)

	s := newSDKGround(t)
	s.addKey(t, "bedrock", map[string]any{"region": region, "accessKeyId": keyID, "secretAccessKey": secret,
		"modelMap": map[string]any{"claude-haiku": "us.anthropic.claude-3-haiku-20240307-v1:0"}})
	proxyURL := s.startProxy(t, "KEYBROKER_PROVIDER_BEDROCK_BASE_URL="+front.srv.URL, "KEYBROKER_PROVIDER_BEDROCK_STS_URL="+front.srv.URL)
	tok := s.proxyToken(t, "bedrock")

	out := s.runNode(t, "tests/bedrock.test.mjs", "KEYBROKER_PROXY_URL="+proxyURL, "KEYBROKER_PROXY_TOKEN="+tok.Token, "BEDROCK_REGION="+region)

	calls := stub.Calls()
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.Operation+" "+c.Model)
		if !c.Session || !stub.IsSession(c.AccessKeyID) {
			t.Errorf("%s was not signed with a minted session: %+v", c.Operation, c)
		}
	}
	want := "Converse anthropic.claude-3-haiku-20240307-v1:0, ConverseStream us.anthropic.claude-3-haiku-20240307-v1:0, " +
		"InvokeModel amazon.nova-micro-v1:0, InvokeModelWithResponseStream amazon.nova-micro-v1:0, Converse amazon.nova-micro-v1:0"
	if got := strings.Join(ops, ", "); got != want {
		t.Fatalf("the stand-in answered %s;\nwant %s", got, want)
	}
	for _, h := range front.requestHeaders() {
		if strings.Contains(h.Get("Authorization"), "AKIADUMMYSDKCALLER00") || h.Get("X-Api-Key") != "" {
			t.Errorf("the SDK's own credentials reached the stand-in: %v", h)
		}
	}
	minted := front.answersMatching(t, `<(?:SecretAccessKey|SessionToken)>([^<]+)</`)
	s.assertLeakFree(t, out, append(minted, keyID, secret, tok.Token))
}

// TestSDKAzureOpenAIThroughTheProxy: openai's AzureOpenAI client, its
// endpoint the proxy's Azure base and its apiKey the proxy token (sent as
// api-key), calls chat.completions.create with and without stream, on a
// deployment named by the model of the key's deployments map and by its
// own name; the stand-in takes only the resource's key.
func TestSDKAzureOpenAIThroughTheProxy(t *testing.T) {
	key := randomFrom(t, "abcdef0123456789", 32)
	stub := cloudstub.NewAzureOpenAI(t, key, nil, map[string]string{"gpt4o-prod": "gpt-4o"})
	front := newSDKFront(t, stub.URL, nil, true)

	s := newSDKGround(t)
	s.addKey(t, "azure-openai", map[string]any{"endpoint": "https://kb-sdk-test.openai.azure.com", "apiVersion": "2024-10-21",
		"deployments": map[string]any{"gpt-4o": "gpt4o-prod"}, "apiKey": key})
	proxyURL := s.startProxy(t, "KEYBROKER_PROVIDER_AZURE_OPENAI_BASE_URL="+front.srv.URL)
	tok := s.proxyToken(t, "azure-openai")

	out := s.runNode(t, "tests/azure-openai.test.mjs", "KEYBROKER_PROXY_URL="+proxyURL, "KEYBROKER_PROXY_TOKEN="+tok.Token,
		"AZURE_OPENAI_API_VERSION=2024-10-21")

	if n := stub.Calls(); n != 4 {
		t.Errorf("the stand-in served %d calls, want 4", n)
	}
	for _, h := range front.requestHeaders() {
		if h.Get("Api-Key") != key {
			t.Errorf("a call reached the stand-in without the resource's key in api-key")
		}
	}
	s.assertLeakFree(t, out, []string{key, tok.Token})
}

// TestSDKVertexThroughTheProxy: @google/genai on Vertex AI (vertexai,
// project and location set, the base URL the proxy's Vertex base and the
// proxy token as its API key, sent in x-goog-api-key; no Google
// credentials) calls generateContent and generateContentStream; the
// stand-in takes only the access token minted from the service account.
func TestSDKVertexThroughTheProxy(t *testing.T) {
	const project, location = "kb-sdk-test", "europe-west4"
	const email = "broker@kb-sdk-test.iam.gserviceaccount.com"
	// The key file names Google's token service (the audience of its
	// assertions); the replica sends them to the stand-in's.
	const tokenURI = "https://oauth2.googleapis.com/token"
	google := cloudstub.NewGoogle(t)
	sa, key := cloudstub.ServiceAccountFile(t, email, project, tokenURI)
	google.AddServiceAccount(email, project, tokenURI, &key.PublicKey)
	front := newSDKFront(t, google.URL, func(r *http.Request) bool { return r.URL.Path == cloudstub.GoogleTokenPath }, false)

	s := newSDKGround(t)
	s.addKey(t, "vertex", map[string]any{"project": project, "location": location, "serviceAccountJson": sa})
	proxyURL := s.startProxy(t, "KEYBROKER_PROVIDER_VERTEX_BASE_URL="+front.srv.URL,
		"KEYBROKER_PROVIDER_VERTEX_GOOGLE_TOKEN_URL="+front.srv.URL+cloudstub.GoogleTokenPath)
	tok := s.proxyToken(t, "vertex")

	out := s.runNode(t, "tests/vertex.test.mjs", "KEYBROKER_PROXY_URL="+proxyURL, "KEYBROKER_PROXY_TOKEN="+tok.Token,
		"VERTEX_PROJECT="+project, "VERTEX_LOCATION="+location)

	if n := google.Calls(); n != 2 {
		t.Errorf("the stand-in served %d Vertex calls, want 2", n)
	}
	for _, h := range front.requestHeaders() {
		if h.Get("X-Goog-Api-Key") != "" {
			t.Errorf("the SDK's x-goog-api-key reached the stand-in")
		}
	}
	var saFields struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(sa), &saFields); err != nil {
		t.Fatal(err)
	}
	// The private key's base64 lines, each long enough to be its own.
	secrets := []string{tok.Token}
	for _, line := range strings.Split(saFields.PrivateKey, "\n") {
		if len(line) >= 60 {
			secrets = append(secrets, line)
		}
	}
	minted := front.answersMatching(t, `"access_token":"([^"]+)"`)
	s.assertLeakFree(t, out, append(secrets, minted...))
}

// sdkInstall is the one `npm ci` of clients/sdkcompat for the test
// binary, and its licence check.
var sdkInstall struct {
	once      sync.Once
	node, dir string
	err       error
}

// sdkcompat installs clients/sdkcompat's pinned packages (npm ci, from
// npm's cache outside the checkout: a second run downloads nothing) and
// checks that every one of them is under a licence the project takes;
// it returns node and the folder.
func sdkcompat(t *testing.T) (node, dir string) {
	t.Helper()
	sdkInstall.once.Do(func() {
		s := &sdkInstall
		if s.node, s.err = devenv.FindTool("node"); s.err != nil {
			return
		}
		npm, err := devenv.FindTool("npm")
		if err != nil {
			s.err = err
			return
		}
		if s.dir, s.err = filepath.Abs(filepath.Join("..", "..", "clients", "sdkcompat")); s.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for _, c := range []*exec.Cmd{
			exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"),
			exec.CommandContext(ctx, s.node, "check-licences.mjs"),
		} {
			c.Dir = s.dir
			if out, err := c.CombinedOutput(); err != nil {
				s.err = fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out)
				return
			}
		}
	})
	if sdkInstall.err != nil {
		t.Fatal(sdkInstall.err)
	}
	return sdkInstall.node, sdkInstall.dir
}

// sdkGround is an admin and a resolver replica over the real Vault and
// PostgreSQL; each test adds its proxy replica (startProxy).
type sdkGround struct {
	g               *approleGround
	node, dir       string
	admin, resolver *client.Client
	logs            map[string]*testenv.SyncBuffer
	ca              *testpki.CA
}

func newSDKGround(t *testing.T) *sdkGround {
	t.Helper()
	node, dir := sdkcompat(t)
	s := &sdkGround{g: newApproleGround(t, nil), node: node, dir: dir, logs: map[string]*testenv.SyncBuffer{}}
	adminAddr, adminLogs := startServe(t, s.g.modeEnv(t, "admin"))
	resolverAddr, resolverLogs := startServe(t, s.g.modeEnv(t, "resolver"))
	s.logs["admin"], s.logs["resolver"] = adminLogs, resolverLogs
	var err error
	if s.admin, err = client.New(client.Config{Address: "http://" + adminAddr, Token: s.g.opToken}); err != nil {
		t.Fatal(err)
	}
	tok := s.g.mintResolver(t, "sdk compatibility test")
	if s.resolver, err = client.New(client.Config{Address: "http://" + resolverAddr, Token: tok.Token}); err != nil {
		t.Fatal(err)
	}
	return s
}

// addKey adds the workspace ws1's key "main" of provider.
func (s *sdkGround) addKey(t *testing.T, provider string, credential map[string]any) {
	t.Helper()
	if _, err := s.admin.AddKey(t.Context(), client.Workspace("ws1"), provider, client.AddKeyRequest{KeyID: "main", Credential: credential}); err != nil {
		t.Fatalf("adding the %s key: %v", provider, err)
	}
}

// proxyToken mints a proxy token of ws1 for provider on the resolver
// replica.
func (s *sdkGround) proxyToken(t *testing.T, provider string) client.ProxyToken {
	t.Helper()
	tok, err := s.resolver.MintProxyToken(t.Context(), client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{provider}, TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startProxy starts a proxy replica that serves TLS (with a certificate
// of a test CA, which Node is told to trust) with the extra environment,
// and returns its https URL. It starts after the key was added: a key it
// reads on its first call.
func (s *sdkGround) startProxy(t *testing.T, extra ...string) string {
	t.Helper()
	s.ca = testpki.NewCA(t, "keybroker sdk test CA")
	pair := s.ca.Server("keybroker proxy")
	addr := freeAddr(t)
	serve := keybroker("serve")
	serve.Env = append(serve.Env, append(s.g.modeEnv(t, "proxy", extra...), "KEYBROKER_LISTEN_ADDR="+addr,
		"KEYBROKER_TLS_CERT_FILE="+pair.CertFile, "KEYBROKER_TLS_KEY_FILE="+pair.KeyFile)...)
	logs := &testenv.SyncBuffer{}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Signal(syscall.SIGTERM); _, _ = serve.Process.Wait() })
	s.logs["proxy"] = logs
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool()}}}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := devenv.WaitHTTPWith(ctx, hc, "https://"+addr+"/readyz", nil, nil); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	return "https://" + addr
}

// runNode runs one script of clients/sdkcompat/tests with Node's test
// runner, trusting the proxy's CA, and returns its output.
func (s *sdkGround) runNode(t *testing.T, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.node, "--test", "--test-reporter=spec", script)
	cmd.Dir = s.dir
	// No cloud settings of the machine's reach the SDKs: they are
	// configured in the scripts alone.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "AWS_") || strings.HasPrefix(name, "AZURE_") || strings.HasPrefix(name, "OPENAI_") ||
			strings.HasPrefix(name, "GOOGLE_") || strings.HasPrefix(name, "GEMINI_") || strings.HasPrefix(name, "KEYBROKER_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, append(env, "NODE_EXTRA_CA_CERTS="+s.ca.CertFile, "AWS_EC2_METADATA_DISABLED=true", "NO_COLOR=1")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s\nthe proxy replica's log:\n%s", script, err, out, s.logs["proxy"].String())
	}
	t.Logf("node --test %s:\n%s", script, out)
	return string(out)
}

// assertLeakFree checks that no secret is in the Node output, a replica's
// log or a dump of the database.
func (s *sdkGround) assertLeakFree(t *testing.T, nodeOut string, secrets []string) {
	t.Helper()
	texts := map[string]string{"the Node output": nodeOut}
	for name, logs := range s.logs {
		texts["the "+name+" replica's log"] = logs.String()
	}
	for i, secret := range secrets {
		if len(secret) < 16 {
			t.Fatalf("secret %d is too short to look for", i)
		}
		for what, text := range texts {
			if strings.Contains(text, secret) {
				t.Errorf("secret %d is in %s", i, what)
			}
		}
	}
	testenv.AssertDumpLacks(t, s.g.dbURL, secrets)
}

// sdkFront is a recording pass-through in front of a stand-in: it keeps
// the headers of every call (the Host the proxy signed is kept, so the
// stand-in checks the same signature), refuses a call that carries a
// keybroker token anywhere in its headers, and keeps the answers of the
// calls keep says (a token service's). With sseChat, a chat completion
// asked with "stream": true that the stand-in answered whole comes back
// as Azure streams it: server-sent chunks, then [DONE].
type sdkFront struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers []http.Header
	answers []string
}

type streamAsked struct{}

func newSDKFront(t *testing.T, target string, keep func(*http.Request) bool, sseChat bool) *sdkFront {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &sdkFront{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		kept := keep != nil && keep(resp.Request)
		asked, _ := resp.Request.Context().Value(streamAsked{}).(bool)
		asked = asked && resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
		if !kept && !asked {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if kept {
			f.mu.Lock()
			f.answers = append(f.answers, string(body))
			f.mu.Unlock()
		}
		if asked {
			if body, err = chatAsSSE(body); err != nil {
				return err
			}
			resp.Header.Set("Content-Type", "text/event-stream")
		}
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		resp.Header.Del("Content-Length")
		return nil
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		for name, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, "kbp_") || strings.Contains(v, "kbt_") {
					http.Error(w, `{"error":{"message":"a keybroker token reached the provider in `+name+`"}}`, http.StatusBadRequest)
					return
				}
			}
		}
		if sseChat && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/chat/completions") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, "reading the body", http.StatusBadRequest)
				return
			}
			var req struct {
				Stream bool `json:"stream"`
			}
			_ = json.Unmarshal(body, &req)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r = r.WithContext(context.WithValue(r.Context(), streamAsked{}, req.Stream))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// chatAsSSE turns a chat completion into the chunks Azure OpenAI streams:
// the role, the content in two pieces, the finish reason, then [DONE].
func chatAsSSE(body []byte) ([]byte, error) {
	var c struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
		return nil, fmt.Errorf("the stand-in's chat completion does not decode: %v", err)
	}
	content := c.Choices[0].Message.Content
	half := len(content) / 2
	var out bytes.Buffer
	for _, choice := range []map[string]any{
		{"index": 0, "delta": map[string]string{"role": "assistant", "content": ""}, "finish_reason": nil},
		{"index": 0, "delta": map[string]string{"content": content[:half]}, "finish_reason": nil},
		{"index": 0, "delta": map[string]string{"content": content[half:]}, "finish_reason": nil},
		{"index": 0, "delta": map[string]string{}, "finish_reason": c.Choices[0].FinishReason},
	} {
		js, err := json.Marshal(map[string]any{"id": c.ID, "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": c.Model,
			"choices": []any{choice}})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&out, "data: %s\n\n", js)
	}
	out.WriteString("data: [DONE]\n\n")
	return out.Bytes(), nil
}

func (f *sdkFront) requestHeaders() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.headers...)
}

// answersMatching returns the first group of every match of pattern in
// the kept answers; it fails the test when there is none (the minted
// credentials it looks for must be there to be looked for).
func (f *sdkFront) answersMatching(t *testing.T, pattern string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.answers {
		for _, m := range re.FindAllStringSubmatch(a, -1) {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("no answer of the token service matches %s", pattern)
	}
	return out
}

// randomFrom is n characters of alphabet, at random.
func randomFrom(t *testing.T, alphabet string, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
