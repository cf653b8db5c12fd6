package watch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sub subscribes or fails the test.
func sub(t *testing.T, h *Hub, token string) *Watcher {
	t.Helper()
	w, err := h.Subscribe(token)
	if err != nil {
		t.Fatalf("subscribe %s: %v", token, err)
	}
	return w
}

func TestEventsArriveInOrderAndASlowWatcherIsCutOffWithoutBlocking(t *testing.T) {
	h := NewHub(4)
	fast, slow := sub(t, h, "tok_fast"), sub(t, h, "tok_slow")
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
	a1, a2, b := sub(t, h, "tok_a"), sub(t, h, "tok_a"), sub(t, h, "tok_b")
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
	ws := []*Watcher{sub(t, h, "tok_a"), sub(t, h, "tok_b")}
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

func TestStreamsAreCappedPerTokenAndPerReplica(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(Config{PerToken: 3, PerReplica: 5, Registerer: reg})
	var a []*Watcher
	for range 3 {
		a = append(a, sub(t, h, "tok_a"))
	}
	if _, err := h.Subscribe("tok_a"); !errors.Is(err, ErrTokenLimit) {
		t.Fatalf("a fourth stream of one token: %v, want ErrTokenLimit", err)
	}
	// Other tokens still get streams, up to the replica's cap.
	b1, b2 := sub(t, h, "tok_b"), sub(t, h, "tok_b")
	if _, err := h.Subscribe("tok_c"); !errors.Is(err, ErrReplicaLimit) {
		t.Fatalf("a sixth stream on the replica: %v, want ErrReplicaLimit", err)
	}
	if got := testutil.ToFloat64(h.refused.WithLabelValues("token")); got != 1 {
		t.Fatalf("refused by the token cap: %v", got)
	}
	if got := testutil.ToFloat64(h.refused.WithLabelValues("replica")); got != 1 {
		t.Fatalf("refused by the replica cap: %v", got)
	}
	// A stream that ends gives its place back, once however often it is
	// ended (the handler's Unsubscribe after a cut-off or a revoke).
	h.Unsubscribe(a[0])
	h.Unsubscribe(a[0])
	c := sub(t, h, "tok_c")
	if _, err := h.Subscribe("tok_a"); !errors.Is(err, ErrReplicaLimit) {
		t.Fatalf("a double Unsubscribe gave back two places: %v", err)
	}
	h.Revoke("tok_b")
	for _, w := range []*Watcher{b1, b2} {
		h.Unsubscribe(w)
	}
	sub(t, h, "tok_a")
	if h.Len() != 4 || h.Tokens() != 2 {
		t.Fatalf("%d streams of %d tokens, want 4 of 2", h.Len(), h.Tokens())
	}
	h.Publish(Event{Type: TypeInvalidate})
	if n, err := testutil.GatherAndCount(reg, "keybroker_watch_streams"); err != nil || n != 1 {
		t.Fatalf("keybroker_watch_streams: %d series, %v", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP keybroker_watch_streams Watch streams (GET /v1/resolve/watch) open on this replica.
# TYPE keybroker_watch_streams gauge
keybroker_watch_streams 4
`), "keybroker_watch_streams"); err != nil {
		t.Fatal(err)
	}
	// EndAll forgets every stream: the caps start again from zero.
	h.EndAll()
	h.Unsubscribe(c)
	for range 3 {
		sub(t, h, "tok_a")
	}
	if h.Len() != 3 || h.Tokens() != 1 {
		t.Fatalf("after EndAll: %d streams of %d tokens", h.Len(), h.Tokens())
	}
}
