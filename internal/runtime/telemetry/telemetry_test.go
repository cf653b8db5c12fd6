package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
	"github.com/keybroker/keybroker/internal/runtime/telemetry"
	"github.com/keybroker/keybroker/providers"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Without an OTLP endpoint nothing is installed: the global provider stays
// the no-op default and Setup hands back no provider for the router.
func TestTracesAreOffWithoutAnEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, shutdown, err := telemetry.Setup(context.Background(), "all")
	if err != nil || tp != nil || shutdown(context.Background()) != nil {
		t.Fatalf("Setup without an endpoint: %v %v", tp, err)
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Fatal("traces are on without an endpoint")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if telemetry.Enabled() {
		t.Fatal("OTEL_SDK_DISABLED=true does not turn traces off")
	}
	t.Setenv("OTEL_SDK_DISABLED", "")
	if !telemetry.Enabled() {
		t.Fatal("an OTLP endpoint does not turn traces on")
	}
}

// spanText is everything a span would export, for the leak check.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", s.Name, s.Status.Description, s.Resource)
	for _, a := range s.Attributes {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.String())
	}
	for _, e := range s.Events {
		fmt.Fprintf(&b, " event %s", e.Name)
		for _, a := range e.Attributes {
			fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.String())
		}
	}
	return b.String()
}

