package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// secrets collects every key and bearer token the tests use; logs holds
// every server's log (the access log among it); errorBodies every error
// answer. The after-run check of TestMain searches the last two for the
// first, and each test database is dumped and searched before it is
// dropped.
var (
	secretsMu   sync.Mutex
	secrets     []string
	logs        testenv.SyncBuffer
	errorBodies testenv.SyncBuffer
)

func remember(s string) string {
	secretsMu.Lock()
	secrets = append(secrets, s)
	secretsMu.Unlock()
	return s
}

func leakCheck() error {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if len(secrets) == 0 {
		return nil
	}
	l, e := logs.String(), errorBodies.String()
	if !strings.Contains(l, "http request") {
		return fmt.Errorf("secrets were used but no access log was captured; the leak check would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(l, s) {
			return fmt.Errorf("the server log contains a secret (%s...)", s[:6])
		}
		if strings.Contains(e, s) {
			return fmt.Errorf("an error answer contains a secret (%s...)", s[:6])
		}
	}
	return nil
}

// api is a keybroker HTTP server on loopback over the real Vault and
// PostgreSQL, with tokens of every role.
type api struct {
	t      *testing.T
	srv    *httptest.Server
	router *gin.Engine
	http   *http.Client
	pool   *pgxpool.Pool
	store  *store.Store
	kv     *vault.KV // root token: checks Vault behind the API's back
	mount  string
	dbURL  string
	tokens map[string]string // name → bearer token
	ids    map[string]string // name → token id
	ground *keyGround
}

// keyGround is what a router runs on: the shared harness's ground
// (keybroker's AppRole identities on a bootstrapped mount, a migrated
// database, a broker, the token service) and a root-token view of the
// mount to look behind the API's back.
type keyGround struct {
	st     *store.Store
	kv     *vault.KV // root token
	keys   *broker.Broker
	tokens *auth.Service
	// minter mints tokens as the owner's CLI does (resolver tokens are
	// made only so).
	minter       *auth.Service
	mount, dbURL string
}

func newKeyGround(tb testing.TB, logger *slog.Logger) *keyGround {
	return newKeyGroundWith(tb, logger, nil)
}

// newKeyGroundWith is newKeyGround with a provider checker (a stand-in's).
func newKeyGroundWith(tb testing.TB, logger *slog.Logger, checker broker.KeyChecker) *keyGround {
	tb.Helper()
	return newKeyGroundOpts(tb, kbtest.Options{Logger: logger, Checker: checker})
}

// newKeyGroundOpts is newKeyGround with the harness's options (a test's
// provider registry: opts.Broker).
func newKeyGroundOpts(tb testing.TB, opts kbtest.Options) *keyGround {
	tb.Helper()
	opts.Pepper = "handlers-test-pepper"
	kg := kbtest.NewGround(tb, opts)
	ids := kg.Identities
	g := &keyGround{st: kg.Store, kv: ids.Root.KV(ids.Mount), keys: kg.Broker, tokens: kg.Tokens, minter: kg.Minter, mount: ids.Mount, dbURL: kg.DBURL}
	tb.Cleanup(func() { assertDumpHoldsNoSecret(tb, g.dbURL) })
	return g
}

func newAPI(t *testing.T, mode handlers.Mode) *api {
	t.Helper()
	return newAPIWith(t, mode, nil)
}

// newAPIWith is newAPI whose broker asks providers through checker.
func newAPIWith(t *testing.T, mode handlers.Mode, checker broker.KeyChecker) *api {
	t.Helper()
	return newAPIOpts(t, mode, checker, nil)
}

// newAPIOpts is newAPIWith whose router options tune may change (the
// credential proxy's tests add the proxy); tune gets the ground.
func newAPIOpts(t *testing.T, mode handlers.Mode, checker broker.KeyChecker, tune func(*handlers.Options, *keyGround)) *api {
	t.Helper()
	return newAPIGround(t, mode, kbtest.Options{Checker: checker}, tune)
}

