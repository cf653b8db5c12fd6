// Package testenv gives tests real servers: a HashiCorp Vault dev server and
// a PostgreSQL cluster, started once per test binary on loopback (see
// internal/devenv) and stopped when the binary ends.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// and ask for what a test needs: VaultClient, NewKVMount, DatabaseURL,
// NewPool, or StartVault for a server of the test's own (to kill it). Servers
// start on first use, so a package that needs only Postgres never starts
// Vault.
//
// When VAULT_ADDR and VAULT_TOKEN are set, that Vault is used instead of a
// dev server; when DATABASE_URL is set, that PostgreSQL is used (each test
// still gets a database of its own, created and dropped here). When a binary
// is missing, the test fails with the command that builds it; nothing is
// skipped.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keybroker/keybroker/internal/devenv"
)

var (
	vaultOnce   sync.Once
	vaultAddr   string
	vaultToken  string
	vaultServer *devenv.VaultServer
	vaultErr    error

	pgOnce   sync.Once
	pgURL    string
	pgServer *devenv.PostgresServer
	pgErr    error
)

// Main runs the package's tests, then the after-run checks (each may fail
// the run with an error, e.g. "a key leaked into the logs"), and stops the
// shared servers.
func Main(m *testing.M, checks ...func() error) {
	restore := redactStdout()
	code := m.Run()
	for _, check := range checks {
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: after-run check:", err)
			code = 1
		}
	}
	if vaultServer != nil {
		vaultServer.Stop()
	}
	if pgServer != nil {
		pgServer.Stop()
	}
	restore()
	os.Exit(code)
}

func startContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// Vault returns the address and root token of the shared Vault, starting
// a dev server on first use.
func Vault(t testing.TB) (addr, token string) {
	t.Helper()
	vaultOnce.Do(func() {
		if a, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); a != "" && tok != "" {
			vaultAddr, vaultToken = a, tok
			devenv.RegisterSecret(tok)
			return
		}
		ctx, cancel := startContext()
		defer cancel()
		vaultServer, vaultErr = devenv.StartVault(ctx)
		if vaultErr == nil {
			vaultAddr, vaultToken = vaultServer.Addr, vaultServer.RootToken
		}
	})
	if vaultErr != nil {
		t.Fatalf("testenv: no Vault server: %v", vaultErr)
	}
	return vaultAddr, vaultToken
}

// VaultClient returns a client of the shared Vault holding its root token.
func VaultClient(t testing.TB) *vaultapi.Client {
	t.Helper()
	addr, token := Vault(t)
	return NewVaultClient(t, addr, token)
}

// NewVaultClient returns a client of the Vault at addr using token.
func NewVaultClient(t testing.TB, addr, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatalf("testenv: vault client for %s: %v", addr, err)
	}
	c.SetToken(token)
	return c
}

// NewKVMount enables a KV v2 secrets engine at a fresh random path of the
// shared Vault and disables it when the test ends. It returns the mount path.
func NewKVMount(t testing.TB) string {
	t.Helper()
	c := VaultClient(t)
	mount := "kv-" + RandomID(t)
	if err := devenv.EnableKVv2(context.Background(), c, mount); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Sys().UnmountWithContext(context.Background(), mount); err != nil {
			t.Errorf("testenv: disable KV v2 at %s: %v", mount, err)
		}
	})
	return mount
}

// StartVault starts a Vault dev server of the test's own, for tests that
// stop or kill it. It is stopped when the test ends.
func StartVault(t testing.TB) *devenv.VaultServer {
	t.Helper()
	ctx, cancel := startContext()
	defer cancel()
	v, err := devenv.StartVault(ctx)
	if err != nil {
		t.Fatalf("testenv: start a Vault server: %v", err)
	}
	t.Cleanup(v.Stop)
	return v
}

// postgresAdminURL returns the superuser URL of the shared PostgreSQL,
// starting a cluster on first use.
func postgresAdminURL(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			pgURL = u
			return
		}
		ctx, cancel := startContext()
		defer cancel()
		pgServer, pgErr = devenv.StartPostgres(ctx, devenv.PostgresOptions{})
		if pgErr == nil {
			pgURL = pgServer.URL
		}
	})
	if pgErr != nil {
		t.Fatalf("testenv: no PostgreSQL server: %v", pgErr)
	}
	return pgURL
}

// DatabaseURL creates an empty database on the shared PostgreSQL and returns
// its connection string. The database is dropped when the test ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	admin := postgresAdminURL(t)
	name := "kbtest_" + RandomID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("testenv: connect to PostgreSQL to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testenv: parse the PostgreSQL URL: %v", redact(err, admin))
	}
	u.Path = "/" + name
	return u.String()
}

// NewPool returns a pool on a fresh database (see DatabaseURL), closed when
// the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return NewPoolFor(t, DatabaseURL(t))
}

// NewPoolFor returns a pool on the database at dsn, closed when the test
// ends.
func NewPoolFor(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("testenv: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RandomID returns 12 random lowercase hex characters, usable in Vault paths,
// database names and keybroker ids.
func RandomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random id: %v", err)
	}
	return hex.EncodeToString(b)
}

// redact keeps a connection string's password out of an error.
func redact(err error, dsn string) error {
	u, perr := url.Parse(dsn)
	if perr != nil || u.User == nil {
		return err
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), p, "xxxxx"))
	}
	return err
}

// loginRole is a login role of this test process (one per process and
// kind: test binaries run side by side on one server), created on a server
// the first time its URL is asked for.
type loginRole struct {
	kind     string
	once     sync.Once
	name     string
	password string
	mu       sync.Mutex
	onServer map[string]bool // host:port → created there
}

var (
	runtimeLogin  = &loginRole{kind: "runtime", onServer: map[string]bool{}}
	resolverLogin = &loginRole{kind: "resolver", onServer: map[string]bool{}}
)

func (r *loginRole) role(t testing.TB) string {
	t.Helper()
	r.once.Do(func() {
		r.name = "kbtest_" + r.kind + "_" + RandomID(t)
		r.password = RandomID(t) + RandomID(t)
	})
	return r.name
}

func (r *loginRole) url(t testing.TB, dbURL string) string {
	t.Helper()
	role := r.role(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("testenv: parse the database URL: %v", redact(err, dbURL))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.onServer[u.Host] {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := devenv.EnsureLoginRole(ctx, dbURL, role, r.password); err != nil {
			t.Fatalf("testenv: %s role: %v", r.kind, redact(err, dbURL))
		}
		r.onServer[u.Host] = true
	}
	u.User = url.UserPassword(role, r.password)
	return u.String()
}

// RuntimeRole is the login role of this test process that plays
// keybroker's runtime role (the admin side: modes admin and all). Migrate
// as the owner with it, then serve through RuntimeURL, as production does.
func RuntimeRole(t testing.TB) string { t.Helper(); return runtimeLogin.role(t) }

// RuntimeURL is dbURL (an owner's URL) with the runtime role's
// credentials; the role is created on dbURL's server the first time.
func RuntimeURL(t testing.TB, dbURL string) string { t.Helper(); return runtimeLogin.url(t, dbURL) }

// ResolverRole is the login role that plays the execution side's role
// (modes resolver and proxy), granted by store.GrantResolver.
func ResolverRole(t testing.TB) string { t.Helper(); return resolverLogin.role(t) }

// ResolverURL is dbURL with the resolver role's credentials; the role is
// created on dbURL's server the first time.
func ResolverURL(t testing.TB, dbURL string) string { t.Helper(); return resolverLogin.url(t, dbURL) }
