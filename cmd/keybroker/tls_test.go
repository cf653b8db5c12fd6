package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/testpki"
)

// TestServeTLSWithClientCertificates runs `keybroker serve` as a resolver
// deployment that requires client certificates, over the real Vault and
// PostgreSQL: a resolve with the CA's client certificate works, one
// without a certificate does not complete the handshake, and the metrics
// are on their own listener.
func TestServeTLSWithClientCertificates(t *testing.T) {
	ctx := context.Background()
	g := newApproleGround(t, nil)
	ca := testpki.NewCA(t, "keybroker test CA")
	server, resolverCert := ca.Server("keybroker"), ca.Client("execution-path")
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	serve := keybroker("serve")
	serve.Env = append(serve.Env, g.modeEnv(t, "all", "KEYBROKER_LISTEN_ADDR="+addr,
		"KEYBROKER_TLS_CERT_FILE="+server.CertFile, "KEYBROKER_TLS_KEY_FILE="+server.KeyFile, "KEYBROKER_TLS_CLIENT_CA_FILE="+ca.CertFile,
		"KEYBROKER_METRICS_ADDR="+metricsAddr)...)
	logs := &testenv.SyncBuffer{}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Signal(syscall.SIGTERM); _, _ = serve.Process.Wait() })
	mtls := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{resolverCert.TLS}}}}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := devenv.WaitHTTPWith(wctx, mtls, "https://"+addr+"/readyz", nil, nil); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}

	api, err := client.New(client.Config{Address: "https://" + addr, Token: g.opToken, CACertFile: ca.CertFile,
		ClientCertFile: resolverCert.CertFile, ClientKeyFile: resolverCert.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	key := "sk-proj-tls-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := api.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, key, 0); err != nil {
		t.Fatalf("set over mTLS: %v", err)
	}
	resolver, _ := client.New(client.Config{Address: "https://" + addr, Token: g.resolverToken, CACertFile: ca.CertFile,
		ClientCertFile: resolverCert.CertFile, ClientKeyFile: resolverCert.KeyFile})
	if r, err := resolver.Resolve(ctx, "ws1", "openai"); err != nil || r.APIKey != key {
		t.Fatalf("resolve over mTLS: %v", err)
	}
	// HTTP/2 is offered (ALPN) besides HTTP/1.1.
	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{resolverCert.TLS}}}}
	if resp, err := h2.Get("https://" + addr + "/healthz"); err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2 over TLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	noCert, _ := client.New(client.Config{Address: "https://" + addr, Token: g.resolverToken, CACertFile: ca.CertFile})
	if _, err := noCert.Resolve(ctx, "ws1", "openai"); err == nil {
		t.Fatal("a client without a certificate resolved")
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/readyz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("the TLS listener answered plain HTTP")
	}
	resp, err := plain.Get("http://" + metricsAddr + "/metrics")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics listener: %v %v", resp, err)
	}
	resp.Body.Close()
	if !strings.Contains(logs.String(), `"transport":"TLS, client certificates required"`) {
		t.Fatalf("the start-up line does not say the transport:\n%s", logs.String())
	}
}

func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	serve := keybroker("serve")
	serve.Env = append(serve.Env, "KEYBROKER_LISTEN_ADDR=0.0.0.0:0", "DATABASE_URL=postgres://x@127.0.0.1:1/x",
		"KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef0", "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=hvs.dev", "VAULT_ADDR=http://127.0.0.1:1", "KEYBROKER_ADMIN_TOKEN_KEYS="+kbtest.AdminTokenKeys, "KEYBROKER_RESOLVER_KEYS="+kbtest.ResolverKeys)
	out, err := serve.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve plain HTTP on") {
		t.Fatalf("serve on 0.0.0.0 without TLS: %v\n%s", err, out)
	}
	dev := keybroker("dev", "--listen-addr", "0.0.0.0:0")
	out, err = dev.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback only") {
		t.Fatalf("dev on 0.0.0.0: %v\n%s", err, out)
	}
}
