package watch

import (
	"strings"
	"testing"
	"time"
)

func TestEventsArriveInOrderAndASlowWatcherIsCutOffWithoutBlocking(t *testing.T) {
	h := NewHub(4)
	fast, slow := h.Subscribe("tok_fast"), h.Subscribe("tok_slow")
	done := make(chan struct{})
	var got []string
	go func() {
		defer close(done)
		for ev := range fast.C {
			got = append(got, ev.KeyID)
			if len(got) == 10 {
				return
			}
		}
	}()
	start := time.Now()
	for i := range 10 {
		h.Publish(Event{Type: TypeInvalidate, KeyID: string(rune('a' + i))})
		time.Sleep(time.Millisecond) // the fast reader keeps up
	}
	<-done
	if s := strings.Join(got, ""); s != "abcdefghij" {
		t.Fatalf("the fast watcher got %q", s)
	}
	select {
	case <-slow.Done:
	default:
		t.Fatal("the slow watcher (never read, buffer 4) was not cut off")
	}
	if !slow.Overflowed() || fast.Overflowed() || h.CutOff() != 1 || h.Len() != 1 {
		t.Fatalf("overflowed slow=%v fast=%v, cut %d, watchers %d", slow.Overflowed(), fast.Overflowed(), h.CutOff(), h.Len())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publishing to a full watcher blocked: %v", d)
	}
}

func TestRevokeEndsOnlyThatTokensWatchersWithARevokedEvent(t *testing.T) {
	h := NewHub(0)
	a1, a2, b := h.Subscribe("tok_a"), h.Subscribe("tok_a"), h.Subscribe("tok_b")
	h.Revoke("tok_a")
	for _, w := range []*Watcher{a1, a2} {
		select {
		case <-w.Done:
		default:
			t.Fatal("a watcher of the revoked token goes on")
		}
		if ev := <-w.C; ev.Type != TypeRevoked {
			t.Fatalf("last event %+v, want revoked", ev)
		}
	}
	select {
	case <-b.Done:
		t.Fatal("another token's watcher was ended")
	default:
	}
	if h.Len() != 1 {
		t.Fatalf("%d watchers left", h.Len())
	}
}

func TestEndAllEndsEveryWatcherAndForgetsThem(t *testing.T) {
	h := NewHub(0)
	ws := []*Watcher{h.Subscribe("tok_a"), h.Subscribe("tok_b")}
	h.EndAll()
	for _, w := range ws {
		select {
		case <-w.Done:
		default:
			t.Fatal("a watcher goes on after EndAll")
		}
		if w.Overflowed() {
			t.Fatal("an ended watcher is reported as cut off")
		}
		h.Unsubscribe(w) // what the stream's handler does next: harmless
	}
	if h.Len() != 0 || h.CutOff() != 0 {
		t.Fatalf("%d watchers left, %d cut off", h.Len(), h.CutOff())
	}
	h.Publish(Event{Type: TypeInvalidate}) // nobody left to block
}
