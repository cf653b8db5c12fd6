// Package watch owns the fan-out of resolve-changing events to the
// clients that cache keys in their own memory (GET /v1/resolve/watch): one
// Hub per replica, fed by the replica's LISTEN/NOTIFY, one bounded buffer
// per watcher. Publishing never blocks: a watcher whose buffer is full is
// cut off (its client reconnects and flushes what it holds), so a slow
// watcher can slow neither the others nor the resolves.
package watch

import (
	"sync"
	"sync/atomic"

	"github.com/keybroker/keybroker/client"
)

// Event types.
const (
	// TypeHello opens a stream: the client flushes what it holds.
	TypeHello = "hello"
	// TypeInvalidate: what can resolve for the scope and provider (one
	// key, or the pool when KeyID is empty; every provider of the scope
	// when Provider is empty) changed: a key written, rotated, rolled back,
	// deleted, its settings, order or health; or the workspace's settings.
	TypeInvalidate = "invalidate"
	// TypeFlush: this replica may have missed changes (its PostgreSQL
	// listener reconnected): drop everything.
	TypeFlush = "flush"
	// TypeHeartbeat keeps the connection and tells the client the stream
	// is alive.
	TypeHeartbeat = "heartbeat"
	// TypeRevoked: the watcher's token was revoked; the stream ends and
	// the client drops every key.
	TypeRevoked = "revoked"
)

// Event is one line of the stream, as the Go client reads it.
type Event = client.WatchEvent

// Watcher is one subscription.
type Watcher struct {
	// C delivers the events in order.
	C chan Event
	// Done is closed when the hub cuts the watcher off (its buffer was
	// full) or its token was revoked (a TypeRevoked event is then the
	// last on C when there was room).
	Done    chan struct{}
	tokenID string
	once    sync.Once
	// Overflowed says the watcher was cut off for being slow.
	overflowed atomic.Bool
}

// Overflowed reports whether the hub cut the watcher off for not keeping up.
func (w *Watcher) Overflowed() bool { return w.overflowed.Load() }

func (w *Watcher) end() { w.once.Do(func() { close(w.Done) }) }

// Hub fans events out to watchers.
type Hub struct {
	mu       sync.RWMutex
	watchers map[*Watcher]struct{}
	buffer   int
	cut      atomic.Int64
}

// NewHub is a hub whose watchers each buffer up to buffer events (at
// least 1; 0 takes 256).
func NewHub(buffer int) *Hub {
	if buffer <= 0 {
		buffer = 256
	}
	return &Hub{watchers: map[*Watcher]struct{}{}, buffer: buffer}
}

// Subscribe adds a watcher for a token.
func (h *Hub) Subscribe(tokenID string) *Watcher {
	w := &Watcher{C: make(chan Event, h.buffer), Done: make(chan struct{}), tokenID: tokenID}
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	return w
}

// Unsubscribe removes a watcher (its stream ended).
func (h *Hub) Unsubscribe(w *Watcher) {
	h.mu.Lock()
	delete(h.watchers, w)
	h.mu.Unlock()
	w.end()
}

// Len is how many watchers are subscribed.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.watchers)
}

// CutOff is how many watchers were cut off for not keeping up.
func (h *Hub) CutOff() int64 { return h.cut.Load() }

// Publish sends ev to every watcher, never waiting: a watcher with a
// full buffer is cut off.
func (h *Hub) Publish(ev Event) {
	h.mu.RLock()
	var slow []*Watcher
	for w := range h.watchers {
		select {
		case w.C <- ev:
		default:
			slow = append(slow, w)
		}
	}
	h.mu.RUnlock()
	for _, w := range slow {
		w.overflowed.Store(true)
		h.cut.Add(1)
		h.Unsubscribe(w)
	}
}

// Revoke ends the watchers of a revoked token, after a TypeRevoked event
// where the buffer has room.
func (h *Hub) Revoke(tokenID string) {
	h.mu.RLock()
	var mine []*Watcher
	for w := range h.watchers {
		if w.tokenID == tokenID {
			mine = append(mine, w)
		}
	}
	h.mu.RUnlock()
	for _, w := range mine {
		select {
		case w.C <- Event{Type: TypeRevoked}:
		default:
		}
		h.Unsubscribe(w)
	}
}

// EndAll ends every watcher's stream: the server is shutting down, and
// the clients reconnect to another replica and flush what they hold
// (their hello). A stream would otherwise hold the shutdown for its whole
// grace.
func (h *Hub) EndAll() {
	h.mu.Lock()
	all := h.watchers
	h.watchers = map[*Watcher]struct{}{}
	h.mu.Unlock()
	for w := range all {
		w.end()
	}
}
