package providers_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/providers"
)

// realAuth is where each provider reads its key, as its documentation
// says: the stand-ins check it, so a provider whose Authorize sends the key
// elsewhere fails here. A new provider adds its line.
var realAuth = map[string]func(r *http.Request) (string, bool){
	"openai":    bearer,
	"mistral":   bearer,
	"xai":       bearer,
	"zai":       bearer,
	"moonshot":  bearer,
	"fireworks": bearer,
	"together":  bearer,
	"baseten": func(r *http.Request) (string, bool) {
		return strings.CutPrefix(r.Header.Get("Authorization"), "Api-Key ")
	},
	"anthropic": func(r *http.Request) (string, bool) { return r.Header.Get("x-api-key"), true },
	"exa":       func(r *http.Request) (string, bool) { return r.Header.Get("x-api-key"), true },
	"google":    func(r *http.Request) (string, bool) { return r.Header.Get("x-goog-api-key"), true },
	// Bedrock: the access key id in the SigV4 Authorization header's
	// credential scope (the stand-in, internal/fixtures/awsstub, checks
	// the signature itself); a Bedrock API key as a bearer token.
	"bedrock": func(r *http.Request) (string, bool) {
		if key, ok := bearer(r); ok {
			return key, true
		}
		_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
		id, _, _ := strings.Cut(cred, "/")
		return id, ok && strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	},
	"vertex": bearer,
	"azure-openai": func(r *http.Request) (string, bool) {
		if k := r.Header.Get("api-key"); k != "" {
			return k, true
		}
		return bearer(r)
	},
}

func bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// keyAsRead is the key of r as provider id reads it; false when the test
// does not know the provider.
func keyAsRead(id string, r *http.Request) (string, bool) {
	read, ok := realAuth[id]
	if !ok {
		return "", false
	}
	key, _ := read(r)
	return key, true
}

// standIn answers a provider's check as the real one would: the exact
// path and header it requires, 401 for another key.
func standIn(t *testing.T, p *providers.Provider, key string) *httptest.Server {
	t.Helper()
	path, query, _ := strings.Cut(p.Check.Path, "?")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path || r.URL.RawQuery != query {
			http.NotFound(w, r)
			return
		}
		got, ok := keyAsRead(p.ID, r)
		if !ok {
			http.Error(w, "keybroker's test knows not how "+p.ID+" reads its key: add it to realAuth", http.StatusTeapot)
			return
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

// credentialOf is a credential of p's kind whose key (as realAuth reads
// it) is key: an api_key; for Bedrock, a Bedrock API key (its SigV4
// signatures are checked against the AWS stand-in in bedrock_test.go). A
// new kind adds its line.
func credentialOf(t *testing.T, p *providers.Provider, key string) providers.Credential {
	t.Helper()
	switch p.Credential.Kind {
	case providers.KindAPIKey:
		return providers.APIKey(key)
	case providers.KindAWSBedrock:
		return providers.New(p.Credential.Kind, map[string]string{"region": "us-east-1", "bedrockApiKey": key})
	}
	t.Fatalf("the test makes no credential of kind %s: add it to credentialOf", p.Credential.Kind)
	return providers.Credential{}
}

func TestEveryProviderIsCheckedWithItsOwnHeader(t *testing.T) {
	ctx := context.Background()
	for _, p := range providers.DefaultRegistry().All() {
		if p.Credential.Kind != providers.KindAPIKey {
			continue // the cloud kinds' checks mint first: vertex_test.go, azure_test.go
		}
		t.Run(p.ID, func(t *testing.T) {
			const key = "the-right-key-0123456789"
			srv := standIn(t, &p, key)
			c, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{p.ID: srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Check(ctx, &p, credentialOf(t, &p, key)); r.Verdict != providers.VerdictAccepted || r.Status != 200 {
				t.Fatalf("the right key: %+v", r)
			}
			r := c.Check(ctx, &p, credentialOf(t, &p, "a-wrong-key-0123456789"))
			if r.Verdict != providers.VerdictRefused || r.Status != 401 || strings.Contains(r.Detail, "wrong-key") {
				t.Fatalf("a wrong key: %+v", r)
			}
		})
	}
}

func TestFaultsAreUnreachableAndBounded(t *testing.T) {
	ctx := context.Background()
	p, _ := providers.DefaultRegistry().Lookup("openai")
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
		{"/hang", providers.VerdictUnreachable, "no answer within"},
		{"/fail", providers.VerdictUnreachable, "answered 500"},
		{"/moved", providers.VerdictUnreachable, "not followed"},
		{"/limited", providers.VerdictRateLimited, "429"},
		{"/huge", providers.VerdictAccepted, "answered 200"},
		{"/nothing-here", providers.VerdictUnreachable, "answered 404"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": srv.URL + tc.path}, Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := c.Check(ctx, p, providers.APIKey("sk-the-key-0123456789abcdef"))
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
	if _, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": "ftp://x"}}); err == nil {
		t.Fatal("a base URL that is not http(s) was taken")
	}
}
