package assertion

import (
	"testing"
	"time"
)

func TestAssertionReplayCacheDropsEntriesAfterTheirExpiry(t *testing.T) {
	c := newReplayCache(10)
	now := time.Unix(1_800_000_000, 0)
	if got := c.add("a", now.Add(time.Minute), now); got != added {
		t.Fatalf("first add: %v", got)
	}
	if got := c.add("b", now.Add(3*time.Minute), now); got != added {
		t.Fatalf("second add: %v", got)
	}
	if got := c.add("a", now.Add(time.Minute), now.Add(59*time.Second)); got != replayed {
		t.Fatalf("replay within the lifetime: %v", got)
	}
	// Past a's expiry, a is forgotten: the next add drops it.
	if got := c.add("c", now.Add(4*time.Minute), now.Add(61*time.Second)); got != added {
		t.Fatalf("third add: %v", got)
	}
	if n := c.len(); n != 2 {
		t.Fatalf("%d entries after a's expiry, want 2 (b, c)", n)
	}
	if got := c.add("b", now.Add(3*time.Minute), now.Add(2*time.Minute)); got != replayed {
		t.Fatalf("b replayed: %v", got)
	}
	if got := c.add("x", now.Add(10*time.Minute), now.Add(5*time.Minute)); got != added || c.len() != 1 {
		t.Fatalf("after all expired: %v, %d entries", got, c.len())
	}
}
