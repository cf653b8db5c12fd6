package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/testpki"
)

// The TypeScript library (clients/typescript) against two real replicas
// over the real Vault and PostgreSQL (the resolver replica with mutual
// TLS): this test builds it with its pinned
// compiler and runs its tests with Node's own test runner, which drive the
// admin replica to change keys and read them through the resolver
// replica, and mint proxy tokens that call a stand-in provider through a
// proxy replica. The Node tests write every provider key and token they
// create to a file;
// none of them may then appear in a replica's log, the Node output or a
// dump of the database.
func TestTheTypeScriptLibraryAgainstRealReplicas(t *testing.T) {
	node, err := devenv.FindTool("node")
	if err != nil {
		t.Fatal(err)
	}
	npm, err := devenv.FindTool("npm")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "clients", "typescript"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// npm ci installs the two development packages (the compiler and
	// Node's types) from package-lock.json; npm's cache is outside the
	// checkout, so a second run downloads nothing.
	for _, args := range [][]string{{"ci", "--no-audit", "--no-fund", "--loglevel=error"}, {"run", "build", "--silent"}} {
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// The admin replica serves plain HTTP on loopback; the resolver
	// replica, which the library talks to, requires mutual TLS.
	g := newApproleGround(t, nil)
	// A platform registered for one workspace, its public key in a JWKS
	// file: the Node tests sign assertions with its private key.
	platform := newTestPlatform(t, "https://platform.typescript.test", "ws-ts-platform")
	adminAddr, adminLogs := startServe(t, append(g.modeEnv(t, "admin"), "KEYBROKER_PLATFORMS_FILE="+platform.registrations))
	ca := testpki.NewCA(t, "keybroker test CA")
	resolverAddr, resolverLogs := startServeTLS(t, ca, g.modeEnv(t, "resolver"))
	// A proxy replica in front of a stand-in for OpenAI, which answers
	// the SHA-256 of the key it got (so the Node test can tell it is the
	// workspace's, without the key going back) and refuses a call that
	// carries a keybroker token.
	openai := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		for name, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, "kbp_") || strings.Contains(v, "kbt_") {
					http.Error(w, `{"error":{"message":"a keybroker token reached the provider in `+name+`"}}`, http.StatusBadRequest)
					return
				}
			}
		}
		if !ok || !strings.HasPrefix(key, "sk-proj-") || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error":{"message":"Incorrect API key provided"}}`, http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256([]byte(key))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion","keySha256":"`+hex.EncodeToString(sum[:])+`"}`)
	}))
	defer openai.Close()
	proxyAddr, proxyLogs := startServe(t, g.modeEnv(t, "proxy", "KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL))
	execPath := ca.Client("execution-path")
	keysFile := filepath.Join(t.TempDir(), "keys")
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1", "--test-reporter=spec", "tests/")
	cmd.Dir = dir
	// Resolver tokens come from the owner's CLI, never from the API.
	type mintedToken struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	var resolverTokens []mintedToken
	for range 12 {
		tok := g.mintResolver(t, "typescript library test")
		resolverTokens = append(resolverTokens, mintedToken{ID: tok.ID, Token: tok.Token})
	}
	resolverJSON, err := json.Marshal(resolverTokens)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(),
		"KEYBROKER_RESOLVER_TOKENS="+string(resolverJSON),
		"KEYBROKER_RESOLVER_TOKENS_CLAIMED="+filepath.Join(t.TempDir(), "claimed"),
		"KEYBROKER_ADMIN_URL=http://"+adminAddr,
		"KEYBROKER_RESOLVER_URL=https://"+resolverAddr,
		"KEYBROKER_PROXY_URL=http://"+proxyAddr,
		"KEYBROKER_RESOLVER_CA_FILE="+ca.CertFile,
		"KEYBROKER_RESOLVER_CERT_FILE="+execPath.CertFile,
		"KEYBROKER_RESOLVER_KEY_FILE="+execPath.KeyFile,
		"KEYBROKER_OPERATOR_TOKEN="+g.opToken,
		"KEYBROKER_TEST_KEYS_FILE="+keysFile,
		"KEYBROKER_TEST_PLATFORM_KEY_FILE="+platform.privateKey, "KEYBROKER_TEST_PLATFORM_ISSUER="+platform.issuer,
		"KEYBROKER_TEST_PLATFORM_WORKSPACE="+platform.workspace,
		"NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)

	for what, text := range map[string]string{"the Node output": string(out), "the admin replica's log": adminLogs.String()} {
		if strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("a private key is in %s", what)
		}
	}
	keys := readLines(t, keysFile)
	if len(keys) < 5 {
		t.Fatalf("the Node tests recorded %d keys; they write more than that", len(keys))
	}
	for _, key := range keys {
		for what, text := range map[string]string{"the Node output": string(out), "the admin replica's log": adminLogs.String(),
			"the resolver replica's log": resolverLogs.String(), "the proxy replica's log": proxyLogs.String()} {
			if strings.Contains(text, key) {
				t.Errorf("a provider key is in %s", what)
			}
		}
	}
	if strings.Contains(string(out), g.opToken) {
		t.Error("the operator token is in the Node output")
	}
	testenv.AssertDumpLacks(t, g.dbURL, keys)
}

// startServeTLS is startServe for a replica that requires client
// certificates issued by ca.
func startServeTLS(t *testing.T, ca *testpki.CA, env []string) (addr string, logs *testenv.SyncBuffer) {
	t.Helper()
	addr = freeAddr(t)
	server, probe := ca.Server("keybroker"), ca.Client("readiness probe")
	serve := keybroker("serve")
	serve.Env = append(serve.Env, append(env, "KEYBROKER_LISTEN_ADDR="+addr,
		"KEYBROKER_TLS_CERT_FILE="+server.CertFile, "KEYBROKER_TLS_KEY_FILE="+server.KeyFile, "KEYBROKER_TLS_CLIENT_CA_FILE="+ca.CertFile)...)
	logs = &testenv.SyncBuffer{}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Signal(syscall.SIGTERM); _, _ = serve.Process.Wait() })
	mtls := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{probe.TLS}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := devenv.WaitHTTPWith(ctx, mtls, "https://"+addr+"/readyz", nil, nil); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	return addr, logs
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// testPlatform is a platform registered in a platforms file: its ECDSA
// P-256 private key (PEM) and its public key as a JWKS file.
type testPlatform struct {
	issuer, workspace, privateKey, registrations string
}

func newTestPlatform(t *testing.T, issuer, workspace string) testPlatform {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := testPlatform{issuer: issuer, workspace: workspace, privateKey: filepath.Join(dir, "platform.pem"), registrations: filepath.Join(dir, "platforms.yaml")}
	if err := os.WriteFile(p.privateKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	reg := "platforms:\n  - id: ts-platform\n    issuer: " + issuer + "\n    jwksFile: " + jwksFile + "\n    workspaces: [" + workspace + "]\n    mayGrantAdmin: true\n"
	if err := os.WriteFile(p.registrations, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
