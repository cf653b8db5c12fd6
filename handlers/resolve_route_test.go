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
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// newResolveRouter is a router over the real Vault and PostgreSQL with one
// key (ws-bench/openai) and a resolver token; opts gives the logger and
// access-log setting.
func newResolveRouter(tb testing.TB, opts handlers.Options) (http.Handler, string) {
	tb.Helper()
	ctx := context.Background()
	addr, rootToken := testenv.Vault(tb)
	mount := testenv.NewKVMount(tb)
	st, err := store.Open(ctx, testenv.DatabaseURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	vc, err := vault.New(vault.Config{Address: addr, Token: rootToken})
	if err != nil {
		tb.Fatal(err)
	}
	kv := vc.KV(mount)
	brk, err := broker.New(broker.Config{Reader: kv, Writer: kv, Store: st, Pepper: []byte("handlers-bench-pepper"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tokens := auth.NewService(st, 0)
	token, _, err := tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleResolver, CreatedBy: "bench"}, broker.ValidID)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := brk.SetKey(ctx, broker.Actor{Subject: "bench"}, "ws-bench", "openai", "sk-proj-"+strings.Repeat("a", 48), 0); err != nil {
		tb.Fatal(err)
	}
	opts.Keys, opts.Tokens = brk, tokens
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
		var buf testenv.SyncBuffer
		router, token := newResolveRouter(t, handlers.Options{AccessLog: tc.setting, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
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
