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

// countingUsage is the real store, counting the batches written and able
// to refuse them (PostgreSQL down).
type countingUsage struct {
	*store.Store
	writes atomic.Int32
	refuse atomic.Bool
}

func (c *countingUsage) AddUsage(ctx context.Context, batch []broker.Usage) error {
	if c.refuse.Load() {
		return errors.Join(broker.ErrUnavailable, errors.New("refused by the test"))
	}
	c.writes.Add(1)
	return c.Store.AddUsage(ctx, batch)
}

func TestUsageIsCountedInMemoryAndFlushedInBatches(t *testing.T) {
	ctx := context.Background()
	var usage *countingUsage
	e := newEnv(t, func(c *broker.Config) { usage = &countingUsage{Store: c.Store.(*store.Store)}; c.Usage = usage })
	ws := e.workspc
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	var usage2 *countingUsage
	other := e.another(t, func(c *broker.Config) { usage2 = &countingUsage{Store: c.Store.(*store.Store)}; c.Usage = usage2 })
	for range 1000 {
		if _, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 300 {
		if _, err := other.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := usage.writes.Load() + usage2.writes.Load(); n != 0 {
		t.Fatalf("1,300 resolves made %d usage writes before a flush, want 0", n)
	}
	// A flush that PostgreSQL refuses keeps the counts for the next one.
	usage.refuse.Store(true)
	if err := e.b.FlushUsage(ctx); err == nil {
		t.Fatal("a refused flush reported success")
	}
	usage.refuse.Store(false)
	for _, b := range []*broker.Broker{e.b, other} {
		if err := b.FlushUsage(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := usage.writes.Load() + usage2.writes.Load(); n != 2 {
		t.Fatalf("two flushes made %d writes, want 2 (one batch each)", n)
	}
	m, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID))
	if err != nil || m.Resolves != 1300 || time.Since(m.LastUsedAt) > time.Minute || m.Idle {
		t.Fatalf("usage: %d resolves, last used %v, idle %v (%v); want 1300, just now, not idle", m.Resolves, m.LastUsedAt, m.Idle, err)
	}
	// Nothing new: a flush writes nothing.
	if err := e.b.FlushUsage(ctx); err != nil || usage.writes.Load() != 1 {
		t.Fatalf("an empty flush wrote (%d writes, %v)", usage.writes.Load(), err)
	}
}

func TestKeysUnusedFor90DaysAreIdle(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	e := newEnv(t, func(c *broker.Config) { c.Now = func() time.Time { return clock } })
	ws := e.workspc
	if _, err := e.b.PutKey(ctx, broker.PutKeyRequest{Actor: alice, Ref: broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID), Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	if m, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)); err != nil || m.Idle || m.Resolves != 0 {
		t.Fatalf("a new key: %+v %v", m, err)
	}
	clock = clock.Add(broker.IdleAfter + time.Hour)
	if m, err := e.b.GetKey(ctx, broker.WorkspaceKey(ws, "openai", broker.DefaultKeyID)); err != nil || !m.Idle {
		t.Fatalf("a key never used for 90 days: idle %v (%v)", m.Idle, err)
	}
}
