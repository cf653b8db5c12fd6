package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// TestUsageByVersionAndCallerAsTheResolverRoleWritesIt: the resolver
// role (whose replicas count resolves) adds the daily counts by version
// and resolver token with the totals; batches add up; proxied calls are
// read by version, day and caller.
func TestUsageByVersionAndCallerAsTheResolverRoleWritesIt(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	runtime := kbtest.NewStore(t, dbURL)
	resolver := kbtest.NewResolverStore(t, dbURL)
	ref := broker.WorkspaceKey("ws1", "openai", "main")
	day := time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	batch := []broker.Usage{{Ref: ref, Resolves: 5, LastUsedAt: day, ByCaller: []broker.CallerResolves{
		{Version: 1, Caller: "tok_a", Resolves: 3}, {Version: 2, Caller: "tok_a", Resolves: 1}, {Version: 2, Caller: "tok_b", Resolves: 1}}}}
	for range 2 {
		if err := resolver.AddUsage(ctx, batch); err != nil {
			t.Fatalf("the resolver role adds usage: %v", err)
		}
	}
	rows, err := runtime.ResolvesOf(ctx, ref, day.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]any]int64{{2, "tok_a"}: 2, {2, "tok_b"}: 2, {1, "tok_a"}: 6}
	if len(rows) != 3 {
		t.Fatalf("rows %+v", rows)
	}
	for _, r := range rows {
		if want[[2]any{r.Version, r.Caller}] != r.Count || !r.Day.Equal(day.Truncate(24*time.Hour)) {
			t.Fatalf("row %+v", r)
		}
	}
	if later, _ := runtime.ResolvesOf(ctx, ref, day.Add(24*time.Hour)); len(later) != 0 {
		t.Fatalf("since the next day: %+v", later)
	}
	// Proxied calls of the key, by version, day and caller.
	calls := []broker.ProxyCall{
		{At: day, Workspace: "ws1", Provider: "openai", Scope: "workspace", KeyID: "main", KeyVersion: 2, Status: 200, Caller: "ptk_0000000000000001"},
		{At: day.Add(time.Hour), Workspace: "ws1", Provider: "openai", Scope: "workspace", KeyID: "main", KeyVersion: 2, Status: 200, Caller: "ptk_0000000000000001"},
		{At: day, Workspace: "ws2", Provider: "openai", Scope: "workspace", KeyID: "main", KeyVersion: 2, Status: 200, Caller: "ptk_0000000000000002"},
	}
	if err := resolver.AddProxyCalls(ctx, calls); err != nil {
		t.Fatal(err)
	}
	got, err := runtime.ProxiedCallsOf(ctx, ref, day.Add(-time.Hour))
	if err != nil || len(got) != 1 || got[0].Count != 2 || got[0].Version != 2 || got[0].Caller != "ptk_0000000000000001" {
		t.Fatalf("proxied calls of ws1's key: %+v %v", got, err)
	}
}
