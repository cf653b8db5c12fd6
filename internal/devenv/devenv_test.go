package devenv

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresStartsAsUnprivilegedUserAndStopCleansUp(t *testing.T) {
	ctx := context.Background()
	s, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var superuser string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&superuser); err != nil {
		t.Fatalf("query: %v", err)
	}
	conn.Close(ctx)
	if superuser != "postgres" {
		t.Fatalf("connected as %q", superuser)
	}
	fi, err := os.Stat(filepath.Join(s.Dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && fi.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Fatal("running as root, the data folder is owned by root")
	}

	pid := s.Pid()
	s.Stop()
	if processAlive(pid) {
		t.Fatalf("postmaster %d still alive after Stop", pid)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("folder %s still there after Stop (%v)", s.Dir, err)
	}
}

func TestPostgresRefusesWrongPassword(t *testing.T) {
	ctx := context.Background()
	s, err := StartPostgres(ctx, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	conn, err := pgx.Connect(ctx, "postgres://postgres:wrong@"+hostOf(t, s.URL)+"/postgres?sslmode=disable")
	if err == nil {
		conn.Close(ctx)
		t.Fatal("a wrong password was accepted")
	}
}

func TestVaultStartKillStop(t *testing.T) {
	ctx := context.Background()
	v, err := StartVault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	c := v.Client()
	if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		t.Fatalf("root token lookup: %v", err)
	}
	if err := EnableKVv2(ctx, c, "byok"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KVv2("byok").Put(ctx, "hosted/providers/openai", map[string]any{"api_key": "v"}); err != nil {
		t.Fatalf("write to new mount: %v", err)
	}
	v.Kill()
	select {
	case <-v.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("vault did not exit after Kill")
	}
	if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err == nil {
		t.Fatal("a killed vault still answers")
	}
	v.Stop()
	if _, err := os.Stat(v.Dir); !os.IsNotExist(err) {
		t.Fatalf("folder %s still there after Stop (%v)", v.Dir, err)
	}
}

func TestSweepRemovesFoldersOfDeadProcesses(t *testing.T) {
	// A child that has exited gives a pid that is surely not alive.
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	stale, err := os.MkdirTemp("", dirPrefix+"stale-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, ownerFile), []byte(strconv.Itoa(p.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := NewRunDir("live")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(live); os.RemoveAll(stale) })

	sweepStaleDirs()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale folder %s survived the sweep", stale)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("our own folder was swept: %v", err)
	}
}

func TestMissingToolNamesTheSetupCommand(t *testing.T) {
	t.Setenv("KEYBROKER_TOOLS_DIR", t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := FindTool("vault")
	if err == nil {
		t.Fatal("found vault on an empty PATH")
	}
	if want := SetupHint; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
}

func hostOf(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Host + ":" + strconv.Itoa(int(cfg.Port))
}
