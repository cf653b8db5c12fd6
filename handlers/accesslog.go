package handlers

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
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
