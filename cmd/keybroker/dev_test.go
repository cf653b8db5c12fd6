package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// TestMain lets the test binary stand in for the keybroker binary: with
// KEYBROKER_RUN_MAIN=1 it runs main() instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("KEYBROKER_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

// keybroker returns a command that runs this binary as keybroker.
func keybroker(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	// The child sees no server settings of the parent's environment.
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYBROKER_") || strings.HasPrefix(name, "VAULT_") || name == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	// No metrics listener unless a test asks: its default port is fixed.
	cmd.Env = append(env, "KEYBROKER_RUN_MAIN=1", "KEYBROKER_METRICS_ADDR=")
	return cmd
}

var (
	reListen      = regexp.MustCompile(`^\s+keybroker\s+http://(\S+)`)
	reVaultPid    = regexp.MustCompile(`^\s+vault pid (\d+), folder (\S+)`)
	rePgPid       = regexp.MustCompile(`^\s+postgres pid (\d+), folder (\S+)`)
	reDatabaseURL = regexp.MustCompile(`^\s+DATABASE_URL=(\S+)`)
	reResolver    = regexp.MustCompile(`^\s+KEYBROKER_RESOLVER_TOKEN=(\S+)`)
	reEnvPair     = regexp.MustCompile(`[A-Z_]+=\S+`)
)

