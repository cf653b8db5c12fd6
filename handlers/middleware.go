package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// MaxBodyBytes is the largest request body keybroker reads (64 KiB).
const MaxBodyBytes = 64 << 10

// requestState is what the middleware learns about one request. It
// travels in the request's response writer (stateWriter), not in gin's
// context map, which would be allocated anew for every request: the
// resolve path is hot.
type requestState struct {
	id            string // keybroker's own
	clientID      string // the caller's X-Request-Id, when sane
	principal     auth.Principal
	authenticated bool
	clientAddr    string // gin's ClientIP, once computed
	// proxyClaims are what a proxy token grants (nil for other tokens).
	proxyClaims *proxytoken.Claims
}

// clientAddr is the request's client address as gin's ClientIP gives it
// (the trusted proxies honoured), computed once per request.
func clientAddr(c *gin.Context) string {
	st := stateOf(c)
	if st.clientAddr == "" {
		st.clientAddr = c.ClientIP()
	}
	return st.clientAddr
}

const ctxState = "keybroker.request"

// stateWriter is gin's response writer for the length of one request,
// with the request's state beside it; requestID pools them.
type stateWriter struct {
	gin.ResponseWriter
	st requestState
}

// Unwrap lets http.ResponseController reach the connection (the watch
// stream sets write deadlines through it).
func (w *stateWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var stateWriters = sync.Pool{New: func() any { return new(stateWriter) }}

// stateOf returns the request's state; an empty one when the request did
// not pass through requestID.
func stateOf(c *gin.Context) *requestState {
	if w, ok := c.Writer.(*stateWriter); ok {
		return &w.st
	}
	if v, ok := c.Get(ctxState); ok {
		if st, ok := v.(*requestState); ok {
			return st
		}
	}
	st := &requestState{}
	c.Set(ctxState, st)
	return st
}

// requestID gives every request keybroker's own id — a random
// per-process prefix and a counter: unique, and cheap on the hot path (no
// read of the system's random source per request) — and answers it in
// X-Request-Id. A caller's own X-Request-Id, when sane, is kept beside it
// (audit events and logs carry both) and echoed in X-Client-Request-Id; it
// never replaces keybroker's, so no caller can forge the id an
// investigation follows.
func requestID() gin.HandlerFunc {
	prefixBytes := make([]byte, 4)
	_, _ = rand.Read(prefixBytes)
	prefix := hex.EncodeToString(prefixBytes)
	var counter atomic.Uint64
	return func(c *gin.Context) {
		w := stateWriters.Get().(*stateWriter)
		w.ResponseWriter = c.Writer
		w.st = requestState{id: prefix + strconv.FormatUint(counter.Add(1), 16)}
		h := c.Writer.Header()
		h["X-Request-Id"] = []string{w.st.id}
		// A bearer token pasted into the header by mistake is dropped: it
		// would otherwise be stored in the audit trail.
		if cid := c.GetHeader("X-Request-Id"); cid != "" && saneRequestID(cid) && !strings.HasPrefix(cid, "kbt_") {
			w.st.clientID = cid
			h["X-Client-Request-Id"] = []string{cid}
		}
		c.Writer = w
		c.Next()
		// Every handler has returned, and none keeps the writer: it goes
		// back to the pool.
		c.Writer = w.ResponseWriter
		*w = stateWriter{}
		stateWriters.Put(w)
	}
}

func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}

func requestIDOf(c *gin.Context) string { return stateOf(c).id }

// accessLog writes one line per request: the route pattern (never the raw
// path or query), status, duration, request id, client address and token
// id. Headers and bodies are never logged, so neither a bearer token nor a
// key can reach the log. With errorsOnly, answers below 400 are not logged.
// 429 answers are aggregated: one line per token or address per interval,
// then one with the count of the others.
//
// With lines set, the lines are formatted by keybroker (as slog's
// JSONHandler would) and written there; else they go through log.
func accessLog(log *slog.Logger, errorsOnly, traced bool, lines *accessLineWriter) gin.HandlerFunc {
	return accessLogWith(log, errorsOnly, traced, lines, newAccessRefusals(lines, log.Handler()))
}

// accessLogWith is accessLog with the aggregation of 429 lines given
// (accesslog.go): only the first 429 of a token or address per interval
// gets a line here.
func accessLogWith(log *slog.Logger, errorsOnly, traced bool, lines *accessLineWriter, refusals *refusalLog) gin.HandlerFunc {
	h := log.Handler()
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		if errorsOnly && c.Writer.Status() < http.StatusBadRequest {
			return
		}
		if c.Writer.Status() == http.StatusTooManyRequests && !refusals.admit(refusalKeyOf(c), c.FullPath()) {
			return
		}
		ctx := c.Request.Context()
		if lines == nil && !h.Enabled(ctx, slog.LevelInfo) {
			return
		}
		// The record is built here rather than through Logger.Info: typed
		// attributes, no caller lookup, one clock read for both the
		// duration and the record's time.
		end := time.Now()
		route := c.FullPath()
		if route == "" {
			route = "(no route)"
		}
		st := stateOf(c)
		attrs := [10]slog.Attr{
			slog.String("method", c.Request.Method), slog.String("route", route), slog.Int("status", c.Writer.Status()),
			slog.Float64("duration_ms", float64(end.Sub(start).Microseconds())/1000),
			slog.String("request_id", st.id), slog.String("remote_addr", clientAddr(c)),
		}
		n := 6
		if st.clientID != "" {
			attrs[n] = slog.String("client_request_id", st.clientID)
			n++
		}
		if st.authenticated {
			attrs[n], attrs[n+1] = slog.String("token_id", st.principal.TokenID), slog.String("role", string(st.principal.Role))
			n += 2
		}
		if traced {
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
				attrs[n] = slog.String("trace_id", sc.TraceID().String())
				n++
			}
		}
		if lines != nil {
			lines.write(end, "http request", attrs[:n])
			return
		}
		r := slog.NewRecord(end, slog.LevelInfo, "http request", 0)
		r.AddAttrs(attrs[:n]...)
		_ = h.Handle(ctx, r)
	}
}

// limitBody refuses bodies over MaxBodyBytes: at once when Content-Length
// says so, else when reading passes the limit (see decodeJSON).
func limitBody(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > MaxBodyBytes {
			renderError(c, log, errBodyTooLarge)
			return
		}
		// A body of a declared length within the limit cannot grow past
		// it (net/http reads no more than Content-Length); only a body of
		// unknown length (chunked) needs the reader that counts.
		if c.Request.ContentLength < 0 {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
		}
		c.Next()
	}
}

var errBodyTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body is larger than 64 KiB"}

// recoverPanics turns a panic into a 500 and one log line with the route
// and request id; unlike gin.Recovery it never dumps the request (whose
// headers carry a bearer token).
func recoverPanics(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r) // a deliberate cut: net/http closes the connection quietly
				}
				log.Error("panic while serving a request", "route", c.FullPath(), "request_id", requestIDOf(c))
				if !c.Writer.Written() {
					renderError(c, log, &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"})
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}
