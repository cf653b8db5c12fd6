package proxy

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keybroker/keybroker/broker"
)

// Record is one proxied call (broker.ProxyCall).
type Record = broker.ProxyCall

// Sink stores records (store.Store.AddProxyCalls).
type Sink interface {
	AddProxyCalls(ctx context.Context, batch []broker.ProxyCall) error
}

// Recorder keeps records in memory and writes them in batches: every
// interval, or as soon as batch records wait. It holds at most max
// records; past that the oldest are dropped and counted.
type Recorder struct {
	sink     Sink
	log      *slog.Logger
	mu       sync.Mutex
	pending  []Record
	batch    int
	max      int
	dropped  atomic.Int64
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	interval time.Duration
}

// NewRecorder starts a Recorder; Close it to write what is left.
func NewRecorder(sink Sink, interval time.Duration, log *slog.Logger) *Recorder {
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{sink: sink, log: log, batch: 1000, max: 100_000, interval: interval,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// Add keeps rec; it never blocks on the database. A nil Recorder drops it.
func (r *Recorder) Add(rec Record) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if len(r.pending) >= r.max {
		r.pending = r.pending[1:]
		r.dropped.Add(1)
	}
	r.pending = append(r.pending, rec)
	full := len(r.pending) >= r.batch
	r.mu.Unlock()
	if full {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped counts the records lost because the database could not keep up
// (or was down for long).
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

func (r *Recorder) loop() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.kick:
		case <-r.stop:
			r.Flush(context.Background())
			return
		}
		r.Flush(context.Background())
	}
}

// Flush writes what is pending. Records that could not be written are
// kept for the next flush (within the bound).
func (r *Recorder) Flush(ctx context.Context) {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), r.batch)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.sink.AddProxyCalls(wctx, batch[:n])
		cancel()
		if err != nil {
			r.log.Warn("proxy: could not store the records of proxied calls; kept for the next try", "records", len(batch), "error", err)
			r.mu.Lock()
			r.pending = append(batch, r.pending...)
			if over := len(r.pending) - r.max; over > 0 {
				r.pending = r.pending[over:]
				r.dropped.Add(int64(over))
			}
			r.mu.Unlock()
			return
		}
		batch = batch[n:]
	}
}

// Close writes what is left and stops.
func (r *Recorder) Close() {
	if r == nil {
		return
	}
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}