// newAPIGround is newAPIOpts with the harness's options (opts.Logger is
// the tests' log).
func newAPIGround(t *testing.T, mode handlers.Mode, gopts kbtest.Options, tune func(*handlers.Options, *keyGround)) *api {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gopts.Logger = logger
	g := newKeyGroundOpts(t, gopts)
	ctx, tokens := context.Background(), g.minter
	opts := handlers.Options{Logger: logger, Keys: g.keys, Tokens: g.tokens, Mode: mode}
	if tune != nil {
		tune(&opts, g)
	}
	router := handlers.NewRouter(opts)
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)

	a := &api{t: t, srv: srv, router: router, pool: testenv.NewPoolFor(t, g.dbURL), store: g.st, kv: g.kv, mount: g.mount, dbURL: g.dbURL,
		tokens: map[string]string{}, ids: map[string]string{}, ground: g}
	a.http = &http.Client{Transport: newSpecCheck(t, srv.URL, http.DefaultTransport), Timeout: 30 * time.Second}
	for name, req := range map[string]auth.CreateRequest{
		"operator":   {Role: auth.RoleOperator},
		"admin":      {Role: auth.RoleAdmin, Workspaces: []string{"ws1"}},
		"reader":     {Role: auth.RoleReader, Workspaces: []string{"ws1"}},
		"resolver":   {Role: auth.RoleResolver},
		"admin-ws2":  {Role: auth.RoleAdmin, Workspaces: []string{"ws2"}},
		"org-admin":  {Role: auth.RoleAdmin, Organizations: []string{"acme"}},
		"resolver2":  {Role: auth.RoleResolver},
		"org-reader": {Role: auth.RoleReader, Organizations: []string{"acme"}},
		"revoked":    {Role: auth.RoleOperator},
		"expired":    {Role: auth.RoleOperator, TTL: time.Millisecond},
	} {
		req.CreatedBy, req.Via = "test", auth.ViaCLI
		tok, rec, err := tokens.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		a.tokens[name], a.ids[name] = remember(tok), rec.ID
	}
	if err := tokens.Revoke(ctx, a.ids["revoked"], "test", "", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // let "expired" expire
	return a
}

// answer is an HTTP answer with its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (r answer) code() string {
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &eb)
	return eb.Error.Code
}

func (r answer) message() string {
	var eb struct {
		Error struct{ Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &eb)
	return eb.Error.Message
}

func (r answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends a request as the named token ("" for none; anything not a
// token name is sent as the bearer itself).
func (a *api) call(as, method, path string, body any, header ...string) answer {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if as != "" {
		tok, ok := a.tokens[as]
		if !ok {
			tok = as
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		errorBodies.Write(b)
		errorBodies.Write([]byte("\n"))
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// specCheck validates every answer against the OpenAPI document: the
// status must be documented for the route and the body must match its
// schema. Requests that reach no documented route must be answered 404.
type specCheck struct {
	t      *testing.T
	base   http.RoundTripper
	router routers.Router
}

// loadDoc loads and validates the served OpenAPI document.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(handlers.OpenAPIDocument)
	if err != nil {
		t.Fatalf("load OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("OpenAPI document is invalid: %v", err)
	}
	return doc
}

func newSpecCheck(t *testing.T, serverURL string, base http.RoundTripper) *specCheck {
	t.Helper()
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specCheck{t: t, base: base, router: router}
}

func (s *specCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	route, params, ferr := s.router.FindRoute(req)
	if ferr != nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			s.t.Errorf("%s %s is not in the OpenAPI document but answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		return resp, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if verr := openapi3filter.ValidateResponse(req.Context(), in); verr != nil {
		s.t.Errorf("%s %s answered %d, which the OpenAPI document does not describe: %v", req.Method, req.URL.Path, resp.StatusCode, verr)
	}
	return resp, nil
}

// assertDumpHoldsNoSecret dumps the database with pg_dump and fails if any
// key or token used so far appears in it.
func assertDumpHoldsNoSecret(t testing.TB, dbURL string) {
	t.Helper()
	secretsMu.Lock()
	all := append([]string(nil), secrets...)
	secretsMu.Unlock()
	testenv.AssertDumpLacks(t, dbURL, all)
}