// A resolve with a caller's traceparent: the server span is the caller's
// child, a cache miss and its Vault read and the token's PostgreSQL lookup
// are spans of the same trace, a cache hit makes no miss or Vault span, the
// access log carries the trace id, and no span carries the key or the
// token.
func TestAResolveIsTracedWithoutItsSecrets(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.NewSimpleSpanProcessor(exp), "all")
	telemetry.Install(tp)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	g := kbtest.NewGround(t, kbtest.Options{})
	ctx := context.Background()
	key := "sk-proj-trace-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, err := g.Broker.PutKey(ctx, broker.PutKeyRequest{Actor: broker.Actor{Subject: "test"}, Ref: broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID), Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	router := handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Keys: g.Broker, Tokens: g.Tokens, Tracer: tp})

	resolve := func(traceID, spanID string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/v1/resolve", strings.NewReader(`{"workspace":"ws1","provider":"openai"}`))
		req.Header.Set("Authorization", "Bearer "+g.ResolverToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+traceID+"-"+spanID+"-01")
		w := httptest.NewRecorder()
		router.ServeHTTP(w, req)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), key) {
			t.Fatalf("resolve: %d %s", w.Code, "<body withheld>")
		}
	}
	exp.Reset()
	const missTrace, hitTrace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "5cf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b7"
	resolve(missTrace, parent)
	resolve(hitTrace, parent)

	byTrace := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byTrace[s.SpanContext.TraceID().String()] = append(byTrace[s.SpanContext.TraceID().String()], s)
		if text := spanText(s); strings.Contains(text, key) || strings.Contains(text, g.ResolverToken) {
			t.Fatalf("span %q carries the key or the token", s.Name)
		}
	}
	names := func(trace string) map[string]tracetest.SpanStub {
		out := map[string]tracetest.SpanStub{}
		for _, s := range byTrace[trace] {
			out[s.Name] = s
		}
		return out
	}
	miss := names(missTrace)
	server, ok := miss["POST /v1/resolve"]
	if !ok || server.SpanKind != trace.SpanKindServer || server.Parent.SpanID().String() != parent || !server.Parent.IsRemote() {
		t.Fatalf("no server span, child of the caller's, in the miss's trace: %v", miss)
	}
	attrs := map[string]string{}
	for _, a := range server.Attributes {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["http.route"] != "/v1/resolve" || attrs["http.response.status_code"] != "200" || attrs["keybroker.role"] != "resolver" {
		t.Fatalf("server span attributes: %v", attrs)
	}
	cache, ok := miss["keybroker cache miss"]
	if !ok || cache.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Fatalf("no cache-miss span under the server span: %v", miss)
	}
	read, ok := miss["vault kv_get"]
	if !ok || read.Parent.SpanID() != cache.SpanContext.SpanID() || read.SpanKind != trace.SpanKindClient {
		t.Fatalf("no Vault read under the cache miss: %v", miss)
	}
	pg := false
	for name, s := range miss {
		if strings.HasPrefix(name, "postgresql ") {
			pg = true
			for _, a := range s.Attributes {
				if a.Key == "db.query.text" && !strings.Contains(a.Value.AsString(), "$1") {
					t.Fatalf("a PostgreSQL span's statement has no placeholder: %s", a.Value.AsString())
				}
			}
		}
	}
	if !pg {
		t.Fatalf("the token's PostgreSQL lookup is not in the trace: %v", miss)
	}
	hit := names(hitTrace)
	if _, ok := hit["POST /v1/resolve"]; !ok {
		t.Fatalf("no server span for the hit: %v", hit)
	}
	for name := range hit {
		if name == "keybroker cache miss" || strings.HasPrefix(name, "vault ") {
			t.Fatalf("a cache hit made a %q span", name)
		}
	}

	// The access log names each request's trace.
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err == nil && rec["msg"] == "http request" {
			id, _ := rec["trace_id"].(string)
			seen[id] = true
		}
	}
	if !seen[missTrace] || !seen[hitTrace] {
		t.Fatalf("the access log's trace ids: %v", seen)
	}
	if strings.Contains(logs.String(), key) || strings.Contains(logs.String(), g.ResolverToken) {
		t.Fatal("the access log carries the key or the token")
	}

	// A proxied call: each attempt to the provider is a client span under
	// the server span (the first key refused with a 429, the second
	// serving), and no span carries a key or the token.
	first, second := "sk-proj-trace-a-"+testenv.RandomID(t)+testenv.RandomID(t), "sk-proj-trace-b-"+testenv.RandomID(t)+testenv.RandomID(t)
	for i, k := range []string{first, second} {
		prio := i
		if _, err := g.Broker.AddKey(ctx, broker.AddKeyRequest{Actor: broker.Actor{Subject: "test"}, Pool: broker.WorkspaceScope("ws2").Pool("openai"),
			KeyID: []string{"a", "b"}[i], Credential: providers.APIKey(k), Priority: &prio}); err != nil {
			t.Fatal(err)
		}
	}
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+first {
			http.Error(w, `{"error":{"message":"rate limited"}}`, http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, `{"id":"cmpl-1"}`)
	}))
	defer provider.Close()
	fwd, err := proxy.New(proxy.Config{Keys: g.Broker, Providers: g.Broker.Providers(), BaseURLs: map[string]string{"openai": provider.URL}})
	if err != nil {
		t.Fatal(err)
	}
	proxied := handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Keys: g.Broker, Tokens: g.Tokens, Tracer: tp, Proxy: fwd})
	exp.Reset()
	const proxyTrace = "7df92f3577b34da6a3ce929d0e0e4739"
	req := httptest.NewRequest(http.MethodPost, "/proxy/openai/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o"}`))
	req.Header.Set("Authorization", "Bearer "+g.ResolverToken)
	req.Header.Set("X-Keybroker-Workspace", "ws2")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+proxyTrace+"-"+parent+"-01")
	w := httptest.NewRecorder()
	proxied.ServeHTTP(w, req)
	if w.Code != http.StatusOK || w.Header().Get("X-Keybroker-Key-Id") != "b" {
		t.Fatalf("proxied call: %d, key %q", w.Code, w.Header().Get("X-Keybroker-Key-Id"))
	}
	var proxyServer *tracetest.SpanStub
	var upstream []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if text := spanText(s); strings.Contains(text, first) || strings.Contains(text, second) || strings.Contains(text, g.ResolverToken) {
			t.Fatalf("span %q carries a key or the token", s.Name)
		}
		if s.SpanContext.TraceID().String() != proxyTrace {
			continue
		}
		switch {
		case s.SpanKind == trace.SpanKindServer:
			proxyServer = &s
		case s.Name == "proxy upstream openai":
			upstream = append(upstream, s)
		}
	}
	if proxyServer == nil || len(upstream) != 2 {
		t.Fatalf("the proxied call's trace: server span %v, %d upstream spans; want 2", proxyServer != nil, len(upstream))
	}
	got := map[string]string{}
	for _, s := range upstream {
		if s.Parent.SpanID() != proxyServer.SpanContext.SpanID() || s.SpanKind != trace.SpanKindClient {
			t.Fatalf("upstream span %q is not a client span under the server span", s.Name)
		}
		a := map[string]string{}
		for _, kv := range s.Attributes {
			a[string(kv.Key)] = kv.Value.String()
		}
		got[a["keybroker.attempt"]] = a["keybroker.key_id"] + " " + a["http.response.status_code"]
	}
	if got["1"] != "a 429" || got["2"] != "b 200" {
		t.Fatalf("the upstream attempts: %v; want key a refused (429), then key b (200)", got)
	}

	// Without a tracer the router logs no trace id, even when the caller
	// sends a traceparent.
	logs.Reset()
	router = handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Keys: g.Broker, Tokens: g.Tokens})
	resolve("6cf92f3577b34da6a3ce929d0e0e4738", parent)
	if strings.Contains(logs.String(), "trace_id") {
		t.Fatalf("an untraced router logs a trace id: %s", logs.String())
	}
}
