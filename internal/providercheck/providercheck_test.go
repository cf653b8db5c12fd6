package providercheck_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/providercheck"
)

// standIn answers a provider's check as the real one would: the exact
// path and header it requires, 401 for another key.
func standIn(t *testing.T, p *broker.Provider, key string) *httptest.Server {
	t.Helper()
	path, query, _ := strings.Cut(p.Check.Path, "?")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path || r.URL.RawQuery != query {
			http.NotFound(w, r)
			return
		}
		var got string
		switch p.Check.Auth {
		case broker.AuthBearer:
			got, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		case broker.AuthXAPIKey:
			got = r.Header.Get("x-api-key")
		case broker.AuthGoogAPIKey:
			got = r.Header.Get("x-goog-api-key")
		case broker.AuthAPIKeyScheme:
			got, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Api-Key ")
		}
		for k, v := range p.Check.Headers {
			if r.Header.Get(k) != v {
				http.Error(w, "missing "+k, http.StatusBadRequest)
				return
			}
		}
		if got != key {
			http.Error(w, `{"error":"invalid api key"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestEveryProviderIsCheckedWithItsOwnHeader(t *testing.T) {
	ctx := context.Background()
	for _, p := range broker.DefaultRegistry().All() {
		t.Run(p.ID, func(t *testing.T) {
			const key = "the-right-key-0123456789"
			srv := standIn(t, &p, key)
			c, err := providercheck.New(providercheck.Config{BaseURLs: map[string]string{p.ID: srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Check(ctx, &p, key); r.Verdict != broker.VerdictAccepted || r.Status != 200 {
				t.Fatalf("the right key: %+v", r)
			}
			r := c.Check(ctx, &p, "a-wrong-key-0123456789")
			if r.Verdict != broker.VerdictRefused || r.Status != 401 || strings.Contains(r.Detail, "wrong-key") {
				t.Fatalf("a wrong key: %+v", r)
			}
		})
	}
}

func TestFaultsAreUnreachableAndBounded(t *testing.T) {
	ctx := context.Background()
	p, _ := broker.DefaultRegistry().Lookup("openai")
	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) }))
	t.Cleanup(target.Close)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/hang/v1/models", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/fail/v1/models", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	mux.HandleFunc("/moved/v1/models", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target.URL, http.StatusFound) })
	mux.HandleFunc("/limited/v1/models", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "slow down", http.StatusTooManyRequests) })
	var sent atomic.Int64
	mux.HandleFunc("/huge/v1/models", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 100 { // 100 MB, if anyone read it all
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { close(release); srv.Close() })
	for _, tc := range []struct {
		path, verdict, detail string
	}{
		{"/hang", broker.VerdictUnreachable, "no answer within"},
		{"/fail", broker.VerdictUnreachable, "answered 500"},
		{"/moved", broker.VerdictUnreachable, "not followed"},
		{"/limited", broker.VerdictRateLimited, "429"},
		{"/huge", broker.VerdictAccepted, "answered 200"},
		{"/nothing-here", broker.VerdictUnreachable, "answered 404"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c, err := providercheck.New(providercheck.Config{BaseURLs: map[string]string{"openai": srv.URL + tc.path}, Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := c.Check(ctx, p, "sk-the-key-0123456789abcdef")
			if r.Verdict != tc.verdict || !strings.Contains(r.Detail, tc.detail) || strings.Contains(r.Detail, "sk-the-key") {
				t.Fatalf("%+v, want %s (%q)", r, tc.verdict, tc.detail)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the check took %v", took)
			}
		})
	}
	if redirected.Load() != 0 {
		t.Fatal("the redirect was followed (and would have sent the key there)")
	}
	if n := sent.Load(); n > 20<<20 {
		t.Fatalf("the server could write %d bytes: the answer was read past its bound", n)
	}
	if _, err := providercheck.New(providercheck.Config{BaseURLs: map[string]string{"openai": "ftp://x"}}); err == nil {
		t.Fatal("a base URL that is not http(s) was taken")
	}
}
