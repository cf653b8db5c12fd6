package resolver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/client/resolver"
)

// standIn answers as keybroker does the two routes the library uses: a
// resolve (with a resolver token) and a watch stream that says hello and
// stays open.
func standIn(tb testing.TB, ttlSeconds int) *httptest.Server {
	return standInExpiring(tb, ttlSeconds, time.Time{})
}

// standInExpiring is standIn whose answers are minted credentials that
// expire at expires (zero: long-lived keys).
func standInExpiring(tb testing.TB, ttlSeconds int, expires time.Time) *httptest.Server {
	return standInAnswering(tb, func(a *client.ResolveResponse) { a.TTLSeconds, a.ExpiresAt = ttlSeconds, expires }, nil)
}

// standInAnswering is standIn whose answers answer sets; while down says
// so, it answers resolves with 503.
func standInAnswering(tb testing.TB, answer func(*client.ResolveResponse), down *atomic.Bool) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer kbt_standin" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v1/resolve":
			var req client.ResolveRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Workspace == "" || req.Provider == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if down != nil && down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			a := client.ResolveResponse{APIKey: "sk-standin-key-0123456789", Source: "byok", IsBYOK: true, Version: 1,
				Scope: "workspace", KeyID: "default", ResolutionID: "res_1"}
			answer(&a)
			_ = json.NewEncoder(w).Encode(a)
		case "/v1/resolve/watch":
			w.Header().Set("Content-Type", "application/x-ndjson")
			_, _ = w.Write([]byte(`{"type":"hello"}` + "\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func newResolver(tb testing.TB, ttlSeconds int) *resolver.Resolver {
	return newResolverOf(tb, standIn(tb, ttlSeconds))
}

func newResolverOf(tb testing.TB, srv *httptest.Server) *resolver.Resolver {
	tb.Helper()
	c, err := client.New(client.Config{Address: srv.URL, Token: "kbt_standin"})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := resolver.New(resolver.Config{Client: c})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	deadline := time.Now().Add(10 * time.Second)
	for !r.Connected() {
		if time.Now().After(deadline) {
			tb.Fatal("the stream does not connect")
		}
		time.Sleep(time.Millisecond)
	}
	return r
}

func TestAnAnswerNeverShowsItsKey(t *testing.T) {
	r := newResolver(t, 30)
	got, err := r.Resolve(context.Background(), "ws1", "openai", "")
	if err != nil || got.APIKey != "sk-standin-key-0123456789" {
		t.Fatalf("resolve: %v", err)
	}
	for _, s := range []string{got.String(), fmtV(got)} {
		if contains(s, got.APIKey) {
			t.Fatalf("%q shows the key", s)
		}
	}
}

// An answer is kept no longer than the server's TTL, even with the stream
// up and nothing changed.
func TestAnAnswerLivesNoLongerThanTheServersTTL(t *testing.T) {
	r := newResolver(t, 1)
	ctx := context.Background()
	for range 3 {
		if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Requests(); n != 1 {
		t.Fatalf("%d requests for three resolves within the TTL", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
		t.Fatal(err)
	}
	if n := r.Requests(); n != 2 {
		t.Fatalf("%d requests: an answer older than the server's 1 s TTL was served", n)
	}
}

// A minted credential is kept no longer than a minute before its
// expiresAt: one that expires within that is asked for again at every
// resolve; one that lives an hour is kept as a key is.
func TestAMintedCredentialIsRefreshedBeforeItExpires(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		expires time.Time
		want    int64
	}{
		{time.Now().Add(-time.Second), 3},
		{time.Now().Add(time.Hour), 1},
	} {
		r := newResolverOf(t, standInExpiring(t, 30, tc.expires))
		for range 3 {
			got, err := r.Resolve(ctx, "ws1", "bedrock", "")
			if err != nil || !got.ExpiresAt.Equal(tc.expires) {
				t.Fatalf("resolve: %v, expiresAt %v", err, got.ExpiresAt)
			}
		}
		if n := r.Requests(); n != tc.want {
			t.Fatalf("expiring in %v: %d requests for three resolves, want %d", time.Until(tc.expires).Round(time.Second), n, tc.want)
		}
	}
}

// An answer is kept no longer than its key's own expiry (keyExpiresAt),
// whatever the server's TTL, and never served stale past it when
// keybroker cannot answer: before the expiry a stale answer still serves
// (StaleIfError), after it the error comes back.
func TestAnAnswerIsNotKeptPastItsKeysExpiry(t *testing.T) {
	ctx := context.Background()
	resolverOf := func(srv *httptest.Server) *resolver.Resolver {
		c, err := client.New(client.Config{Address: srv.URL, Token: "kbt_standin"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := resolver.New(resolver.Config{Client: c, StaleIfError: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		for deadline := time.Now().Add(10 * time.Second); !r.Connected(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the stream does not connect")
			}
		}
		return r
	}

	// In memory: a TTL of an hour, a key that expires in 2 s.
	keyExpires := time.Now().Add(2 * time.Second)
	r := resolverOf(standInAnswering(t, func(a *client.ResolveResponse) { a.TTLSeconds, a.KeyExpiresAt = 3600, keyExpires }, nil))
	for range 2 {
		if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || !got.KeyExpiresAt.Equal(keyExpires) {
			t.Fatalf("resolve: %v, keyExpiresAt %v", err, got.KeyExpiresAt)
		}
	}
	if n := r.Requests(); n != 1 {
		t.Fatalf("%d requests for two resolves before the key's expiry", n)
	}
	time.Sleep(time.Until(keyExpires) + 100*time.Millisecond)
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
		t.Fatal(err)
	}
	if n := r.Requests(); n != 2 {
		t.Fatalf("%d requests: an answer was served from memory past its key's expiry", n)
	}

	// Stale: a TTL of 1 s, a key that expires in 3 s, then keybroker down.
	keyExpires = time.Now().Add(3 * time.Second)
	var down atomic.Bool
	r = resolverOf(standInAnswering(t, func(a *client.ResolveResponse) { a.TTLSeconds, a.KeyExpiresAt = 1, keyExpires }, &down))
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	down.Store(true)
	if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || !got.KeyExpiresAt.Equal(keyExpires) {
		t.Fatalf("before the key's expiry, with keybroker down, the held answer is not served stale: %v", err)
	}
	time.Sleep(time.Until(keyExpires) + 100*time.Millisecond)
	if got, err := r.Resolve(ctx, "ws1", "openai", ""); err == nil {
		t.Fatalf("an answer whose key expired at %v was served stale: %v", keyExpires, got.KeyExpiresAt)
	}
}

// BenchmarkResolverHit is a cache hit in the caller's memory: what the
// execution path pays per call once a key is held (side by side with
// BenchmarkResolveRoute of package handlers and the direct Vault read of
// make bench).
func BenchmarkResolverHit(b *testing.B) {
	r := newResolver(b, 3600)
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
			b.Fatal(err)
		}
	}
	if n := r.Requests(); n != 1 {
		b.Fatalf("%d requests: the hits did not come from memory", n)
	}
}

// BenchmarkResolverHitParallel is BenchmarkResolverHit from every core.
func BenchmarkResolverHitParallel(b *testing.B) {
	r := newResolver(b, 3600)
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v", v, v) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
