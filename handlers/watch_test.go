package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/runtime/watch"
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
		// The refusal's body, kept for the caller and the leak check.
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		errorBodies.Write(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
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
	limited, _, err := a.ground.minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "test"})
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
	// The resolver of ws1 hears of neither ws2 nor acme (ws1 is linked to
	// no organization).
	if ev := mine.next(t, false); ev.ScopeID != "ws1" {
		t.Fatalf("the ws1 resolver heard %+v, want ws1", ev)
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

// watchRouter serves a's ground with hub as the watch hub.
func watchRouter(t *testing.T, a *api, hub *watch.Hub) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Keys: a.ground.keys,
		Tokens: a.ground.tokens, Watch: hub, WatchHeartbeat: time.Hour}))
	t.Cleanup(srv.Close)
	return srv
}

// TestAWorkspaceLimitedWatchCarriesOnlyWhatItsWorkspacesResolveFrom: a
// resolver limited to ws1 hears of ws1, of the organization ws1 inherits
// from (after a relink, the new one only) and of the hosted keys while
// ws1 may fall back to them — never of another workspace or
// organization. The unlimited resolver hears of everything.
func TestAWorkspaceLimitedWatchCarriesOnlyWhatItsWorkspacesResolveFrom(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx := context.Background()
	hub := watch.NewHub(0)
	srv := watchRouter(t, a, hub)
	limited, _, err := a.ground.minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	remember(limited)
	settings := func(body string) {
		t.Helper()
		if r := a.call("operator", "PUT", "/v1/workspaces/ws1/settings", body); r.status != http.StatusOK {
			t.Fatalf("settings %s: %d %s", body, r.status, r.body)
		}
		// What the replica's invalidation listener publishes once it has
		// applied the change.
		hub.Publish(watch.Event{Type: watch.TypeInvalidate, Scope: "workspace", ScopeID: "ws1", Workspace: "ws1"})
	}
	settings(`{"organization":"acme","hostedFallback":false}`)
	mine, _ := openWatch(t, srv.URL, limited)
	all, _ := openWatch(t, srv.URL, a.tokens["resolver"])
	for _, s := range []*stream{mine, all} {
		if ev := s.next(t, false); ev.Type != watch.TypeHello {
			t.Fatalf("first event %+v", ev)
		}
	}
	org := func(id string) watch.Event {
		return watch.Event{Type: watch.TypeInvalidate, Scope: "organization", ScopeID: id, Provider: "openai", KeyID: "shared"}
	}
	hosted := watch.Event{Type: watch.TypeInvalidate, Scope: "hosted", Provider: "openai", KeyID: "platform"}
	ws := func(id string) watch.Event {
		return watch.Event{Type: watch.TypeInvalidate, Scope: "workspace", ScopeID: id, Provider: "openai", KeyID: "default"}
	}
	wsSettings := watch.Event{Type: watch.TypeInvalidate, Scope: "workspace", ScopeID: "ws2", Workspace: "ws2"}
	name := func(ev watch.Event) string {
		if ev.Type != watch.TypeInvalidate {
			return ev.Type
		}
		if ev.Workspace != "" {
			return "settings:" + ev.Workspace
		}
		return ev.Scope + ":" + ev.ScopeID
	}
	expect := func(s *stream, who string, want ...string) {
		t.Helper()
		for _, w := range want {
			if got := name(s.next(t, false)); got != w {
				t.Fatalf("%s heard %s, want %s (in order: %v)", who, got, w, want)
			}
		}
	}
	send := func(evs ...watch.Event) {
		for _, ev := range evs {
			hub.Publish(ev)
		}
	}

	// Linked to acme, inheriting, no hosted fallback.
	send(org("beta"), hosted, ws("ws2"), wsSettings, org("acme"), ws("ws1"))
	expect(all, "the unlimited resolver", "organization:beta", "hosted:", "workspace:ws2", "settings:ws2", "organization:acme", "workspace:ws1")
	expect(mine, "the ws1 resolver", "organization:acme", "workspace:ws1")

	// Relinked to beta, hosted fallback on: acme is no longer its business.
	settings(`{"organization":"beta","hostedFallback":true}`)
	send(org("acme"), org("beta"), hosted, ws("ws1"))
	expect(mine, "the ws1 resolver after the relink", "settings:ws1", "organization:beta", "hosted:", "workspace:ws1")

	// Inheriting no more: beta's keys cannot serve ws1.
	settings(`{"inherit":false}`)
	send(org("beta"), hosted, flushEvent())
	expect(mine, "the ws1 resolver that inherits nothing", "settings:ws1", "hosted:", "flush")
	expect(all, "the unlimited resolver", "settings:ws1", "organization:acme", "organization:beta", "hosted:", "workspace:ws1",
		"settings:ws1", "organization:beta", "hosted:", "flush")
}

func flushEvent() watch.Event { return watch.Event{Type: watch.TypeFlush} }

// TestWatchStreamsAreCappedPerTokenAndPerReplica: past a token's cap, or
// the replica's, a stream is refused with 429 too_many_streams and
// Retry-After; a stream that ends gives its place back.
func TestWatchStreamsAreCappedPerTokenAndPerReplica(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx := context.Background()
	hub := watch.New(watch.Config{PerToken: 2, PerReplica: 3})
	srv := watchRouter(t, a, hub)
	other, _, err := a.ground.minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	remember(other)
	refused := func(token, want string) {
		t.Helper()
		s, resp := openWatch(t, srv.URL, token)
		if s != nil {
			t.Fatal("a stream past the cap was opened")
		}
		body, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "5" || e.Error.Code != "too_many_streams" ||
			!strings.Contains(e.Error.Message, want) {
			t.Fatalf("past the cap: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	first, _ := openWatch(t, srv.URL, a.tokens["resolver"])
	if first == nil {
		t.Fatal("the first stream was refused")
	}
	if s, _ := openWatch(t, srv.URL, a.tokens["resolver"]); s == nil {
		t.Fatal("the second stream was refused")
	}
	refused(a.tokens["resolver"], "this token holds as many watch streams as it may on this replica (2)")
	if s, _ := openWatch(t, srv.URL, other); s == nil {
		t.Fatal("another token's stream was refused by the first token's cap")
	}
	refused(other, "this replica holds as many watch streams as it may (3)")

	// The first stream ends: its place is given back.
	first.resp.Body.Close()
	<-first.ended
	deadline := time.Now().Add(10 * time.Second)
	for hub.Len() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream still holds its place: %d streams", hub.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s, _ := openWatch(t, srv.URL, a.tokens["resolver"]); s == nil {
		t.Fatal("a place given back was not taken")
	}
}
