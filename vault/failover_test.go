package vault_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/vault"
)

// standIn plays the answers of Vault nodes in the middle of an election,
// which a real cluster gives only by chance: each request takes the next
// answer of script (the last repeats). It checks what Vault would: the
// token header and the KV v2 data path.
func standIn(t *testing.T, script ...func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "test-token" {
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
			return
		}
		if r.URL.Path != "/v1/byok/data/ws/key" {
			http.Error(w, `{"errors":["no handler for route"]}`, http.StatusNotFound)
			return
		}
		i := int(n.Add(1)) - 1
		script[min(i, len(script)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func answer(status int, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

const secretBody = `{"data":{"data":{"api_key":"sk-test-value"},"metadata":{"version":3}}}`

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func clientFor(t *testing.T, addr string) *vault.KV {
	t.Helper()
	c, err := vault.New(vault.Config{Address: addr, Token: "test-token", Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c.KV("byok")
}

func TestAnElectionsAnswersAreTriedAgainAtTheConfiguredAddress(t *testing.T) {
	ctx := context.Background()
	dead := deadAddr(t)
	redirect := func(w http.ResponseWriter, r *http.Request) {
		// A standby that cannot forward names the old (dead) leader.
		http.Redirect(w, r, dead+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}
	for _, tc := range []struct {
		name   string
		script []func(http.ResponseWriter, *http.Request)
		calls  int64
	}{
		{"a standby's redirect to the dead leader", []func(http.ResponseWriter, *http.Request){redirect, redirect, answer(200, secretBody)}, 3},
		{"a sealed node", []func(http.ResponseWriter, *http.Request){answer(503, `{"errors":["Vault is sealed"]}`), answer(200, secretBody)}, 2},
		{"no active node yet", []func(http.ResponseWriter, *http.Request){answer(500, `{"errors":["local node not active but active cluster node not found"]}`), answer(200, secretBody)}, 2},
		{"a new active node that has not mounted the engine yet", []func(http.ResponseWriter, *http.Request){answer(404, `{"errors":["no handler for route \"byok/data/ws/key\". route entry not found."]}`), answer(200, secretBody)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := standIn(t, tc.script...)
			s, err := clientFor(t, srv.URL).Get(ctx, "ws/key")
			if err != nil || s.Data["api_key"] != "sk-test-value" || s.Version != 3 {
				t.Fatalf("read: %v %v", s, err)
			}
			if calls.Load() != tc.calls {
				t.Fatalf("%d requests reached the configured address, want %d", calls.Load(), tc.calls)
			}
		})
	}

	// A missing secret is not found at once, without a retry; a node that
	// is not ready for the mount is unavailable, never "not found".
	srv, calls := standIn(t, answer(404, `{"errors":[]}`))
	if _, err := clientFor(t, srv.URL).Get(ctx, "ws/key"); !errors.Is(err, vault.ErrNotFound) || calls.Load() != 1 {
		t.Fatalf("a missing secret: %v after %d requests", err, calls.Load())
	}
	srv, _ = standIn(t, answer(404, `{"errors":["no handler for route"]}`))
	if _, err := clientFor(t, srv.URL).Get(ctx, "ws/key"); !errors.Is(err, vault.ErrUnavailable) || errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a mount not served: %v", err)
	}
	// A deleted current version (404 with its metadata) is not found.
	srv, _ = standIn(t, answer(404, `{"data":{"data":null,"metadata":{"version":4,"deletion_time":"2026-12-01T00:00:00Z"}}}`))
	if _, err := clientFor(t, srv.URL).Get(ctx, "ws/key"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a deleted version: %v", err)
	}
}

// A check-and-set write is sent again only when Vault certainly did not
// apply it: after a sealed answer yes, after an answer that may have come
// from a node that wrote it (a 502 from a proxy), no.
func TestAWriteIsRetriedOnlyWhenVaultDidNotApplyIt(t *testing.T) {
	ctx := context.Background()
	written := answer(200, `{"data":{"version":4}}`)
	srv, calls := standIn(t, answer(503, `{"errors":["Vault is sealed"]}`), written)
	if v, err := clientFor(t, srv.URL).Put(ctx, "ws/key", map[string]string{"api_key": "sk-new"}, 3); err != nil || v != 4 || calls.Load() != 2 {
		t.Fatalf("a write after a sealed answer: version %d, %v, %d requests", v, err, calls.Load())
	}
	srv, calls = standIn(t, answer(502, `{"errors":["bad gateway"]}`), written)
	if _, err := clientFor(t, srv.URL).Put(ctx, "ws/key", map[string]string{"api_key": "sk-new"}, 3); !errors.Is(err, vault.ErrUnavailable) || calls.Load() != 1 {
		t.Fatalf("a write after a 502: %v, %d requests (a write that may have landed must not be sent twice)", err, calls.Load())
	}
	// A read after the same 502 is retried: reading twice changes nothing.
	srv, calls = standIn(t, answer(502, `{"errors":["bad gateway"]}`), answer(200, secretBody))
	if _, err := clientFor(t, srv.URL).Get(ctx, "ws/key"); err != nil || calls.Load() != 2 {
		t.Fatalf("a read after a 502: %v, %d requests", err, calls.Load())
	}
	// Nothing answers: the retries end with the client's timeout, as
	// unavailable.
	start := time.Now()
	if _, err := clientFor(t, deadAddr(t)).Get(ctx, "ws/key"); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("a dead address: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the retries outlived the client's timeout: %v", d)
	}
}
