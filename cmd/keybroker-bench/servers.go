package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/store"
	"github.com/keybroker/keybroker/vault"
)

// servers are what the scale and burst scenarios run keybroker replicas
// on: PostgreSQL, a bootstrapped Vault dev server, the keybroker binary and
// a work folder; close stops them.
type servers struct {
	pg       *devenv.PostgresServer
	vs       *devenv.VaultServer
	bin, dir string
	cleanups []func()
}

func (s *servers) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// startServers starts PostgreSQL and Vault (KV mount byok, keybroker's
// policies) and builds keybroker unless o names a binary.
func startServers(ctx context.Context, o options, name string, log *slog.Logger) (*servers, error) {
	s := &servers{}
	fail := func(err error) (*servers, error) { s.close(); return nil, err }
	log.Info("starting PostgreSQL and Vault")
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{})
	if err != nil {
		return fail(err)
	}
	s.pg = pg
	s.cleanups = append(s.cleanups, pg.Stop)
	if s.vs, err = devenv.StartVault(ctx); err != nil {
		return fail(err)
	}
	s.cleanups = append(s.cleanups, s.vs.Stop)
	op, err := vault.New(vault.Config{Address: s.vs.Addr, Token: s.vs.RootToken})
	if err != nil {
		return fail(err)
	}
	if _, err := op.Bootstrap(ctx, vault.BootstrapConfig{KVMount: "byok"}); err != nil {
		return fail(err)
	}
	if s.dir, err = os.MkdirTemp("", "keybroker-"+name+"-"); err != nil {
		return fail(err)
	}
	s.cleanups = append(s.cleanups, func() { os.RemoveAll(s.dir) })
	if s.bin = o.keybrokerBin; s.bin == "" {
		log.Info("building keybroker")
		if s.bin, err = buildKeybroker(ctx, s.dir); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// database creates and migrates database name, and mints a resolver and
// an operator token in it.
func (s *servers) database(ctx context.Context, name string) (dbURL string, st *store.Store, resolverToken, operatorToken string, err error) {
	if dbURL, err = createDatabase(ctx, s.pg.URL, name); err != nil {
		return "", nil, "", "", err
	}
	if st, err = store.Open(ctx, dbURL); err != nil {
		return "", nil, "", "", err
	}
	s.cleanups = append(s.cleanups, st.Close)
	if err = st.Migrate(ctx); err != nil {
		return "", nil, "", "", err
	}
	resolverKeys, err := keyring.Parse(benchResolverKeys)
	if err != nil {
		return "", nil, "", "", err
	}
	adminKeys, err := keyring.Parse(benchAdminKeys)
	if err != nil {
		return "", nil, "", "", err
	}
	svc := auth.NewService(st, auth.Options{Keys: auth.RowKeys{Resolver: resolverKeys, Admin: adminKeys}})
	if resolverToken, _, err = svc.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleResolver, CreatedBy: "bench"}); err != nil {
		return "", nil, "", "", err
	}
	if operatorToken, _, err = svc.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleOperator, CreatedBy: "bench"}); err != nil {
		return "", nil, "", "", err
	}
	return dbURL, st, resolverToken, operatorToken, nil
}

// serve starts `keybroker serve` in mode over dbURL, on the root token,
// with its own metrics and pprof listeners, and says how long it took to
// be ready. The resolver keys go to the execution side only.
func (s *servers) serve(ctx context.Context, o options, name, mode, dbURL string) (*child, time.Duration, error) {
	free := func() (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer l.Close()
		return l.Addr().String(), nil
	}
	metricsAddr, err := free()
	if err != nil {
		return nil, 0, err
	}
	pprofAddr, err := free()
	if err != nil {
		return nil, 0, err
	}
	env := []string{"KEYBROKER_MODE=" + mode, "DATABASE_URL=" + dbURL,
		"VAULT_ADDR=" + s.vs.Addr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + s.vs.RootToken,
		"KEYBROKER_KV_MOUNT=byok", "KEYBROKER_PPROF_ADDR=" + pprofAddr, "KEYBROKER_FINGERPRINT_PEPPER=bench-pepper-0123456789abcdef",
		"KEYBROKER_ADMIN_TOKEN_KEYS=" + benchAdminKeys,
		"KEYBROKER_ACCESS_LOG=" + o.accessLog, "KEYBROKER_RATE_LIMIT_PER_TOKEN=-1", "KEYBROKER_RECONCILE_INTERVAL=0",
		"KEYBROKER_HEALTH_PROBE_INTERVAL=0", "KEYBROKER_METRICS_ADDR=" + metricsAddr}
	if mode != "admin" {
		env = append(env, "KEYBROKER_RESOLVER_KEYS="+benchResolverKeys)
	}
	t := time.Now()
	c, err := startChild(ctx, s.dir, name, s.bin, func(listen string) ([]string, []string) {
		return []string{"serve"}, append(append(env, "KEYBROKER_LISTEN_ADDR="+listen), o.keybrokerEnv...)
	}, "/readyz")
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	s.cleanups = append(s.cleanups, c.stop)
	c.metricsURL, c.pprofURL = "http://"+metricsAddr, "http://"+pprofAddr
	return c, time.Since(t), nil
}
