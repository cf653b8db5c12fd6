package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/watch"
)

// watcher is an open watch stream whose events (heartbeats aside) arrive
// on a channel.
type watcher struct {
	events chan client.WatchEvent
}

func openWatcher(t *testing.T, addr, token string) *watcher {
	t.Helper()
	c, err := client.New(client.Config{Address: "http://" + addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Watch(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	w := &watcher{events: make(chan client.WatchEvent, 256)}
	go func() {
		defer close(w.events)
		for {
			ev, err := s.Next()
			if err != nil {
				return
			}
			if ev.Type != watch.TypeHeartbeat {
				w.events <- ev
			}
		}
	}()
	if ev := w.next(t, "the hello"); ev.Type != watch.TypeHello {
		t.Fatalf("first event %+v", ev)
	}
	return w
}

func (w *watcher) next(t *testing.T, what string) client.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatalf("no event for %s within 15 s", what)
	}
	return client.WatchEvent{}
}

// until collects the events up to the one naming ws1's key keyID (the
// marker each phase ends with), as scope:id names.
func (w *watcher) until(t *testing.T, keyID string) map[string]bool {
	t.Helper()
	heard := map[string]bool{}
	for {
		ev := w.next(t, "the marker "+keyID)
		if ev.Type == watch.TypeInvalidate && ev.Scope == "workspace" && ev.ScopeID == "ws1" && ev.KeyID == keyID {
			return heard
		}
		switch {
		case ev.Type != watch.TypeInvalidate:
			heard[ev.Type] = true
		case ev.Workspace != "":
			heard["settings:"+ev.Workspace] = true
		default:
			heard[ev.Scope+":"+ev.ScopeID] = true
		}
	}
}

// TestAWorkspaceLimitedWatcherHearsOnlyWhatItsWorkspacesResolveFrom runs
// an admin replica and a resolver replica over the real Vault and
// PostgreSQL. Keys of ws1, ws2, two organizations and the hosted scope
// change through the admin replica, and ws1 is relinked from acme to
// beta: a resolver token limited to ws1 watching the resolver replica
// hears of ws1 and of the organization ws1 inherits from at the time, of
// the hosted keys only once ws1 may fall back to them, and never of ws2 or
// the other organization; the unlimited resolver hears of all of it. The
// replica also caps the streams: past a token's cap and past its own,
// 429 too_many_streams, counted in its metrics.
func TestAWorkspaceLimitedWatcherHearsOnlyWhatItsWorkspacesResolveFrom(t *testing.T) {
	ctx := context.Background()
	g := newApproleGround(t, nil)
	adminAddr, _ := startServe(t, g.modeEnv(t, "admin"))
	metricsAddr := freeAddr(t)
	resolverAddr, resolverLogs := startServe(t, g.modeEnv(t, "resolver", "KEYBROKER_WATCH_STREAMS_PER_TOKEN=2",
		"KEYBROKER_WATCH_STREAMS_PER_REPLICA=3", "KEYBROKER_METRICS_ADDR="+metricsAddr))
	admin, _ := client.New(client.Config{Address: "http://" + adminAddr, Token: g.opToken})
	minter := auth.NewService(kbtest.NewOwnerStore(t, g.dbURL), auth.Options{Keys: kbtest.RowKeys()})
	limited, _, err := minter.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, Workspaces: []string{"ws1"}, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	put := func(scope client.Scope, keyID string) {
		t.Helper()
		key := "sk-proj-scope-" + testenv.RandomID(t) + testenv.RandomID(t)
		keys = append(keys, key)
		if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: scope, Provider: "openai", KeyID: keyID}, key, 0); err != nil {
			t.Fatalf("put %s %s: %v", scope, keyID, err)
		}
	}
	link := func(org string, hosted bool) {
		t.Helper()
		if _, err := admin.PutSettings(ctx, "ws1", client.SettingsRequest{Organization: &org, HostedFallback: &hosted}); err != nil {
			t.Fatal(err)
		}
	}
	link("acme", false)
	mine := openWatcher(t, resolverAddr, limited)
	all := openWatcher(t, resolverAddr, g.resolverToken)

	// Linked to acme, no hosted fallback.
	for _, s := range []client.Scope{client.Workspace("ws2"), client.Organization("beta"), client.Hosted(), client.Organization("acme")} {
		put(s, "shared")
	}
	put(client.Workspace("ws1"), "marker1")
	heard := mine.until(t, "marker1")
	if !heard["organization:acme"] || heard["organization:beta"] || heard["workspace:ws2"] || heard["hosted:"] {
		t.Fatalf("the ws1 resolver, ws1 linked to acme without hosted fallback, heard %v", heard)
	}
	if everything := all.until(t, "marker1"); !everything["organization:beta"] || !everything["workspace:ws2"] || !everything["hosted:"] || !everything["organization:acme"] {
		t.Fatalf("the unlimited resolver heard %v", everything)
	}

	// Relinked to beta, with hosted fallback: acme is no longer its
	// business, beta and the hosted keys are.
	link("beta", true)
	for _, s := range []client.Scope{client.Workspace("ws2"), client.Organization("acme"), client.Organization("beta"), client.Hosted()} {
		put(s, "shared")
	}
	put(client.Workspace("ws1"), "marker2")
	heard = mine.until(t, "marker2")
	if !heard["settings:ws1"] || !heard["organization:beta"] || !heard["hosted:"] || heard["organization:acme"] || heard["workspace:ws2"] {
		t.Fatalf("the ws1 resolver, ws1 relinked to beta with hosted fallback, heard %v", heard)
	}

	// The caps: 2 streams per token, 3 on the replica (two are open).
	mine2 := openWatcher(t, resolverAddr, limited)
	_ = mine2
	refused := func(token, want string) {
		t.Helper()
		c, _ := client.New(client.Config{Address: "http://" + resolverAddr, Token: token})
		_, err := c.Watch(ctx)
		if !client.IsStatus(err, http.StatusTooManyRequests) || !strings.Contains(err.Error(), "too_many_streams") || !strings.Contains(err.Error(), want) {
			t.Fatalf("a stream past the cap: %v", err)
		}
	}
	refused(limited, "this token holds as many watch streams as it may on this replica (2)")
	refused(g.resolverToken, "this replica holds as many watch streams as it may (3)")
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"keybroker_watch_streams 3", `keybroker_watch_streams_refused_total{limit="replica"} 1`,
		`keybroker_watch_streams_refused_total{limit="token"} 1`, "keybroker_watch_streams_per_token_limit 2"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Fatalf("the resolver replica's metrics lack %q", want)
		}
	}
	if strings.Contains(string(body), limited) || strings.Contains(string(body), g.resolverToken) {
		t.Fatal("a token is in the metrics")
	}
	for _, secret := range append(keys, limited, g.resolverToken) {
		if strings.Contains(resolverLogs.String(), secret) {
			t.Fatal("a key or token is in the resolver replica's log")
		}
	}
}
