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

// discardWriter is the cheapest http.ResponseWriter: the benchmark measures
// the router, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkResolveRoute is the execution path's HTTP handler chain on a
// cache hit — request id, access log (JSON), body limit, bearer token,
// decode, resolve, encode — without the network: what keybroker adds on top
// of net/http per resolve.
func BenchmarkResolveRoute(b *testing.B) {
	ctx := context.Background()
	addr, rootToken := testenv.Vault(b)
	mount := testenv.NewKVMount(b)
	st, err := store.Open(ctx, testenv.DatabaseURL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	vc, err := vault.New(vault.Config{Address: addr, Token: rootToken})
	if err != nil {
		b.Fatal(err)
	}
	kv := vc.KV(mount)
	brk, err := broker.New(broker.Config{Reader: kv, Writer: kv, Store: st, Pepper: []byte("handlers-bench-pepper"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	tokens := auth.NewService(st, 0)
	token, _, err := tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleResolver, CreatedBy: "bench"}, broker.ValidID)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := brk.SetKey(ctx, broker.Actor{Subject: "bench"}, "ws-bench", "openai", "sk-proj-"+strings.Repeat("a", 48), 0); err != nil {
		b.Fatal(err)
	}
	router := handlers.NewRouter(handlers.Options{Keys: brk, Tokens: tokens, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	body := `{"workspace":"ws-bench","provider":"openai"}`
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, "/v1/resolve", strings.NewReader(body))
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
