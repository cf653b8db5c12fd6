package logbuf_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/runtime/logbuf"
)

// recorder counts the writes it gets.
type recorder struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	fail   error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	if r.fail != nil {
		return 0, r.fail
	}
	return r.b.Write(p)
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b.String(), r.writes
}

func TestLinesAreWrittenTogetherOnTheInterval(t *testing.T) {
	out := &recorder{}
	w := logbuf.New(out, 50*time.Millisecond)
	defer w.Close()
	log := slog.New(logbuf.Handler(slog.NewJSONHandler(w, nil), w))
	for i := range 100 {
		log.Info("http request", "n", i)
	}
	if text, writes := out.snapshot(); writes != 0 || text != "" {
		t.Fatalf("written before the interval: %d writes", writes)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		text, writes := out.snapshot()
		if strings.Count(text, "\n") == 100 {
			if writes != 1 {
				t.Fatalf("100 lines took %d writes, want 1", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lines were not written within 5 s: %q", text)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAWarningIsWrittenAtOnceWithWhatCameBefore(t *testing.T) {
	out := &recorder{}
	w := logbuf.New(out, time.Hour)
	defer w.Close()
	log := slog.New(logbuf.Handler(slog.NewJSONHandler(w, nil), w)).With("replica", "a")
	log.Info("first")
	log.WithGroup("g").Warn("then a warning")
	text, writes := out.snapshot()
	if writes != 1 || !strings.Contains(text, `"msg":"first"`) || !strings.Contains(text, `"msg":"then a warning"`) || !strings.Contains(text, `"replica":"a"`) {
		t.Fatalf("%d writes: %q", writes, text)
	}
	if strings.Index(text, "first") > strings.Index(text, "then a warning") {
		t.Fatal("the lines are out of order")
	}
}

func TestCloseWritesWhatIsLeftAndALargeBurstDoesNotWait(t *testing.T) {
	out := &recorder{}
	w := logbuf.New(out, time.Hour)
	line := strings.Repeat("x", 1000) + "\n"
	for range 100 { // 100 KB: more than the buffer holds
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if _, writes := out.snapshot(); writes == 0 {
		t.Fatal("a full buffer waited for the interval")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if text, _ := out.snapshot(); text != strings.Repeat(line, 100) {
		t.Fatalf("after Close, %d bytes written, want %d", len(text), 100*len(line))
	}
	if err := w.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
}

func TestAWriteErrorIsReported(t *testing.T) {
	out := &recorder{fail: errors.New("disk full")}
	w := logbuf.New(out, time.Hour)
	_, _ = w.Write([]byte("line\n"))
	if err := w.Close(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Close: %v, want the write error", err)
	}
}

func TestNoIntervalMeansNoBuffer(t *testing.T) {
	if w := logbuf.New(&recorder{}, 0); w != nil {
		t.Fatal("an interval of 0 gave a Writer")
	}
	h := slog.NewJSONHandler(&recorder{}, nil)
	if logbuf.Handler(h, nil) != slog.Handler(h) {
		t.Fatal("Handler with no Writer wrapped the handler")
	}
}
