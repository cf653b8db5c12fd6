package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keybroker/keybroker/vault"
)

// gateReader is a Vault holding one key, at path: its first read takes its
// answer when it starts (as a real read would: what Vault held then) and
// then waits for release before returning it; the reads after it answer
// at once. It forces a change to land while a read is in flight. Other
// paths hold nothing.
type gateReader struct {
	path    string
	mu      sync.Mutex
	value   string // "": no such secret
	version int
	reads   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func newGateReader(value string) *gateReader {
	return &gateReader{path: WorkspaceKey("ws1", "openai", DefaultKeyID).VaultPath(), value: value, version: 1,
		entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateReader) set(value string) {
	g.mu.Lock()
	g.value, g.version = value, g.version+1
	g.mu.Unlock()
}

func (g *gateReader) Get(ctx context.Context, path string) (vault.Secret, error) {
	if path != g.path {
		return vault.Secret{}, vault.ErrNotFound
	}
	g.mu.Lock()
	value, version := g.value, g.version
	g.mu.Unlock()
	if g.reads.Add(1) == 1 {
		close(g.entered)
		<-g.release
	}
	if value == "" {
		return vault.Secret{}, vault.ErrNotFound
	}
	return vault.Secret{Data: map[string]string{"api_key": value}, Version: version}, nil
}

func (g *gateReader) GetVersion(ctx context.Context, path string, version int) (vault.Secret, error) {
	return g.Get(ctx, path)
}

// TestAReadInFlightDuringAChangeIsNotCached forces the interleaving of
// issue 28: a resolve misses and reads Vault; the key changes and the
// change is announced while the read is in flight; the read then returns
// what Vault held before. The old key must not be cached (the next resolve
// would serve it for the whole TTL), and a resolve that comes after the
// announcement must not wait for the stale read.
func TestAReadInFlightDuringAChangeIsNotCached(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
	}{
		{"a rotated key", "sk-proj-old000000000000000000000000000000", "sk-proj-new000000000000000000000000000000"},
		{"a key created while its absence was being read", "", "sk-proj-new111111111111111111111111111111"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			reader := newGateReader(tc.old)
			b, err := New(Config{Reader: reader})
			if err != nil {
				t.Fatal(err)
			}
			req := ResolveRequest{Workspace: "ws1", Provider: "openai"}
			type answer struct {
				key string
				err error
			}
			resolve := func() <-chan answer {
				ch := make(chan answer, 1)
				go func() {
					r, err := b.Resolve(ctx, req)
					ch <- answer{r.APIKey(), err}
				}()
				return ch
			}
			first := resolve()
			<-reader.entered // the read took Vault's old answer and waits
			reader.set(tc.new)
			if err := b.Invalidate(ctx, Invalidation{ScopeKind: ScopeWorkspace, ScopeID: "ws1", Provider: "openai", KeyID: DefaultKeyID}); err != nil {
				t.Fatal(err)
			}
			// After the announcement: a read of its own, not the stale one.
			second := resolve()
			close(reader.release)
			<-first // asked before the change: either answer is right for it
			if a := <-second; a.err != nil || a.key != tc.new {
				t.Fatalf("a resolve after the change got the key from before it (err %v)", a.err)
			}
			r, err := b.Resolve(ctx, req)
			if err != nil || r.APIKey() != tc.new {
				t.Fatalf("the cache holds what the stale read returned (err %v)", err)
			}
			if n := reader.reads.Load(); n != 2 {
				t.Fatalf("%d Vault reads, want 2 (the stale one, then one cached)", n)
			}
		})
	}
}
