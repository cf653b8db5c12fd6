package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// noKeys is a broker that is never asked: bounds come first.
type noKeys struct{}

func (noKeys) Resolve(context.Context, broker.ResolveRequest) (broker.Resolution, error) {
	return broker.Resolution{}, errors.New("not asked")
}

func (noKeys) Report(context.Context, broker.ReportRequest) (broker.ReportResult, error) {
	return broker.ReportResult{}, errors.New("not asked")
}

// defaultBounds are the bounds of a proxy with the default settings.
func defaultBounds(t *testing.T) *bounds {
	t.Helper()
	p, err := New(Config{Keys: noKeys{}, Providers: providers.DefaultRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return p.bounds
}

// slowBody is a request body that sends its first bytes and then waits:
// its second Read says so on reading and blocks until rest is sent.
type slowBody struct {
	first   []byte
	reading chan struct{}
	rest    chan []byte
	sent    bool
	pending []byte
}

func newSlowBody(first string) *slowBody {
	return &slowBody{first: []byte(first), reading: make(chan struct{}, 1), rest: make(chan []byte, 1)}
}

func (s *slowBody) Read(p []byte) (int, error) {
	if !s.sent {
		s.sent = true
		return copy(p, s.first), nil
	}
	if s.pending == nil {
		select {
		case s.reading <- struct{}{}:
		default:
		}
		rest, ok := <-s.rest
		if !ok {
			return 0, io.ErrUnexpectedEOF
		}
		s.pending = rest
	}
	if len(s.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

type keptResult struct {
	body    []byte
	release func()
	err     error
}

// A kept body's bytes are reserved as they arrive: a body declaring 1 MiB
// that has sent one byte holds the first step, not 1 MiB; once it has
// come, it holds its length, and release gives it all back.
func TestAKeptBodyReservesAsItsBytesArrive(t *testing.T) {
	b := defaultBounds(t)
	const declared = 1 << 20
	body := newSlowBody("{")
	done := make(chan keptResult, 1)
	go func() {
		kept, release, err := b.keepBody(body, declared, "ws1")
		done <- keptResult{kept, release, err}
	}()
	<-body.reading
	if got := b.keptBytes(); got != keepStep {
		t.Fatalf("a body of 1 MiB with one byte sent holds %d bytes of the retry buffer; want %d", got, keepStep)
	}
	rest := bytes.Repeat([]byte("x"), declared-1)
	body.rest <- rest
	r := <-done
	if r.err != nil || len(r.body) != declared || r.body[0] != '{' || !bytes.Equal(r.body[1:], rest) {
		t.Fatalf("the body read: %d bytes, %v", len(r.body), r.err)
	}
	if got := b.keptBytes(); got != declared {
		t.Fatalf("a whole body of 1 MiB holds %d bytes", got)
	}
	r.release()
	r.release()
	if got := b.keptBytes(); got != 0 {
		t.Fatalf("after release: %d bytes held", got)
	}
	// A body that ends early, or breaks off, gives its bytes back.
	short := newSlowBody("{}")
	close(short.rest)
	if _, _, err := b.keepBody(short, 100, "ws1"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a body shorter than declared: %v", err)
	}
	if _, _, err := b.keepBody(strings.NewReader("{}"), 100, "ws1"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a body shorter than declared: %v", err)
	}
	if got := b.keptBytes(); got != 0 {
		t.Fatalf("after bodies that broke off: %d bytes held", got)
	}
	empty, release, err := b.keepBody(strings.NewReader(""), 0, "ws1")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("an empty body: %v %v", empty, err)
	}
	release()
}

// The review's case: 128 calls of two workspaces, each declaring 1 MiB
// and sending one byte, used to hold the whole retry buffer (128 MiB) and
// every other workspace's call was refused. Now they hold their first
// steps, and a third workspace's small call is kept, and admitted.
func TestSlowBodiesOfTwoWorkspacesLeaveRoomForAThird(t *testing.T) {
	b := defaultBounds(t)
	var bodies []*slowBody
	results := make(chan keptResult, 128)
	for i := range 128 {
		ws := []string{"tena", "tenb"}[i%2]
		tok := fmt.Sprintf("ptk_%d", i%8)
		if _, refused, bound := b.enter(ws, tok); refused != nil {
			t.Fatalf("slow call %d: refused by the %s bound", i+1, bound)
		}
		body := newSlowBody("{")
		bodies = append(bodies, body)
		go func() {
			kept, release, err := b.keepBody(body, 1<<20, ws)
			results <- keptResult{kept, release, err}
		}()
		<-body.reading
	}
	if got := b.keptBytes(); got != 128*keepStep {
		t.Fatalf("128 slow bodies hold %d bytes; want %d", got, 128*keepStep)
	}
	leave, refused, bound := b.enter("victim", "ptk_victim")
	if refused != nil {
		t.Fatalf("the third workspace's call: refused by the %s bound: %s", bound, refused.Message)
	}
	defer leave()
	kept, release, err := b.keepBody(strings.NewReader(`{"model":"m","x":1}`), 19, "victim")
	if err != nil || len(kept) != 19 {
		t.Fatalf("the third workspace's small body: %v", err)
	}
	release()
	for _, body := range bodies {
		close(body.rest)
	}
	for range bodies {
		if r := <-results; r.err == nil {
			t.Fatal("a body that broke off was kept")
		}
	}
	if got := b.keptBytes(); got != 0 {
		t.Fatalf("after every call ended: %d bytes held", got)
	}
}

// One workspace keeps at most its share of the buffer (the fraction of
// the replica's calls it may make: 64 of 512, 16 of 128 MiB); the others
// keep theirs.
func TestAWorkspaceKeepsAtMostItsShare(t *testing.T) {
	b := defaultBounds(t)
	if b.keptShare != 16<<20 {
		t.Fatalf("a workspace's share is %d bytes; want 16 MiB", b.keptShare)
	}
	body := bytes.Repeat([]byte("x"), 1<<20)
	for i := range 16 {
		if _, _, err := b.keepBody(bytes.NewReader(body), 1<<20, "heavy"); err != nil {
			t.Fatalf("body %d of a workspace within its share: %v", i+1, err)
		}
	}
	_, _, err := b.keepBody(bytes.NewReader(body), 1<<20, "heavy")
	var over *keptRefusal
	if !errors.As(err, &over) || over.bound != "retry_buffer_workspace" || over.failure.Status != 429 || over.failure.RetryAfter == 0 {
		t.Fatalf("a body past the workspace's share: %v", err)
	}
	if got := b.keptBytes(); got != 16<<20 {
		t.Fatalf("a refused body still holds bytes: %d held", got)
	}
	if _, _, err := b.keepBody(bytes.NewReader(body), 1<<20, "other"); err != nil {
		t.Fatalf("another workspace: %v", err)
	}
}

// The last quarter of the replica's calls is kept for workspaces with few
// calls in flight: six workspaces at their bound (384 of 512) do not stop
// a seventh from calling, a workspace with 8 calls takes no more from the
// reserve, and the replica is full only when 16 more workspaces hold 8
// each. A replica whose one workspace may take it all has no reserve.
func TestTheLastQuarterOfTheCallsIsKeptForLightWorkspaces(t *testing.T) {
	b := defaultBounds(t)
	enter := func(ws string) (string, *Failure) {
		_, refused, bound := b.enter(ws, "")
		return bound, refused
	}
	for w := range 6 {
		for i := range 64 {
			if bound, refused := enter(fmt.Sprintf("heavy%d", w)); refused != nil {
				t.Fatalf("heavy workspace %d, call %d: %s", w, i+1, bound)
			}
		}
	}
	for i := range 8 {
		if bound, refused := enter("light"); refused != nil {
			t.Fatalf("a light workspace's call %d past 384 calls in flight: %s", i+1, bound)
		}
	}
	if bound, refused := enter("light"); refused == nil || bound != "replica_reserve" || refused.Status != 429 || !strings.Contains(refused.Message, "kept for workspaces") {
		t.Fatalf("a 9th call of a workspace in the reserve: %q %+v", bound, refused)
	}
	for w := range 15 {
		for i := range 8 {
			if bound, refused := enter(fmt.Sprintf("more%d", w)); refused != nil {
				t.Fatalf("workspace more%d, call %d: %s", w, i+1, bound)
			}
		}
	}
	if bound, refused := enter("late"); refused == nil || bound != "replica" {
		t.Fatalf("a call on a full replica: %q %+v", bound, refused)
	}

	single := newBounds(Config{MaxInFlight: 10, MaxInFlightPerWorkspace: 10, MaxInFlightPerToken: 10, RetryBufferBytes: 1000, RetryBodyLimit: 100})
	for i := range 10 {
		if _, refused, bound := single.enter("only", ""); refused != nil {
			t.Fatalf("a single tenant's call %d: %s", i+1, bound)
		}
	}
	for i := range 10 {
		if _, _, err := single.keepBody(strings.NewReader(strings.Repeat("x", 100)), 100, "only"); err != nil {
			t.Fatalf("a single tenant's body %d: %v", i+1, err)
		}
	}
}

// The last quarter of the retry buffer is kept for workspaces holding
// little of it, as the calls are.
func TestTheLastQuarterOfTheBufferIsKeptForLightWorkspaces(t *testing.T) {
	// A buffer of 800 bytes, bodies of up to 100: a workspace's share is
	// 100 (1/8), the reserve the last 200 bytes, for workspaces holding
	// less than 12.
	b := newBounds(Config{MaxInFlight: 80, MaxInFlightPerWorkspace: 10, MaxInFlightPerToken: 10, RetryBufferBytes: 800, RetryBodyLimit: 100})
	keep := func(ws string, n int) error {
		_, _, err := b.keepBody(strings.NewReader(strings.Repeat("x", n)), int64(n), ws)
		return err
	}
	for w := range 6 {
		if err := keep(fmt.Sprintf("heavy%d", w), 100); err != nil {
			t.Fatalf("heavy workspace %d: %v", w, err)
		}
	}
	if err := keep("heavy0", 1); err == nil {
		t.Fatal("a workspace at its share kept more")
	}
	var over *keptRefusal
	if err := keep("light", 50); err != nil {
		t.Fatalf("a light workspace past 600 bytes: %v", err)
	}
	if err := keep("light", 50); !errors.As(err, &over) || over.bound != "retry_buffer_reserve" {
		t.Fatalf("a workspace holding 50 bytes, in the reserve: %v", err)
	}
	for w := range 15 {
		if err := keep(fmt.Sprintf("more%d", w), 10); err != nil {
			t.Fatalf("light workspace %d: %v", w, err)
		}
	}
	if err := keep("late", 1); !errors.As(err, &over) || over.bound != "retry_buffer" {
		t.Fatalf("a body past the replica's buffer: %v", err)
	}
}
