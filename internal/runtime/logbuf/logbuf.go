// Package logbuf owns the buffering of keybroker's log output: lines are
// gathered in memory and written in one system call every interval (or
// when 64 KiB are waiting), instead of one write per line. At tens of
// thousands of access-log lines a second, the write per line was the
// largest cost of a resolve after the answer's own. Records at WARN and
// above are written at once, with everything before them, and Close
// writes what is left.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// maxBuffered is how much waits before a write happens regardless of the
// interval.
const maxBuffered = 64 << 10

// Writer buffers whole lines for out. Safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	out  io.Writer
	buf  []byte
	err  error
	stop chan struct{}
	done chan struct{}
}

// New starts a Writer that writes to out every interval. An interval of
// zero or less returns nil: use out directly.
func New(out io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		return nil
	}
	w := &Writer{out: out, buf: make([]byte, 0, maxBuffered), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(interval)
	return w
}

func (w *Writer) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write buffers p (one log line, as slog's handlers write them).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf)+len(p) > maxBuffered {
		w.flushLocked()
		if len(p) > maxBuffered {
			return w.writeLocked(p)
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush writes what is buffered. It returns the first write error the
// Writer met, if any (log output has nowhere to report one).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	return w.err
}

func (w *Writer) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	_, _ = w.writeLocked(w.buf)
	w.buf = w.buf[:0]
}

func (w *Writer) writeLocked(p []byte) (int, error) {
	n, err := w.out.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Close stops the timer and writes what is left.
func (w *Writer) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.Flush()
}

// Handler wraps h, whose output is w: a record at WARN or above is
// written at once (with the lines before it), so that an error is never
// waiting in memory when the process dies.
func Handler(h slog.Handler, w *Writer) slog.Handler {
	if w == nil {
		return h
	}
	return &handler{Handler: h, w: w}
}

type handler struct {
	slog.Handler
	w *Writer
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		_ = h.w.Flush()
	}
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{Handler: h.Handler.WithAttrs(attrs), w: h.w}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{Handler: h.Handler.WithGroup(name), w: h.w}
}
