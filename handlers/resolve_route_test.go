package handlers_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/testpki"
	"github.com/keybroker/keybroker/internal/runtime/telemetry"
	"github.com/keybroker/keybroker/providers"
)

// newResolveRouter is a router over the real Vault and PostgreSQL with one
// key (ws-bench/openai) and a resolver token; opts gives the logger and
// access-log setting.
const resolveRouteKey = "sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func newResolveRouter(tb testing.TB, opts handlers.Options) (http.Handler, string) {
	return newResolveRouterWithKeys(tb, opts, 1)
}

// newResolveRouterWithKeys is newResolveRouter with n keys of equal
// priority in the pool (the first is the one above; all are cached).
func newResolveRouterWithKeys(tb testing.TB, opts handlers.Options, n int) (http.Handler, string) {
	tb.Helper()
	ctx := context.Background()
	g := newKeyGround(tb, slog.New(slog.DiscardHandler))
	token, _, err := g.minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := g.keys.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "bench"}, Ref: broker.WorkspaceKey("ws-bench", "openai", broker.DefaultKeyID), Credential: providers.APIKey(resolveRouteKey)}); err != nil {
		tb.Fatal(err)
	}
	for i := 1; i < n; i++ {
		key := resolveRouteKey[:len(resolveRouteKey)-2] + strconv.Itoa(10+i)
		if _, err := g.keys.AddKey(ctx, broker.AddKeyRequest{Actor: broker.Actor{Subject: "bench"}, Pool: broker.WorkspaceScope("ws-bench").Pool("openai"),
			KeyID: "k" + strconv.Itoa(i), Credential: providers.APIKey(remember(key))}); err != nil {
			tb.Fatal(err)
		}
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
// cache hit — request id, access log, body limit, bearer token, decode,
// resolve, encode — without the network: what keybroker adds on top of
// net/http per resolve, for a pool of 1 key and of 10, with the access log
// as production writes it (lines formatted by keybroker, written in
// batches) and, side by side, with only errors logged.
func BenchmarkResolveRoute(b *testing.B) {
	for _, tc := range []struct {
		name      string
		keys      int
		accessLog handlers.AccessLog
	}{{"keys=1", 1, handlers.AccessLogAll}, {"keys=10", 10, handlers.AccessLogAll}, {"keys=1/access-log=errors", 1, handlers.AccessLogErrors}} {
		n := tc.keys
		b.Run(tc.name, func(b *testing.B) {
			router, token := newResolveRouterWithKeys(b, handlers.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
				AccessLog: tc.accessLog, AccessLogOutput: io.Discard}, n)
			for range n { // every key of the pool read once
				if s := resolveOnce(router, token); s != http.StatusOK {
					b.Fatalf("warm-up resolve: %d", s)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if s := resolveOnce(router, token); s != http.StatusOK {
					b.Fatalf("status %d", s)
				}
			}
		})
	}
}

// BenchmarkResolveRouteRateLimited is BenchmarkResolveRoute with the rate
// limiter on (limits too high to refuse): run side by side with it, the
// difference is the limiter's cost per request.
func BenchmarkResolveRouteRateLimited(b *testing.B) {
	router, token := newResolveRouter(b, handlers.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Limiter: auth.NewLimiter(auth.RateLimits{PerToken: 1e9, PerTokenBurst: 1e9}, nil)})
	b.ReportAllocs()
	for b.Loop() {
		if s := resolveOnce(router, token); s != http.StatusOK {
			b.Fatalf("status %d", s)
		}
	}
}

// BenchmarkResolveOverLoopback resolves a cached key over a real loopback
// connection kept alive, in plain HTTP and in TLS (1.3, ECDSA P-256):
// side by side, the cost of TLS per resolve once the handshake is done.
func BenchmarkResolveOverLoopback(b *testing.B) {
	router, token := newResolveRouter(b, handlers.Options{Logger: slog.New(slog.DiscardHandler)})
	ca := testpki.NewCA(b, "bench CA")
	pair := ca.Server("keybroker")
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"http", false}, {"https", true}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(router)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			if tc.tls {
				srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair.TLS}, MinVersion: tls.VersionTLS12}
				srv.StartTLS()
				hc.Transport = &http.Transport{MaxIdleConnsPerHost: 1, TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
			} else {
				srv.Start()
			}
			defer srv.Close()
			body := []byte(`{"workspace":"ws-bench","provider":"openai"}`)
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/resolve", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkReportRoute is POST /v1/resolve/report through the handler
// chain, for a report that repeats a known state (the common case under a
// provider's outage: the key is already cooling down, nothing is written).
func BenchmarkReportRoute(b *testing.B) {
	router, token := newResolveRouter(b, handlers.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Limiter: auth.NewLimiter(auth.RateLimits{PerToken: 1e9, PerTokenBurst: 1e9, ReportsPerToken: 1e9, ReportsBurst: 1e9}, nil)})
	do := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		router.ServeHTTP(w, req)
		return w.Code, w.Body.Bytes()
	}
	status, body := do(http.MethodPost, "/v1/resolve", `{"workspace":"ws-bench","provider":"openai"}`)
	if status != http.StatusOK {
		b.Fatalf("resolve: %d", status)
	}
	var res struct{ ResolutionID string }
	if err := json.Unmarshal(body, &res); err != nil {
		b.Fatal(err)
	}
	report := `{"resolutionId":"` + res.ResolutionID + `","outcome":"rate_limited","retryAfterSeconds":3600}`
	if status, body := do(http.MethodPost, "/v1/resolve/report", report); status != http.StatusOK {
		b.Fatalf("first report: %d %s", status, body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, "/v1/resolve/report", strings.NewReader(report))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		w := &discardWriter{h: http.Header{}}
		router.ServeHTTP(w, req)
		if w.status != 0 && w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkResolveRouteTraced is BenchmarkResolveRoute (keys=1) with
// OpenTelemetry traces on: every request sampled, its server span ended
// into a batch processor whose exporter drops it. Side by side with
// BenchmarkResolveRoute/keys=1 (traces off: nothing installed), the
// difference is what tracing costs a cache-hit resolve.
func BenchmarkResolveRouteTraced(b *testing.B) {
	tp := telemetry.NewProvider(sdktrace.NewBatchSpanProcessor(discardSpans{}), "resolver")
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	router, token := newResolveRouter(b, handlers.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Tracer: tp})
	if s := resolveOnce(router, token); s != http.StatusOK {
		b.Fatalf("warm-up resolve: %d", s)
	}
	b.ReportAllocs()
	for b.Loop() {
		if s := resolveOnce(router, token); s != http.StatusOK {
			b.Fatalf("status %d", s)
		}
	}
}

// discardSpans is an exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }
