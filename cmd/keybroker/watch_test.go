package main

import (
	"context"
	"errors"
	"github.com/jackc/pgx/v5"
	"net/http"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/runtime/watch"
)

// TestAChangeOnOneReplicaReachesAWatcherOnAnother runs an admin replica and
// a resolver replica over the real Vault and PostgreSQL: a watcher on the
// resolver hears of a rotation, a disable and a settings change made
// through the admin replica (LISTEN/NOTIFY between them), and of its
// token's revocation, after which it is refused.
func TestAChangeOnOneReplicaReachesAWatcherOnAnother(t *testing.T) {
	ctx := context.Background()
	admin, resolverAddr, g := twoReplicas(t)
	tok := g.mintResolver(t, "watcher")
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, "sk-proj-watch-"+testenv.RandomID(t)+testenv.RandomID(t), 0); err != nil {
		t.Fatal(err)
	}

	watcher, _ := client.New(client.Config{Address: "http://" + resolverAddr, Token: tok.Token})
	stream, err := watcher.Watch(ctx)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer stream.Close()
	events := make(chan client.WatchEvent, 64)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Next()
			if err != nil {
				return
			}
			if ev.Type != watch.TypeHeartbeat {
				events <- ev
			}
		}
	}()
	next := func(what string) client.WatchEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %s", what)
			}
			return ev
		case <-time.After(15 * time.Second):
			t.Fatalf("no event for %s within 15 s", what)
		}
		return client.WatchEvent{}
	}
	if ev := next("the hello"); ev.Type != watch.TypeHello {
		t.Fatalf("first event %+v", ev)
	}
	// wait skips events until one that names ws1's openai pool (a write
	// announces the key, and the pool).
	wait := func(what string, match func(client.WatchEvent) bool) {
		t.Helper()
		for {
			if ev := next(what); match(ev) {
				return
			}
		}
	}
	start := time.Now()
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, "sk-proj-watch-"+testenv.RandomID(t)+testenv.RandomID(t), 0); err != nil {
		t.Fatal(err)
	}
	wait("the rotation", func(ev client.WatchEvent) bool {
		return ev.Type == watch.TypeInvalidate && ev.ScopeID == "ws1" && ev.Provider == "openai" && ev.KeyID == "default"
	})
	t.Logf("a rotation on the admin replica reached the resolver replica's watcher in %v", time.Since(start).Round(time.Millisecond))
	if _, err := admin.UpdateKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, client.UpdateKeyRequest{State: new("disabled")}); err != nil {
		t.Fatal(err)
	}
	wait("the disable", func(ev client.WatchEvent) bool {
		return ev.Type == watch.TypeInvalidate && ev.ScopeID == "ws1" && ev.Provider == "openai"
	})
	if _, err := admin.PutSettings(ctx, "ws1", client.SettingsRequest{HostedFallback: new(false)}); err != nil {
		t.Fatal(err)
	}
	wait("the settings change", func(ev client.WatchEvent) bool { return ev.Type == watch.TypeInvalidate && ev.Workspace == "ws1" })

	// Any database login may NOTIFY: a revocation forged with the resolver
	// role (the sandbox-facing pods') ends nothing, because the replica
	// asks the token's row first.
	forger, err := pgx.Connect(ctx, testenv.ResolverURL(t, g.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close(ctx)
	if _, err := forger.Exec(ctx, `SELECT pg_notify('keybroker_keys', $1)`, `{"t":"`+tok.ID+`"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutSettings(ctx, "ws1", client.SettingsRequest{HostedFallback: new(true)}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next("the settings change after a forged revocation")
		if ev.Type == watch.TypeRevoked {
			t.Fatal("a revocation forged with NOTIFY ended the watch stream")
		}
		if ev.Type == watch.TypeInvalidate && ev.Workspace == "ws1" {
			break
		}
	}
	var apiErr *client.Error
	if _, err := watcher.ResolveFor(ctx, client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
		t.Fatalf("the token stopped working after a forged revocation: %v", err)
	}

	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	wait("the revocation", func(ev client.WatchEvent) bool { return ev.Type == watch.TypeRevoked })
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("the stream goes on after the revocation")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream stays open after the revocation")
	}
	if _, err := watcher.Watch(ctx); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("a revoked token's watch: %v", err)
	}
}
