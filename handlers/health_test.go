package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

func TestMain(m *testing.M) { testenv.Main(m, leakCheck) }

type readyAnswer struct {
	status     int
	retryAfter string
	body       map[string]any
	raw        string
}

func getReady(t *testing.T, h http.Handler) readyAnswer {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("readyz answered non-JSON %q: %v", rec.Body.String(), err)
	}
	return readyAnswer{rec.Code, rec.Header().Get("Retry-After"), body, rec.Body.String()}
}

func errorOf(t *testing.T, a readyAnswer) (code, message string) {
	t.Helper()
	e, ok := a.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", a.raw)
	}
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	return code, message
}

func newStore(t *testing.T, url string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func TestReadyzFollowsVault(t *testing.T) {
	vs := testenv.StartVault(t)
	vc, err := vault.New(vault.Config{Address: vs.Addr, Token: vs.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, testenv.DatabaseURL(t))
	router := handlers.NewRouter(handlers.Options{Dependencies: []handlers.Dependency{
		{Name: "vault", Check: vc.CheckToken},
		{Name: "postgres", Check: st.Ping},
	}})

	if a := getReady(t, router); a.status != http.StatusOK || a.body["status"] != "ready" {
		t.Fatalf("with Vault and Postgres up: %d %s", a.status, a.raw)
	}

	vs.Kill()
	// Readiness answers from a result at most a second old: it turns
	// within a moment, not at once.
	a := readyWithin(t, router, http.StatusServiceUnavailable, 5*time.Second)
	code, msg := errorOf(t, a)
	if code != "dependency_unavailable" || !strings.Contains(msg, "vault") || strings.Contains(msg, "postgres") {
		t.Fatalf("with Vault killed: code %q message %q", code, msg)
	}
	if a.retryAfter == "" {
		t.Fatal("503 without Retry-After")
	}
	// The internal cause (address, dial error) stays out of the answer.
	if strings.Contains(a.raw, "127.0.0.1") || strings.Contains(a.raw, vs.RootToken) {
		t.Fatalf("readyz leaks the cause: %s", a.raw)
	}
}

func TestReadyzRefusesABadVaultToken(t *testing.T) {
	addr, _ := testenv.Vault(t)
	vc, err := vault.New(vault.Config{Address: addr, Token: "hvs.not-a-token"})
	if err != nil {
		t.Fatal(err)
	}
	router := handlers.NewRouter(handlers.Options{Dependencies: []handlers.Dependency{{Name: "vault", Check: vc.CheckToken}}})
	a := getReady(t, router)
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("with a bad token: %d %s", a.status, a.raw)
	}
	if err := vc.CheckToken(context.Background()); !errors.Is(err, vault.ErrTokenInvalid) {
		t.Fatalf("CheckToken with a bad token: %v", err)
	}
}

func TestReadyzFollowsPostgres(t *testing.T) {
	// A port nothing listens on: the real pgx dial fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()
	st := newStore(t, "postgres://u:secretpw@"+closedAddr+"/db?sslmode=disable&connect_timeout=1")
	router := handlers.NewRouter(handlers.Options{Dependencies: []handlers.Dependency{{Name: "postgres", Check: st.Ping}}})
	a := getReady(t, router)
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("with Postgres down: %d %s", a.status, a.raw)
	}
	if code, msg := errorOf(t, a); code != "dependency_unavailable" || !strings.Contains(msg, "postgres") {
		t.Fatalf("with Postgres down: code %q message %q", code, msg)
	}
	if err := st.Ping(context.Background()); err == nil || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("Ping error must exist and leave the password out: %v", err)
	}
}

func TestHealthzAndUnknownRoutes(t *testing.T) {
	router := handlers.NewRouter(handlers.Options{})
	rec := httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code != "not_found" {
		t.Fatalf("unknown route: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	router.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d %s", rec.Code, rec.Body)
	}
}

// readyWithin polls /readyz until it answers status (a cached result ages
// out within a second), failing the test after wait.
func readyWithin(t *testing.T, h http.Handler, status int, wait time.Duration) readyAnswer {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		a := getReady(t, h)
		if a.status == status {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still answers %d %s after %s, want %d", a.status, a.raw, wait, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A burst of probes costs one round of dependency checks, and a failing
// dependency is logged when it starts failing, not once per probe.
func TestReadyzAnswersABurstFromOneRoundOfChecks(t *testing.T) {
	var checks atomic.Int32
	release := make(chan struct{})
	var logBuf testenv.SyncBuffer
	router := handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
		Dependencies: []handlers.Dependency{{Name: "vault", Check: func(ctx context.Context) error {
			checks.Add(1)
			<-release
			return errors.New("sealed")
		}}}})
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Go(func() { statuses <- getReady(t, router).status })
	}
	// Let the first check finish only when every probe is waiting on it
	// or has been answered from it.
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusServiceUnavailable {
			t.Fatalf("a probe answered %d", s)
		}
	}
	for range 20 {
		getReady(t, router)
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("40 probes within a second ran %d rounds of checks, want 1", n)
	}
	if n := strings.Count(logBuf.String(), "readiness: dependency unavailable"); n != 1 {
		t.Fatalf("the failing dependency was logged %d times, want 1:\n%s", n, logBuf.String())
	}
}