func TestDevServesReadinessOfItsOwnVaultAndPostgres(t *testing.T) {
	cmd := keybroker("dev", "--listen-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testLogWriter{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})

	var addr, vaultDir, pgDir, databaseURL, resolverToken string
	var reconcileEnv []string
	collecting := false
	var vaultPid, pgPid int
	lines := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	for lines.Scan() && (addr == "" || vaultPid == 0 || pgPid == 0) {
		line := lines.Text()
		if m := reResolver.FindStringSubmatch(line); m != nil {
			resolverToken = m[1]
		}
		// The reconcile command dev prints, over several lines.
		if strings.HasPrefix(line, "  reconcile ") {
			collecting = true
		}
		if collecting {
			reconcileEnv = append(reconcileEnv, reEnvPair.FindAllString(line, -1)...)
			collecting = !strings.Contains(line, "keybroker reconcile")
		}
		if m := reListen.FindStringSubmatch(line); m != nil {
			addr = m[1]
		}
		if m := reVaultPid.FindStringSubmatch(line); m != nil {
			vaultPid, _ = strconv.Atoi(m[1])
			vaultDir = m[2]
		}
		if m := reDatabaseURL.FindStringSubmatch(line); m != nil {
			databaseURL = m[1]
		}
		if m := rePgPid.FindStringSubmatch(line); m != nil {
			pgPid, _ = strconv.Atoi(m[1])
			pgDir = m[2]
		}
	}
	deadline.Stop()
	if addr == "" || vaultPid == 0 || pgPid == 0 {
		t.Fatalf("keybroker dev did not print its addresses and pids (addr %q, vault %d, postgres %d)", addr, vaultPid, pgPid)
	}
	go io.Copy(io.Discard, stdout)

	status, body := waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
	if status != http.StatusOK || !strings.Contains(body, `"settings_loaded":"ok"`) {
		t.Fatalf("readyz with both servers up: %d %s", status, body)
	}
	assertMigrated(t, databaseURL)

	// A newcomer's workspace without a key falls back to the fake hosted
	// key dev seeded, and the reconcile command it printed runs as is.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/resolve", strings.NewReader(`{"workspace":"newcomer","provider":"openai"}`))
	req.Header.Set("Authorization", "Bearer "+resolverToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var resolved struct {
		APIKey string `json:"apiKey"`
		Source string `json:"source"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&resolved)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resolved.Source != "hosted" || !strings.Contains(resolved.APIKey, "FAKE") {
		t.Fatalf("resolve of a workspace without a key in dev: %d, source %q", resp.StatusCode, resolved.Source)
	}
	if len(reconcileEnv) < 8 {
		t.Fatalf("dev printed no usable reconcile command (%d settings)", len(reconcileEnv))
	}
	reconcile := keybroker("reconcile")
	reconcile.Env = append(reconcile.Env, reconcileEnv...)
	if out, err := reconcile.CombinedOutput(); err != nil || !strings.Contains(string(out), "completed 0, aborted 0, repaired 0") {
		t.Fatalf("the printed reconcile command: %v\n%s", err, out)
	}

	if err := syscall.Kill(vaultPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill vault %d: %v", vaultPid, err)
	}
	status, body = waitStatus(t, "http://"+addr+"/readyz", http.StatusServiceUnavailable)
	var answer struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("readyz 503 body is not JSON: %q", body)
	}
	if answer.Error.Code != "dependency_unavailable" || !strings.Contains(answer.Error.Message, "vault") {
		t.Fatalf("readyz with vault killed: %d %s", status, body)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("keybroker dev exited with %v after Ctrl-C", waitErr)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("keybroker dev did not exit after Ctrl-C")
	}
	if err := syscall.Kill(pgPid, 0); err == nil {
		t.Errorf("postgres %d still runs after keybroker dev exited", pgPid)
	}
	for _, dir := range []string{vaultDir, pgDir} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("folder %s still exists after keybroker dev exited (%v)", dir, err)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want (readiness checks take up to a
// couple of seconds to notice a dead dependency).
func waitStatus(t *testing.T, url string, want int) (int, string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body := get(t, url)
		if status == want || time.Now().After(deadline) {
			return status, body
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testLogWriter sends a child's stderr to the test log.
type testLogWriter struct{ t *testing.T }

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("keybroker dev: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// assertMigrated checks that keybroker's tables exist in the database.
func assertMigrated(t *testing.T, databaseURL string) {
	t.Helper()
	if databaseURL == "" {
		t.Fatal("no DATABASE_URL printed")
	}
	pool := testenv.NewPoolFor(t, databaseURL)
	var tables int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.tables WHERE table_name IN ('provider_keys', 'audit_events')`).Scan(&tables)
	if err != nil || tables != 2 {
		t.Fatalf("keybroker's tables: %d found, %v", tables, err)
	}
}

func TestMigrateCommandIsIdempotent(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	role := testenv.RuntimeRole(t)
	_ = testenv.RuntimeURL(t, dbURL) // creates the role
	for i := range 2 {
		cmd := keybroker("migrate", "--runtime-role", role)
		cmd.Env = append(cmd.Env, "DATABASE_URL="+dbURL)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("migrate run %d: %v: %s", i+1, err, out)
		}
	}
	assertMigrated(t, dbURL)
	// A password on the command line shows in every process listing.
	out, err := keybroker("migrate", "--database-url", dbURL).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--database-url carries a password") || strings.Contains(string(out), passwordOf(t, dbURL)) {
		t.Fatalf("migrate with a password in --database-url: %v: %s", err, out)
	}
	// The password from a file, the URL without it.
	pwFile := writeSecret(t, t.TempDir(), "pgpass", passwordOf(t, dbURL)+"\n")
	cmd := keybroker("migrate", "--database-url", withoutPassword(t, dbURL), "--database-password-file", pwFile, "--runtime-role", role)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("migrate with --database-password-file: %v: %s", err, out)
	}
	// A missing runtime role is named.
	cmd = keybroker("migrate", "--runtime-role", "no_such_role_here")
	cmd.Env = append(cmd.Env, "DATABASE_URL="+dbURL)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), `runtime role "no_such_role_here" does not exist`) {
		t.Fatalf("migrate with a missing runtime role: %v: %s", err, out)
	}
	out, err = keybroker("migrate", "--database-url", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DATABASE_URL") {
		t.Fatalf("migrate without a database: %v: %s", err, out)
	}
}

func passwordOf(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("parse the database URL")
	}
	pw, _ := u.User.Password()
	return pw
}

func withoutPassword(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("parse the database URL")
	}
	u.User = url.User(u.User.Username())
	return u.String()
}
