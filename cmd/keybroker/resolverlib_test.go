package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/client/resolver"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// twoReplicas starts an admin and a resolver replica over the real Vault
// and PostgreSQL, and returns a client of the admin (operator token) and
// the resolver's address.
func twoReplicas(t *testing.T) (*client.Client, string, *approleGround) {
	t.Helper()
	g := newApproleGround(t, nil)
	adminAddr, _ := startServe(t, g.modeEnv(t, "admin"))
	resolverAddr, _ := startServe(t, g.modeEnv(t, "resolver"))
	admin, _ := client.New(client.Config{Address: "http://" + adminAddr, Token: g.opToken})
	return admin, resolverAddr, g
}

// cuttable is a TCP proxy whose connections the test can cut, and which
// can refuse new ones for a while: a broken network between the library
// and keybroker.
type cuttable struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	conns   []net.Conn
	refused bool
}

func newCuttable(t *testing.T, target string) *cuttable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cuttable{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); c.cut(false) })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			refused := c.refused
			c.mu.Unlock()
			if refused {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

// cut closes every connection; refuse says whether new ones are refused.
func (c *cuttable) cut(refuse bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns, c.refused = nil, refuse
}

func (c *cuttable) allow() {
	c.mu.Lock()
	c.refused = false
	c.mu.Unlock()
}

func waitUntil(t *testing.T, what string, within time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// The Go library against two real replicas: hits from its own memory, one
// request for many concurrent misses, a rotation and a deletion through the
// admin replica evicted by the stream from the resolver replica, no answer
// older than the bound while the stream is cut, a flush on reconnection,
// a health report, and a revoked token that empties it.
func TestTheResolverLibraryStaysExactAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	admin, resolverAddr, g := twoReplicas(t)
	proxy := newCuttable(t, resolverAddr)
	tok := g.mintResolver(t, "library")
	first := "sk-proj-lib-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, first, 0); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(client.Config{Address: "http://" + proxy.ln.Addr().String(), Token: tok.Token})
	r, err := resolver.New(resolver.Config{Client: c, MaxDisconnectedAge: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	waitUntil(t, "the stream connects", 10*time.Second, r.Connected)
	// A barrier: a change of another workspace's key, seen to evict it.
	// The stream is in order, so every earlier change (ws1's key being
	// written) has reached the library by then, and none can arrive during
	// the misses below (an eviction during a fetch makes the library fetch
	// again: that answer may predate the change).
	barrier := "sk-proj-lib-" + testenv.RandomID(t) + testenv.RandomID(t)
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws9"), Provider: "openai", KeyID: "default"}, barrier, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "ws9's key serves", 10*time.Second, func() bool {
		got, err := r.Resolve(ctx, "ws9", "openai", "")
		return err == nil && got.APIKey == barrier
	})
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws9"), Provider: "openai", KeyID: "default"}, barrier+"x", 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the barrier reaches the library", 10*time.Second, func() bool { return r.Len() == 0 })
	servesKey(t, c, first)
	base := r.Requests()

	// 1,000 concurrent misses of one key: one request.
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Go(func() {
			if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || got.APIKey != first {
				errs <- errors.Join(err, errors.New("wrong key"))
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("concurrent misses: %v", err)
	}
	if n := r.Requests() - base; n != 1 {
		t.Fatalf("1,000 concurrent misses sent %d requests, want 1", n)
	}
	// Hits come from memory.
	for range 100 {
		if _, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Requests() - base; n != 1 {
		t.Fatalf("hits sent requests: %d", n-1)
	}

	// A rotation on the admin replica: the library stops serving the old
	// key as soon as the resolver replica announces it.
	second := "sk-proj-lib-" + testenv.RandomID(t) + testenv.RandomID(t)
	start := time.Now()
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, second, 0); err != nil {
		t.Fatal(err)
	}
	acked := time.Since(start)
	reach := waitUntil(t, "the rotation reaches the library", 5*time.Second, func() bool { return r.Len() == 0 })
	if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || got.APIKey != second {
		t.Fatalf("after the rotation: %v", err)
	}
	t.Logf("rotation acknowledged in %v; the library evicted the old key %v later", acked.Round(time.Millisecond), reach.Round(time.Millisecond))

	// The stream cut and the network refused: answers are served only
	// while younger than MaxDisconnectedAge, then resolves fail rather than
	// serve an old key.
	proxy.cut(true)
	waitUntil(t, "the library sees the stream down", 5*time.Second, func() bool { return !r.Connected() })
	time.Sleep(600 * time.Millisecond)
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); err == nil {
		t.Fatal("with the stream down past the bound, the library served a cached key")
	}
	proxy.allow()
	waitUntil(t, "the stream reconnects", 10*time.Second, r.Connected)
	if got, err := r.Resolve(ctx, "ws1", "openai", ""); err != nil || got.APIKey != second {
		t.Fatalf("after reconnecting: %v", err)
	}

	// A deletion evicts too.
	if err := admin.RemoveKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, 0, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the deletion reaches the library", 5*time.Second, func() bool { return r.Len() == 0 })
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); !client.IsStatus(err, 404) {
		t.Fatalf("after the deletion: %v", err)
	}

	// A revoked token empties the library.
	if _, _, err := admin.PutKey(ctx, client.KeyRef{Scope: client.Workspace("ws1"), Provider: "openai", KeyID: "default"}, first, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the re-added key serves", 10*time.Second, func() bool {
		got, err := r.Resolve(ctx, "ws1", "openai", "")
		return err == nil && got.APIKey == first
	})
	// A health change evicts too: the provider refused the key, the
	// library reports it, and the pool's change comes back on the stream.
	res, err := r.Resolve(ctx, "ws1", "openai", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Report(ctx, res.ResolutionID, "unauthorized"); err != nil {
		t.Fatalf("report: %v", err)
	}
	waitUntil(t, "the health change reaches the library", 5*time.Second, func() bool { return r.Len() == 0 })
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); !client.IsStatus(err, 404) {
		t.Fatalf("with its only key failing, the workspace resolves: %v", err)
	}
	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the revocation empties the library", 10*time.Second, func() bool { return r.Len() == 0 && !r.Connected() })
	if _, err := r.Resolve(ctx, "ws1", "openai", ""); !errors.Is(err, resolver.ErrRevoked) {
		t.Fatalf("after the revocation: %v", err)
	}
}

// servesKey waits until keybroker (through c) resolves ws1's openai key to
// want: another replica's change reaches this one's pools milliseconds
// after it is acknowledged.
func servesKey(t *testing.T, c *client.Client, want string) {
	t.Helper()
	waitUntil(t, "the replica serves the key", 10*time.Second, func() bool {
		got, err := c.Resolve(context.Background(), "ws1", "openai")
		return err == nil && got.APIKey == want
	})
}
