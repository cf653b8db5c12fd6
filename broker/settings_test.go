package broker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
)

// countingSettings is the real store, counting settings reads.
type countingSettings struct {
	*store.Store
	reads atomic.Int32
}

func (c *countingSettings) AllWorkspaceSettings(ctx context.Context) (map[string]broker.Settings, error) {
	c.reads.Add(1)
	return c.Store.AllWorkspaceSettings(ctx)
}

func (c *countingSettings) WorkspaceSettings(ctx context.Context, ws string) (broker.Settings, error) {
	c.reads.Add(1)
	return c.Store.WorkspaceSettings(ctx, ws)
}

func TestHostedFallbackOffFailsClosedOnEveryReplica(t *testing.T) {
	ctx := context.Background()
	var counted *countingSettings
	e := newEnv(t, func(c *broker.Config) {
		counted = &countingSettings{Store: c.Store.(*store.Store)}
		c.Settings = counted
	})
	ws := e.workspc
	e.setHosted(t, "openai", newKey(t, "openai"))
	other := e.another(t, nil) // replica B, reading the same database
	listen(t, e, other)

	r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || r.ScopeKind != broker.ScopeHosted || r.IsBYOK || r.FallbackReason != broker.ReasonNoWorkspaceKey || r.ResolutionID == "" {
		t.Fatalf("before: %v %v", r, err)
	}
	off := false
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, HostedFallback: &off}); err != nil {
		t.Fatal(err)
	}
	readsBefore := counted.reads.Load()
	var nk *broker.NoKeyError
	for range 100 {
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); !errors.As(err, &nk) || nk.Reason != broker.ReasonHostedFallbackOff {
			t.Fatalf("after turning the fallback off: %v", err)
		}
	}
	if n := counted.reads.Load() - readsBefore; n != 0 {
		t.Fatalf("100 resolves read the settings from PostgreSQL %d times, want 0 (they are in memory)", n)
	}
	// Replica B learns it through NOTIFY.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := other.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
		if errors.As(err, &nk) && nk.Reason == broker.ReasonHostedFallbackOff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B still serves the hosted key 5 s after the change: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The workspace's own key is served whatever the fallback says.
	own := newKey(t, "openai")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(own)}); err != nil {
		t.Fatal(err)
	}
	r, err = e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || r.APIKey() != own || r.ScopeKind != broker.ScopeWorkspace || r.KeyID != broker.DefaultKeyID || r.FallbackReason != "" {
		t.Fatalf("with its own key: %v %v", r, err)
	}
	r2, _ := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if r2.ResolutionID == r.ResolutionID {
		t.Fatal("two answers share a resolution id")
	}
	// The change is in the audit trail.
	evs, err := e.store.ListAudit(ctx, broker.WorkspaceScope(ws), 0, 10)
	if err != nil || !containsAction(evs, broker.ActionSettings) {
		t.Fatalf("audit: %v %v", evs, err)
	}
}

func TestUnloadedSettingsNeverFallBackBlindly(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	e.setHosted(t, "openai", newKey(t, "openai"))
	// A replica that could read neither pools nor settings yet
	// (PostgreSQL down since its start) serves nothing.
	cfg := e.cfg
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); !errors.Is(err, broker.ErrPoolsNotLoaded) {
		t.Fatalf("a resolve with the pools unknown: %v, want pools not loaded", err)
	}
	// One that read the pools, not the settings.
	if err := b.LoadPools(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("a hosted fallback with the settings unknown: %v, want unavailable", err)
	}
	own := newKey(t, "openai")
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(e.workspc, "openai", broker.DefaultKeyID), Credential: providers.APIKey(own)}); err != nil {
		t.Fatal(err)
	}
	if err := b.PoolChanged(ctx, broker.WorkspaceScope(e.workspc).Pool("openai")); err != nil { // as the NOTIFY of the write would
		t.Fatal(err)
	}
	if r, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: e.workspc, Provider: "openai"}); err != nil || r.APIKey() != own {
		t.Fatalf("the workspace's own key with the settings unknown: %v", err)
	}
}

func containsAction(evs []broker.AuditEvent, action string) bool {
	for _, ev := range evs {
		if ev.Action == action {
			return true
		}
	}
	return false
}

func TestOnlyPermittedCallersChangeTheOrganizationLink(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	acme, other := "acme", "globex"
	req := broker.SettingsRequest{Actor: alice, Workspace: e.workspc, Organization: &acme}
	if _, err := e.b.PutSettings(ctx, req); !errors.Is(err, broker.ErrLinkNotAllowed) {
		t.Fatalf("linking without permission: %v", err)
	}
	req.MayLink = true
	if s, err := e.b.PutSettings(ctx, req); err != nil || s.Organization != "acme" {
		t.Fatalf("linking with permission: %+v %v", s, err)
	}
	off := false
	// Naming the current organization again is no change.
	if s, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: e.workspc, Organization: &acme, HostedFallback: &off}); err != nil || s.HostedFallback {
		t.Fatalf("the same organization again: %+v %v", s, err)
	}
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: e.workspc, Organization: &other}); !errors.Is(err, broker.ErrLinkNotAllowed) {
		t.Fatalf("moving to another organization without permission: %v", err)
	}
	if s, err := e.b.GetSettings(ctx, e.workspc); err != nil || s.Organization != "acme" || s.HostedFallback {
		t.Fatalf("after the refusal: %+v %v", s, err)
	}
}
