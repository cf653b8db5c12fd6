package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
)

// The records of proxied calls, as the runtime role writes and reads them:
// pages newest first by id, each filter alone and together; the owner
// alone prunes them by age, and the prune is audited.
func TestProxyCallsArePagedFilteredAndPrunedByTheOwner(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	runtime := kbtest.NewStore(t, ownerURL)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// An old call first (ids follow the order of insertion, not of time).
	batch := []broker.ProxyCall{{At: now.Add(-500 * 24 * time.Hour), Workspace: "ws1", Provider: "openai", Status: 429}}
	for i := range 30 {
		batch = append(batch, broker.ProxyCall{At: now.Add(time.Duration(i-30) * time.Minute), Workspace: []string{"ws1", "ws2"}[i%2],
			Provider: []string{"openai", "anthropic", "openai"}[i%3], Scope: "workspace", KeyID: "main", KeyVersion: 1, Status: 200,
			Duration: 1500 * time.Microsecond, BYOK: true, BytesOut: int64(i), Caller: "ptk_0123456789abcdef", RequestID: "req"})
	}
	if err := runtime.AddProxyCalls(ctx, batch); err != nil {
		t.Fatal(err)
	}

	// Every call of ws1, in pages of 4: newest first, none twice.
	var ids []int64
	for before := int64(0); ; {
		page, err := runtime.QueryProxyCalls(ctx, broker.ProxyCallQuery{Workspace: "ws1", Before: before, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			if c.Workspace != "ws1" || (len(ids) > 0 && c.ID >= ids[len(ids)-1]) {
				t.Fatalf("call %+v after id %v", c, ids)
			}
			ids = append(ids, c.ID)
		}
		if len(page) < 4 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(ids) != 16 {
		t.Fatalf("%d calls of ws1, want 16", len(ids))
	}
	all, err := runtime.QueryProxyCalls(ctx, broker.ProxyCallQuery{Limit: 100})
	if err != nil || len(all) != 31 {
		t.Fatalf("every workspace: %d calls, %v", len(all), err)
	}
	c := all[0] // the newest: i = 29, with every field as written
	if c.Workspace != "ws2" || c.Provider != "openai" || c.BytesOut != 29 || c.Duration != 1500*time.Microsecond || !c.BYOK || c.Caller != "ptk_0123456789abcdef" || !c.At.Equal(now.Add(-time.Minute)) {
		t.Fatalf("the newest call reads back as %+v", c)
	}
	// The last 10 minutes' OpenAI calls of ws2: i in [20,30), odd, i%3 != 1.
	recent, err := runtime.QueryProxyCalls(ctx, broker.ProxyCallQuery{Workspace: "ws2", Provider: "openai", Since: now.Add(-10 * time.Minute), Until: now, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, c := range recent {
		got = append(got, c.BytesOut)
	}
	if fmt.Sprint(got) != "[29 27 23 21]" {
		t.Fatalf("filtered: the calls of bytes %v, want [29 27 23 21]", got)
	}

	if _, err := runtime.PruneProxyCalls(ctx, 400*24*time.Hour, "runtime"); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("the runtime role pruned proxied calls: %v", err)
	}
	owner, err := store.Open(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	n, err := owner.PruneProxyCalls(ctx, 400*24*time.Hour, "cli:owner")
	if err != nil || n != 1 {
		t.Fatalf("the owner's prune: %d %v", n, err)
	}
	if left, err := runtime.QueryProxyCalls(ctx, broker.ProxyCallQuery{Limit: 100}); err != nil || len(left) != 30 {
		t.Fatalf("after the prune: %d calls, %v", len(left), err)
	}
	evs, err := owner.ListAllAudit(ctx, 0, 1)
	if err != nil || len(evs) != 1 || evs[0].Action != "proxy_calls.prune" || !strings.Contains(evs[0].Detail, "1 proxied calls") {
		t.Fatalf("the prune's audit event: %+v %v", evs, err)
	}
}

// BenchmarkAddProxyCalls is what the credential proxy's records cost
// PostgreSQL: batches of 1,000 calls written as the execution pods' role
// writes them (one COPY each), per call.
func BenchmarkAddProxyCalls(b *testing.B) {
	ctx := context.Background()
	resolver := kbtest.NewResolverStore(b, testenv.DatabaseURL(b))
	now := time.Now().UTC()
	batch := make([]broker.ProxyCall, 1000)
	for i := range batch {
		batch[i] = broker.ProxyCall{At: now, Workspace: fmt.Sprintf("ws%d", i%100), Provider: "openai", Scope: "workspace",
			KeyID: "main", KeyVersion: 1, Status: 200, Duration: 1500 * time.Microsecond, BYOK: true, BytesOut: 300,
			Caller: "ptk_0123456789abcdef", RequestID: "req-0123456789abcdef0123456789"}
	}
	for b.Loop() {
		if err := resolver.AddProxyCalls(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/call")
}
