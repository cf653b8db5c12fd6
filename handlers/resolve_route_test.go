package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/testenv"
)

// newResolveRouter is a router over the real Vault and PostgreSQL with one
// key (ws-bench/openai) and a resolver token; opts gives the logger and
// access-log setting.
const resolveRouteKey = "sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func newResolveRouter(tb testing.TB, opts handlers.Options) (http.Handler, string) {
	tb.Helper()
	ctx := context.Background()
	g := newKeyGround(tb, slog.New(slog.DiscardHandler))
	token, _, err := g.tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleResolver, CreatedBy: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := g.keys.SetKey(ctx, broker.SetKeyRequest{Actor: broker.Actor{Subject: "bench"}, Workspace: "ws-bench", Provider: "openai", APIKey: resolveRouteKey}); err != nil {
		tb.Fatal(err)
	}
	opts.Keys, opts.Tokens = g.keys, g.tokens
	return handlers.NewRouter(opts), token
}

// discardWriter is the cheapest http.ResponseWriter: the benchmark measures
// the router, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func resolveOnce(router http.Handler, token string) int {
	req, _ := http.NewRequest(http.MethodPost, "/v1/resolve", strings.NewReader(`{"workspace":"ws-bench","provider":"openai"}`))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{h: http.Header{}}
	router.ServeHTTP(w, req)
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// TestAccessLogErrorsLogsOnlyRefusalsAndFailures: with AccessLogErrors a
// successful resolve leaves no line, a refused one does; with the default,
// both do.
func TestAccessLogErrorsLogsOnlyRefusalsAndFailures(t *testing.T) {
	for _, tc := range []struct {
		setting   handlers.AccessLog
		wantLines int
	}{{handlers.AccessLogErrors, 1}, {"", 2}} {
		// The lines also go to the package's log, which the after-run
		// check searches for the key and the token.
		var buf testenv.SyncBuffer
		remember(resolveRouteKey)
		router, token := newResolveRouter(t, handlers.Options{AccessLog: tc.setting, Logger: slog.New(slog.NewJSONHandler(io.MultiWriter(&buf, &logs), nil))})
		remember(token)
		if s := resolveOnce(router, token); s != http.StatusOK {
			t.Fatalf("resolve: %d", s)
		}
		if s := resolveOnce(router, "kbt_wrong"); s != http.StatusUnauthorized {
			t.Fatalf("resolve with a wrong token: %d", s)
		}
		lines := strings.Count(buf.String(), `"msg":"http request"`)
		if lines != tc.wantLines || !strings.Contains(buf.String(), `"status":401`) {
			t.Errorf("access log %q: %d lines, want %d with the 401:\n%s", tc.setting, lines, tc.wantLines, buf.String())
		}
	}
}

// BenchmarkResolveRoute is the execution path's HTTP handler chain on a
// cache hit — request id, access log (JSON), body limit, bearer token,
// decode, resolve, encode — without the network: what keybroker adds on top
// of net/http per resolve.
func BenchmarkResolveRoute(b *testing.B) {
	router, token := newResolveRouter(b, handlers.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	b.ReportAllocs()
	for b.Loop() {
		if s := resolveOnce(router, token); s != http.StatusOK {
			b.Fatalf("status %d", s)
		}
	}
}
