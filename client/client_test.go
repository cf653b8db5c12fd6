package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keybroker/keybroker/client"
)

// A redirect is a fault no keybroker answers with, but a misconfigured
// proxy or an attacker on the path can: the client must not re-send the
// token and the key to the new host.
func TestRedirectsAreNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+r.URL.Path, status)
		}))
		c, err := client.New(client.Config{Address: redirector.URL, Token: "kbt_test-token"})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.PutKey(context.Background(), client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, "sk-proj-must-not-travel-0000000000", 0)
		redirector.Close()
		if !errors.Is(err, client.ErrRedirect) {
			t.Fatalf("a %d: %v, want ErrRedirect", status, err)
		}
		if strings.Contains(err.Error(), "sk-proj-must-not-travel") || strings.Contains(err.Error(), "kbt_test-token") {
			t.Fatal("the error quotes the key or the token")
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

func TestPlainHTTPOffLoopbackIsRefused(t *testing.T) {
	for _, addr := range []string{"http://keybroker.example.internal:8080", "http://10.0.0.8:8080", "http://[2001:db8::1]:8080"} {
		if _, err := client.New(client.Config{Address: addr, Token: "kbt_x"}); err == nil || !strings.Contains(err.Error(), "plain http") {
			t.Errorf("%s: %v", addr, err)
		}
		if _, err := client.New(client.Config{Address: addr, Token: "kbt_x", AllowInsecureHTTP: true}); err != nil {
			t.Errorf("%s with AllowInsecureHTTP: %v", addr, err)
		}
	}
	for _, addr := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "https://keybroker.example.internal"} {
		if _, err := client.New(client.Config{Address: addr, Token: "kbt_x"}); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if _, err := client.New(client.Config{Address: "https://k.example", Token: "kbt_x", ClientCertFile: "/x.crt"}); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
}
