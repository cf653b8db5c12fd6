package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// Every log line of every broker and Vault client in this package goes to
// capturedLogs; every key a test makes is in usedKeys. TestMain fails the
// run if a key shows up in the logs.
var (
	capturedLogs testenv.SyncBuffer
	usedKeysMu   sync.Mutex
	usedKeys     []string
)

func TestMain(m *testing.M) {
	testenv.Main(m, func() error {
		logs := capturedLogs.String()
		usedKeysMu.Lock()
		defer usedKeysMu.Unlock()
		if len(usedKeys) > 0 && !strings.Contains(logs, "level=") {
			return fmt.Errorf("keys were used but no log lines were captured; the leak check would prove nothing")
		}
		for _, k := range usedKeys {
			if strings.Contains(logs, k) {
				return fmt.Errorf("the captured logs contain a key (%s...)", k[:6])
			}
		}
		return nil
	})
}

var testLogger = slog.New(slog.NewTextHandler(&capturedLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))

// newKey returns a fresh, valid key for provider and remembers it for the
// leak checks.
func newKey(t testing.TB, provider string) string {
	t.Helper()
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	body := hex.EncodeToString(b)
	var key string
	switch provider {
	case "openai":
		key = "sk-proj-" + body
	case "anthropic":
		key = "sk-ant-api03-" + body
	case "google":
		key = "AIza" + body[:35]
	case "mistral":
		key = body[:32]
	case "exa":
		key = body[:8] + "-" + body[8:12] + "-" + body[12:16] + "-" + body[16:20] + "-" + body[20:32]
	default:
		key = body
	}
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, key)
	usedKeysMu.Unlock()
	return key
}

// env is a broker on the shared Vault (a fresh KV mount) and PostgreSQL (a
// fresh, migrated database).
type env struct {
	b       *broker.Broker
	cfg     broker.Config
	mount   string
	dbURL   string
	root    *vaultapi.Client
	rootKV  *vault.KV
	reads   *testenv.VaultReadCounter
	store   *store.Store
	workspc string
}

// newEnv runs the broker as production does: on the writer and reader
// AppRole identities that `keybroker vault bootstrap` creates (a fresh
// mount, policies and roles of the test's own), never the root token. Only
// the test's operator side (hosted keys, checks behind the broker's back)
// uses root.
func newEnv(t testing.TB, tune func(*broker.Config)) *env {
	t.Helper()
	dbURL := testenv.DatabaseURL(t)
	st := openStore(t, dbURL)
	// Before the database is dropped, prove it holds no key.
	t.Cleanup(func() { assertDatabaseHoldsNoKey(t, dbURL) })

	reads := testenv.NewVaultReadCounter()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{Logger: testLogger, ReaderTransport: reads})
	cfg := broker.Config{
		Reader: ids.Reader.KV(ids.Mount), Writer: ids.Writer.KV(ids.Mount), Store: st, Pools: st,
		Pepper: []byte("test-pepper-0123456789"), ResolutionKey: []byte("test-resolution-key-0123456789ab"),
		Logger: testLogger, Settings: st, Usage: st, Health: st,
	}
	if tune != nil {
		tune(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &env{b: b, cfg: cfg, mount: ids.Mount, dbURL: dbURL, root: testenv.VaultClient(t),
		rootKV: ids.Root.KV(ids.Mount), reads: reads, store: st, workspc: "ws-" + testenv.RandomID(t)}
}

// another returns a second broker (another replica) on the same Vault
// mount and database, with its own cache.
func (e *env) another(t testing.TB, tune func(*broker.Config)) *broker.Broker {
	t.Helper()
	cfg := e.cfg
	if tune != nil {
		tune(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// setHosted writes the platform's hosted key for provider, as an operator
// would.
func (e *env) setHosted(t testing.TB, provider, key string) {
	t.Helper()
	if _, err := e.b.PutKey(context.Background(), broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"},
		Ref: broker.HostedKey(provider, broker.DefaultKeyID), Credential: providers.APIKey(key)}); err != nil {
		t.Fatal(err)
	}
}

var alice = broker.Actor{Subject: "alice", RemoteAddr: "192.0.2.10"}

// assertDatabaseHoldsNoKey dumps the database with pg_dump and fails if any
// key made so far appears in it.
func assertDatabaseHoldsNoKey(t testing.TB, dbURL string) {
	t.Helper()
	usedKeysMu.Lock()
	keys := append([]string(nil), usedKeys...)
	usedKeysMu.Unlock()
	testenv.AssertDumpLacks(t, dbURL, keys)
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openStore opens and migrates the database at url for the test.
func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	return kbtest.NewStore(t, url)
}

// load runs call from several goroutines until stopped, counting
// successes and failures.
type load struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(workers int, pause time.Duration, call func() error) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := call(); err != nil {
					l.failed.Add(1)
				} else {
					l.ok.Add(1)
				}
				time.Sleep(pause)
			}
		})
	}
	return l
}

// Stop ends the load and waits for the workers.
func (l *load) Stop() {
	close(l.stop)
	l.wg.Wait()
}
