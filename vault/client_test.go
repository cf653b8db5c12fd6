package vault_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/vault"
)

// Vault OSS has no namespaces and answers promptly, so these two use an
// httptest stand-in: one checks the header, the other hangs.

func TestNamespaceHeaderIsSent(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("X-Vault-Namespace"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":{"data":{"api_key":"v"},"metadata":{"version":4}}}`))
	}))
	defer srv.Close()
	c, err := vault.New(vault.Config{Address: srv.URL, Token: "t", Namespace: "team-a/ai"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.KV("byok").Get(context.Background(), "hosted/providers/openai/keys/default")
	if err != nil || s.Version != 4 {
		t.Fatalf("get: %v %v", s, err)
	}
	if got.Load() != "team-a/ai" {
		t.Fatalf("X-Vault-Namespace = %q", got.Load())
	}
}

func TestEveryCallHasADeadlineAndNoRetries(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	c, err := vault.New(vault.Config{Address: srv.URL, Token: "t", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.KV("byok").Get(context.Background(), "hosted/providers/openai/keys/default")
	if !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("get from a hanging vault: %v, want ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("the call took %v despite a 300ms deadline", elapsed)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests for one call: the client retried", n)
	}
}

func TestServerErrorsAreUnavailable(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(`{"errors":["Vault is sealed"]}`))
		}))
		c, err := vault.New(vault.Config{Address: srv.URL, Token: "t"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.KV("byok").Get(context.Background(), "hosted/providers/openai/keys/default")
		srv.Close()
		if !errors.Is(err, vault.ErrUnavailable) {
			t.Fatalf("status %d: %v, want ErrUnavailable", status, err)
		}
	}
}

// Vault OSS has no namespaces: an httptest stand-in records which
// namespace each request carries.
func TestAuthAndSecretsNamespacesAreSeparate(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Get("X-Vault-Namespace")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/login"):
			w.Write([]byte(`{"auth":{"client_token":"hvs.test","lease_duration":3600,"renewable":false}}`))
		default:
			w.Write([]byte(`{"data":{"data":{"api_key":"v"},"metadata":{"version":1}}}`))
		}
	}))
	defer srv.Close()
	method, err := vault.AppRole(vault.AppRoleConfig{RoleID: "r", SecretID: "s"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(vault.Config{Address: srv.URL, Namespace: "team-a/ai", AuthNamespace: "team-a", Auth: method})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Start(ctx)
	if err := c.WaitForToken(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV("byok").Get(ctx, "hosted/providers/openai/keys/default"); err != nil {
		t.Fatal(err)
	}
	// The token is not renewable: one login, not a login loop.
	time.Sleep(300 * time.Millisecond)
	if logins, _, _, _ := c.TokenStats(); logins != 1 {
		t.Fatalf("%d logins for one non-renewable token with an hour to live", logins)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["/v1/auth/approle/login"] != "team-a" || seen["/v1/byok/data/hosted/providers/openai/keys/default"] != "team-a/ai" {
		t.Fatalf("namespaces by path: %v", seen)
	}
}
