package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/watch"
)

// stream is an open GET /v1/resolve/watch.
type stream struct {
	resp  *http.Response
	lines chan watch.Event
	ended chan struct{}
}

func openWatch(t *testing.T, url, token string) (*stream, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/resolve/watch", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp
	}
	s := &stream{resp: resp, lines: make(chan watch.Event, 64), ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev watch.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("a line of the stream is not an event: %q", sc.Text())
				return
			}
			s.lines <- ev
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return s, resp
}

// next waits for the next event other than a heartbeat (or one, when
// heartbeats are asked for).
func (s *stream) next(t *testing.T, heartbeats bool) watch.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-s.lines:
			if ev.Type == watch.TypeHeartbeat && !heartbeats {
				continue
			}
			return ev
		case <-s.ended:
			t.Fatal("the stream ended")
		case <-deadline:
			t.Fatal("no event within 10 s")
		}
	}
}

func TestWatchStreamsChangesToResolverTokensOnly(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx := context.Background()
	hub := watch.NewHub(8)
	limited, _, err := a.ground.tokens.Create(ctx, auth.CreateRequest{Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	remember(limited)
	router := handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Keys: a.ground.keys, Tokens: a.ground.tokens,
		Watch: hub, WatchHeartbeat: 100 * time.Millisecond})
	// The API server's own timeouts: a stream must outlive WriteTimeout.
	srv := httptest.NewUnstartedServer(router)
	srv.Config.WriteTimeout = 500 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name, token string
		status      int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a wrong token", "kbt_" + "x", http.StatusUnauthorized},
		{"an operator", a.tokens["operator"], http.StatusForbidden},
		{"an admin", a.tokens["admin"], http.StatusForbidden},
		{"a reader", a.tokens["reader"], http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, resp := openWatch(t, srv.URL, tc.token); s != nil || resp.StatusCode != tc.status {
				t.Fatalf("watch: %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if hub.Len() != 0 {
		t.Fatalf("refused watches left %d watchers", hub.Len())
	}

	all, resp := openWatch(t, srv.URL, a.tokens["resolver"])
	if all == nil || resp.Header.Get("Content-Type") != "application/x-ndjson" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("watch: %v %v", resp.StatusCode, resp.Header)
	}
	mine, _ := openWatch(t, srv.URL, limited)
	if ev := all.next(t, false); ev.Type != watch.TypeHello {
		t.Fatalf("first event %+v, want hello", ev)
	}
	if ev := mine.next(t, false); ev.Type != watch.TypeHello {
		t.Fatalf("first event %+v, want hello", ev)
	}
	// The stream outlives the server's write timeout, kept alive by
	// heartbeats.
	time.Sleep(1200 * time.Millisecond)
	if ev := all.next(t, true); ev.Type != watch.TypeHeartbeat {
		t.Fatalf("an idle stream says %+v, want a heartbeat", ev)
	}

	hub.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: "workspace", ScopeID: "ws2", Provider: "openai", KeyID: "default"})
	hub.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: "organization", ScopeID: "acme", Provider: "openai"})
	hub.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: "workspace", ScopeID: "ws1", Provider: "openai", KeyID: "default"})
	for _, want := range []string{"ws2", "acme", "ws1"} {
		if ev := all.next(t, false); ev.ScopeID != want {
			t.Fatalf("the unlimited resolver heard %+v, want %s", ev, want)
		}
	}
	// The resolver of ws1 does not hear of ws2; it hears of organizations.
	for _, want := range []string{"acme", "ws1"} {
		if ev := mine.next(t, false); ev.ScopeID != want {
			t.Fatalf("the ws1 resolver heard %+v, want %s", ev, want)
		}
	}

	// Revoking a token ends its stream with a revoked event.
	hub.Revoke(a.ids["resolver"])
	if ev := all.next(t, false); ev.Type != watch.TypeRevoked {
		t.Fatalf("after the revoke: %+v", ev)
	}
	select {
	case <-all.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked token's stream stays open")
	}
	if hub.Len() != 1 {
		t.Fatalf("%d watchers, want the ws1 resolver's", hub.Len())
	}
}
