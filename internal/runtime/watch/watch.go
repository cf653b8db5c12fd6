// Package watch owns the fan-out of resolve-changing events to the
// clients that cache keys in their own memory (GET /v1/resolve/watch): one
// Hub per replica, fed by the replica's LISTEN/NOTIFY, one bounded buffer
// per watcher. Publishing never blocks: a watcher whose buffer is full is
// cut off (its client reconnects and flushes what it holds), so a slow
// watcher can slow neither the others nor the resolves. Streams are
// capped per token and per replica: a token cannot hold the replica's
// memory and goroutines by opening streams.
package watch

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

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

// Default caps of a Hub's streams.
const (
	// DefaultPerToken is how many streams one token may hold open on a
	// replica: a library client holds one; a few more cover restarts and
	// several processes sharing a token.
	DefaultPerToken = 8
	// DefaultPerReplica is how many streams a replica holds open at most
	// (about 47 kB of memory each).
	DefaultPerReplica = 1000
)

// Subscribe's refusals: a stream over a cap is not opened (429).
var (
	// ErrTokenLimit: the token already holds its cap of streams on this
	// replica.
	ErrTokenLimit = errors.New("the token holds as many watch streams as it may on this replica")
	// ErrReplicaLimit: the replica holds its cap of streams.
	ErrReplicaLimit = errors.New("this replica holds as many watch streams as it may")
)

// Config tunes a Hub. Zero values take the defaults.
type Config struct {
	// Buffer is how many events each watcher buffers. Default: 256.
	Buffer int
	// PerToken caps the streams of one token on this replica. Default:
	// DefaultPerToken.
	PerToken int
	// PerReplica caps the streams of this replica. Default:
	// DefaultPerReplica.
	PerReplica int
	// Registerer receives the hub's metrics (optional): the streams open,
	// the streams refused by cap, the watchers cut off. None is labelled
	// by token.
	Registerer prometheus.Registerer
}

// Hub fans events out to watchers.
type Hub struct {
	mu       sync.RWMutex
	watchers map[*Watcher]struct{}
	perToken map[string]int // streams open per token id
	cfg      Config
	cut      atomic.Int64
	refused  *prometheus.CounterVec
	cutOff   prometheus.Counter
}

// NewHub is a hub with the default caps whose watchers each buffer up
// to buffer events (0 takes 256).
func NewHub(buffer int) *Hub { return New(Config{Buffer: buffer}) }

// New is a hub tuned by cfg; it registers its metrics with
// cfg.Registerer when there is one.
func New(cfg Config) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.PerToken <= 0 {
		cfg.PerToken = DefaultPerToken
	}
	if cfg.PerReplica <= 0 {
		cfg.PerReplica = DefaultPerReplica
	}
	h := &Hub{watchers: map[*Watcher]struct{}{}, perToken: map[string]int{}, cfg: cfg,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keybroker_watch_streams_refused_total",
			Help: "Watch streams refused (429) because a cap was reached: limit=token (the token's streams on this replica) or replica."}, []string{"limit"}),
		cutOff: prometheus.NewCounter(prometheus.CounterOpts{Name: "keybroker_watch_streams_cut_off_total",
			Help: "Watch streams ended because the watcher did not keep up (its buffer was full)."}),
	}
	h.refused.WithLabelValues("token")
	h.refused.WithLabelValues("replica")
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.refused, h.cutOff,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_watch_streams",
				Help: "Watch streams (GET /v1/resolve/watch) open on this replica."}, func() float64 { return float64(h.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_watch_streams_limit",
				Help: "The cap of watch streams on this replica."}, func() float64 { return float64(cfg.PerReplica) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keybroker_watch_streams_per_token_limit",
				Help: "The cap of one token's watch streams on this replica."}, func() float64 { return float64(cfg.PerToken) }))
	}
	return h
}

// Limits are the hub's caps: per token, per replica.
func (h *Hub) Limits() (perToken, perReplica int) { return h.cfg.PerToken, h.cfg.PerReplica }

// Subscribe adds a watcher for a token, unless the token or the replica
// is at its cap (ErrTokenLimit, ErrReplicaLimit).
func (h *Hub) Subscribe(tokenID string) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.perToken[tokenID] >= h.cfg.PerToken:
		h.refused.WithLabelValues("token").Inc()
		return nil, ErrTokenLimit
	case len(h.watchers) >= h.cfg.PerReplica:
		h.refused.WithLabelValues("replica").Inc()
		return nil, ErrReplicaLimit
	}
	w := &Watcher{C: make(chan Event, h.cfg.Buffer), Done: make(chan struct{}), tokenID: tokenID}
	h.watchers[w] = struct{}{}
	h.perToken[tokenID]++
	return w, nil
}

// Unsubscribe removes a watcher (its stream ended); a second call, or one
// after EndAll, is harmless.
func (h *Hub) Unsubscribe(w *Watcher) {
	h.mu.Lock()
	h.removeLocked(w)
	h.mu.Unlock()
	w.end()
}

func (h *Hub) removeLocked(w *Watcher) {
	if _, ok := h.watchers[w]; !ok {
		return
	}
	delete(h.watchers, w)
	if n := h.perToken[w.tokenID] - 1; n > 0 {
		h.perToken[w.tokenID] = n
	} else {
		delete(h.perToken, w.tokenID)
	}
}

// Len is how many watchers are subscribed.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.watchers)
}

// Tokens is how many distinct tokens hold a stream.
func (h *Hub) Tokens() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.perToken)
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
		h.cutOff.Inc()
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
	clear(h.perToken)
	h.mu.Unlock()
	for w := range all {
		w.end()
	}
}
