package handlers

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// accessLineWriter writes access-log lines in the bytes slog's
// JSONHandler would write for the same record — a test holds the two
// equal — at a fraction of its cost (the access log is on the hot path).
// It knows only the kinds the access log uses: strings, integers and
// floats.
type accessLineWriter struct {
	out io.Writer
}

var accessLineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (w *accessLineWriter) write(t time.Time, msg string, attrs []slog.Attr) {
	buf := accessLineBuffers.Get().(*[]byte)
	*buf = appendAccessLine((*buf)[:0], t, msg, attrs)
	_, _ = w.out.Write(*buf)
	accessLineBuffers.Put(buf)
}

// appendAccessLine appends an INFO record as slog.JSONHandler formats it
// (time in RFC 3339 with nanoseconds, level, message, then the
// attributes).
func appendAccessLine(b []byte, t time.Time, msg string, attrs []slog.Attr) []byte {
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":`...)
	b = appendJSONText(b, msg, false)
	for _, a := range attrs {
		b = append(b, ',')
		b = appendJSONText(b, a.Key, false)
		b = append(b, ':')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendJSONText(b, v.String(), false)
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindFloat64:
			// As encoding/json writes the durations logged here (never
			// below 1e-6 but for 0, never 1e21 or more).
			b = strconv.AppendFloat(b, v.Float64(), 'f', -1, 64)
		default:
			b = appendJSONText(b, v.String(), false)
		}
	}
	return append(b, "}\n"...)
}

// refusalLogEvery is the interval over which the access-log lines of 429
// answers are aggregated.
const refusalLogEvery = 10 * time.Second

// maxRefusalKeys bounds the tokens and addresses counted in an interval;
// past it, the others share one count (and get no line of their own).
const maxRefusalKeys = 1_000

// refusalKey is whose 429s are counted together: a token, or the client
// address of an unauthenticated request.
type refusalKey struct{ tokenID, role, addr string }

type refusalCount struct {
	n     int
	route string // the latest
}

// refusalLog keeps a flood of refused requests from flooding the log. The
// first 429 answer of a token (or, before authentication, of a client
// address) in an interval gets its access-log line as any answer does;
// the others are counted, and when the interval ends one line per token
// or address says how many there were: written by a timer, armed while
// there are counts (or at the next 429 after the interval, whichever
// comes first). Nothing is added to the path of other answers.
type refusalLog struct {
	every time.Duration
	now   func() time.Time
	// write writes an aggregated line.
	write func(t time.Time, attrs []slog.Attr)

	mu     sync.Mutex
	start  time.Time
	seen   map[refusalKey]bool
	counts map[refusalKey]*refusalCount
	timer  *time.Timer
}

func newRefusalLog(every time.Duration, now func() time.Time, write func(time.Time, []slog.Attr)) *refusalLog {
	return &refusalLog{every: every, now: now, write: write, start: now(),
		seen: make(map[refusalKey]bool), counts: make(map[refusalKey]*refusalCount)}
}

// admit says whether a 429 answer of k on route gets its own line; when
// it does not, it is counted.
func (r *refusalLog) admit(k refusalKey, route string) bool {
	r.mu.Lock()
	now := r.now()
	due := r.takeDueLocked(now)
	first := !r.seen[k] && len(r.seen) < maxRefusalKeys
	if first {
		r.seen[k] = true
	} else {
		if r.counts[k] == nil && len(r.counts) >= maxRefusalKeys {
			k = refusalKey{tokenID: "(many)", addr: "(many)"}
		}
		c := r.counts[k]
		if c == nil {
			c = &refusalCount{}
			r.counts[k] = c
		}
		c.n++
		c.route = route
		if r.timer == nil {
			r.timer = time.AfterFunc(r.every-now.Sub(r.start), r.flushDue)
		}
	}
	r.mu.Unlock()
	r.emit(now, due)
	return first
}

// flushDue is the timer's: the interval's counts when no line came after it.
func (r *refusalLog) flushDue() {
	r.mu.Lock()
	r.timer = nil
	now := r.now()
	due := r.takeDueLocked(now)
	if due == nil && len(r.counts) > 0 {
		r.timer = time.AfterFunc(r.every-now.Sub(r.start), r.flushDue)
	}
	r.mu.Unlock()
	r.emit(now, due)
}

// takeDueLocked ends the interval when it is over: its counts become lines.
func (r *refusalLog) takeDueLocked(now time.Time) map[refusalKey]*refusalCount {
	if now.Sub(r.start) < r.every {
		return nil
	}
	r.start = now
	clear(r.seen)
	if len(r.counts) == 0 {
		return nil
	}
	due := r.counts
	r.counts = make(map[refusalKey]*refusalCount)
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	return due
}

func (r *refusalLog) emit(now time.Time, due map[refusalKey]*refusalCount) {
	for k, c := range due {
		attrs := make([]slog.Attr, 0, 6)
		route := c.route
		if route == "" {
			route = "(no route)"
		}
		attrs = append(attrs, slog.Int("status", 429), slog.Int("count", c.n), slog.String("last_route", route),
			slog.Float64("interval_s", r.every.Seconds()))
		if k.tokenID != "" {
			attrs = append(attrs, slog.String("token_id", k.tokenID))
			if k.role != "" {
				attrs = append(attrs, slog.String("role", k.role))
			}
		} else {
			attrs = append(attrs, slog.String("remote_addr", k.addr))
		}
		r.write(now, attrs)
	}
}

// refusalKeyOf is whose 429 c answered: its token's, else its address's.
func refusalKeyOf(c *gin.Context) refusalKey {
	if st := stateOf(c); st.authenticated {
		return refusalKey{tokenID: st.principal.TokenID, role: string(st.principal.Role)}
	}
	return refusalKey{addr: refusalAddr(clientAddr(c))}
}

// refusalAddr is the address whose refusals are counted together: an IPv4
// address, or an IPv6 address's /64 (one host's usual allocation, which
// it could otherwise spread a flood across).
func refusalAddr(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil || ip.To4() != nil {
		return addr
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// refusalLineMsg is the message of the aggregated lines.
const refusalLineMsg = "http requests refused (429) after the first of the interval, not logged one by one"

// newAccessRefusals is the refusal log of an access log writing through
// lines when set, else through h.
func newAccessRefusals(lines *accessLineWriter, h slog.Handler) *refusalLog {
	return newRefusalLog(refusalLogEvery, time.Now, func(t time.Time, attrs []slog.Attr) {
		if lines != nil {
			lines.write(t, refusalLineMsg, attrs)
			return
		}
		r := slog.NewRecord(t, slog.LevelInfo, refusalLineMsg, 0)
		r.AddAttrs(attrs...)
		_ = h.Handle(context.Background(), r)
	})
}
