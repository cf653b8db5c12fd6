package broker

import (
	"testing"
	"time"
)

// TestLocalCooldownsAreKeptApartAndBounded: a workspace's cooldowns and
// one calling token's are kept apart (a resolve reads the workspace's and
// its own caller's, never another caller's), and a cooldown added when
// the bound makes room by dropping its subject's last forgotten entry is
// still held (it was once added to a map no longer held, and lost).
func TestLocalCooldownsAreKeptApartAndBounded(t *testing.T) {
	c := newLocalCooldowns(1)
	now := time.Unix(1_000_000, 0)
	a, b := HostedKey("openai", "a"), HostedKey("openai", "b")
	second := func(int) time.Duration { return time.Second }
	sandbox := coolSubject{workspace: "ws1", caller: "ptk_1"}
	if _, ok := c.cool(sandbox, a, now, second); !ok {
		t.Fatal("the first cooldown was not started")
	}
	if got := c.of("ws1", ""); got != nil {
		t.Fatalf("the workspace's cooldowns hold a caller's: %v", got)
	}
	if got := c.of("ws1", "ptk_2"); got != nil {
		t.Fatalf("another caller's cooldowns hold the first's: %v", got)
	}
	if got := c.of("ws2", "ptk_1"); got != nil {
		t.Fatalf("the caller's cooldowns in another workspace: %v", got)
	}
	if got := c.of("ws1", "ptk_1"); got[a] == 0 {
		t.Fatalf("the caller's own cooldowns: %v", got)
	}
	// The workspace's own subject is apart: an ok for it ends nothing of
	// the caller's.
	if c.clear(coolSubject{workspace: "ws1"}, a) {
		t.Fatal("the workspace's ok cleared a caller's cooldown")
	}
	// Much later, the same subject cools another key: the bound (1) makes
	// room by forgetting the first, which empties the subject's map.
	later := now.Add(CooldownMax + time.Hour)
	if _, ok := c.cool(sandbox, b, later, second); !ok {
		t.Fatal("the second cooldown was not started")
	}
	got := c.of("ws1", "ptk_1")
	if len(got) != 1 || got[b] != later.Add(time.Second).UnixNano() {
		t.Fatalf("after making room: %v, want the second key's cooldown", got)
	}
	if n := c.n.Load(); n != 1 || c.perWorkspace["ws1"] != 1 {
		t.Fatalf("%d pairs counted, %d of ws1, want 1 and 1", n, c.perWorkspace["ws1"])
	}
	if !c.clear(sandbox, b) || c.of("ws1", "ptk_1") != nil || len(c.perWorkspace) != 0 {
		t.Fatalf("after the last pair ended: %v, %v", c.of("ws1", "ptk_1"), c.perWorkspace)
	}
	if _, ok := c.index.Load("ws1"); ok {
		t.Fatal("a workspace with no pair left is still indexed")
	}
}
