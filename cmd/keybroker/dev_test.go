package main

import (
	"bufio"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/fixtures/devenv"
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
	reVaultPid = regexp.MustCompile(`^# vault pid (\d+), folder (\S+)$`)
	rePgPid    = regexp.MustCompile(`^# postgres pid (\d+), folder (\S+)$`)
	reExport   = regexp.MustCompile(`^export [A-Z][A-Z0-9_]*=\S+$`)
)

// devPrinted is what `keybroker dev` printed on stdout, up to its last line.
type devPrinted struct {
	lines             []string
	vaultPid, pgPid   int
	vaultDir, pgDir   string
	reconcile         string // the reconcile command, without its comment mark
	exports           []string
	firstExport, last int
}

// readDevPrinted reads dev's stdout until the line of PostgreSQL's pid (the
// last one it prints).
func readDevPrinted(t *testing.T, lines *bufio.Scanner) devPrinted {
	t.Helper()
	var p devPrinted
	p.firstExport = -1
	for p.pgPid == 0 && lines.Scan() {
		line := lines.Text()
		if strings.HasPrefix(line, "export ") {
			if p.firstExport < 0 {
				p.firstExport = len(p.lines)
			}
			p.last = len(p.lines)
			p.exports = append(p.exports, line)
		}
		if len(p.lines) > 0 && strings.HasPrefix(p.lines[len(p.lines)-1], "# To reconcile") {
			p.reconcile = strings.TrimLeft(strings.TrimPrefix(line, "#"), " ")
		}
		if m := reVaultPid.FindStringSubmatch(line); m != nil {
			p.vaultPid, _ = strconv.Atoi(m[1])
			p.vaultDir = m[2]
		}
		if m := rePgPid.FindStringSubmatch(line); m != nil {
			p.pgPid, _ = strconv.Atoi(m[1])
			p.pgDir = m[2]
		}
		p.lines = append(p.lines, line)
	}
	return p
}

// pasteEnv is the environment of a new shell: the test's, without any
// keybroker, Vault or database setting.
func pasteEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYBROKER_") || strings.HasPrefix(name, "VAULT_") || name == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// paste runs what dev printed, then script, in a new shell (sh, the
// strictest POSIX one here, unless shell says otherwise) with `set -eu`,
// and returns its output.
func paste(t *testing.T, shell string, printed []string, script string, env ...string) string {
	t.Helper()
	cmd := exec.Command(shell, "-c", "set -eu\n"+strings.Join(printed, "\n")+"\n"+script)
	cmd.Env = append(pasteEnv(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("what keybroker dev printed, pasted into %s, fails: %v\n%s", shell, err, devenv.Redact(string(out)))
	}
	return string(out)
}

// keybrokerOnPath makes `keybroker` on PATH run this test binary as
// keybroker, and returns the PATH setting to give a shell.
func keybrokerOnPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\nKEYBROKER_RUN_MAIN=1 KEYBROKER_METRICS_ADDR= exec " + shellQuote(os.Args[0]) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "keybroker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// openAIStandIn stands in for OpenAI's model listing, which the proxy's
// tour call reaches: it answers 200 only to the key it is given, as a
// bearer token, on GET /v1/models, and counts those it accepted.
func openAIStandIn(t *testing.T, key string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/models" || r.Header.Get("Authorization") != "Bearer "+key {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"invalid_api_key"}}`)
			return
		}
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

func TestDevServesReadinessOfItsOwnVaultAndPostgres(t *testing.T) {
	// dev honours the providers' base URLs as serve does: a key check or a
	// proxied call of the tour goes to the stand-in.
	tourKey := "sk-proj-tour-" + testenv.RandomID(t) + testenv.RandomID(t)
	openai, served := openAIStandIn(t, tourKey)
	cmd := keybroker("dev", "--listen-addr", "127.0.0.1:0")
	cmd.Env = append(cmd.Env, "KEYBROKER_PROVIDER_OPENAI_BASE_URL="+openai.URL)
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

	deadline := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	printed := readDevPrinted(t, bufio.NewScanner(stdout))
	deadline.Stop()
	if printed.vaultPid == 0 || printed.pgPid == 0 {
		t.Fatalf("keybroker dev did not print its pids (vault %d, postgres %d):\n%s", printed.vaultPid, printed.pgPid, devenv.Redact(strings.Join(printed.lines, "\n")))
	}
	go io.Copy(io.Discard, stdout)

	// Every line is a comment but one block of export lines, one after the
	// other, which pastes into a shell as it is: each setting comes out as
	// printed, in sh and in bash, and the whole output pasted runs nothing.
	for i, line := range printed.lines {
		inBlock := i >= printed.firstExport && i <= printed.last
		if inBlock && !reExport.MatchString(line) || !inBlock && !strings.HasPrefix(line, "#") {
			t.Fatalf("line %d of keybroker dev's output neither an export of the block nor a comment: %q", i+1, line)
		}
	}
	names := []string{"KEYBROKER_ADDR", "KEYBROKER_TOKEN", "KEYBROKER_RESOLVER_TOKEN", "VAULT_ADDR", "VAULT_TOKEN",
		"DATABASE_URL", "KEYBROKER_ADMIN_TOKEN_KEYS", "KEYBROKER_RESOLVER_KEYS"}
	show := ""
	for _, n := range names {
		show += `printf '%s=%s\n' ` + n + ` "$` + n + `"` + "\n"
	}
	got := map[string]string{}
	for _, shell := range []string{"sh", "bash"} {
		for _, blockOnly := range []bool{false, true} {
			lines := printed.lines
			if blockOnly {
				lines = printed.exports
			}
			out := paste(t, shell, lines, show)
			for _, kv := range strings.Split(strings.TrimSpace(out), "\n") {
				name, value, _ := strings.Cut(kv, "=")
				if prev, ok := got[name]; ok && prev != value {
					t.Fatalf("%s pasted into %s is %q, was %q", name, shell, value, prev)
				}
				got[name] = value
			}
		}
	}
	for _, n := range names {
		if got[n] == "" {
			t.Fatalf("pasting what keybroker dev printed leaves %s empty", n)
		}
	}
	addr, ok := strings.CutPrefix(got["KEYBROKER_ADDR"], "http://")
	if !ok || !strings.HasPrefix(got["KEYBROKER_TOKEN"], "kbt_") || !strings.HasPrefix(got["KEYBROKER_RESOLVER_TOKEN"], "kbt_") ||
		!strings.HasPrefix(got["VAULT_ADDR"], "http://127.0.0.1:") || !strings.HasPrefix(got["DATABASE_URL"], "postgres://") {
		t.Fatalf("the pasted settings: addr %q, vault %q (tokens and database URL not shown)", got["KEYBROKER_ADDR"], got["VAULT_ADDR"])
	}

	status, body := waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
	if status != http.StatusOK || !strings.Contains(body, `"settings_loaded":"ok"`) {
		t.Fatalf("readyz with both servers up: %d %s", status, body)
	}
	assertMigrated(t, got["DATABASE_URL"])

	// A newcomer's workspace without a key falls back to the fake hosted
	// key dev seeded.
	call := func(token, method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, answer := call(got["KEYBROKER_RESOLVER_TOKEN"], http.MethodPost, "/v1/resolve", `{"workspace":"newcomer","provider":"openai"}`)
	var resolved struct {
		APIKey string `json:"apiKey"`
		Source string `json:"source"`
	}
	_ = json.Unmarshal(answer, &resolved)
	if code != http.StatusOK || resolved.Source != "hosted" || !strings.Contains(resolved.APIKey, "FAKE") {
		t.Fatalf("resolve of a workspace without a key in dev: %d, source %q", code, resolved.Source)
	}

	// The tour's proxy step with the pasted tokens: the operator's token
	// adds a key, the resolver's mints a proxy token, and the call reaches
	// the provider's base URL set in dev's environment with the key.
	if code, answer := call(got["KEYBROKER_TOKEN"], http.MethodPost, "/v1/workspaces/tour/providers/openai/keys", `{"keyId":"main","apiKey":"`+tourKey+`"}`); code != http.StatusCreated {
		t.Fatalf("add a key with the operator token dev printed: %d %s", code, answer)
	}
	code, answer = call(got["KEYBROKER_RESOLVER_TOKEN"], http.MethodPost, "/v1/proxy-tokens", `{"workspace":"tour","providers":["openai"],"ttlSeconds":600}`)
	var minted struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(answer, &minted); code != http.StatusCreated || err != nil || minted.Token == "" {
		t.Fatalf("mint a proxy token with the resolver token dev printed: %d %v", code, err)
	}
	if code, answer := call(minted.Token, http.MethodGet, "/proxy/openai/v1/models", ""); code != http.StatusOK || served.Load() != 1 {
		t.Fatalf("a call through dev's proxy to KEYBROKER_PROVIDER_OPENAI_BASE_URL: %d %s (the stand-in served %d)", code, answer, served.Load())
	}

	// A person signs in with the dev Vault's OpenID provider, as dev
	// printed: the provider's login form, then keybroker's session.
	devSignIn(t, addr, printed.lines)

	// The reconcile command dev printed runs as is, in the shell the
	// exports were pasted into.
	if printed.reconcile == "" {
		t.Fatal("dev printed no reconcile command")
	}
	if out := paste(t, "sh", printed.lines, printed.reconcile, keybrokerOnPath(t)); !strings.Contains(out, "completed 0, aborted 0, repaired 0") {
		t.Fatalf("the printed reconcile command:\n%s", devenv.Redact(out))
	}

	vaultPid, pgPid := printed.vaultPid, printed.pgPid
	if err := syscall.Kill(vaultPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill vault %d: %v", vaultPid, err)
	}
	status, body = waitStatus(t, "http://"+addr+"/readyz", http.StatusServiceUnavailable)
	var unready struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &unready); err != nil {
		t.Fatalf("readyz 503 body is not JSON: %q", body)
	}
	if unready.Error.Code != "dependency_unavailable" || !strings.Contains(unready.Error.Message, "vault") {
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
	for _, dir := range []string{printed.vaultDir, printed.pgDir} {
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

var (
	reDevPerson = regexp.MustCompile(`^#   (dev-admin) / (\S+) \(kb-ws-ws1-admin\)$`)
	reFormTag   = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

// devSignIn signs the workspace admin dev printed in at dev's /auth/login
// with a browser's cookie jar, and checks who keybroker says they are.
func devSignIn(t *testing.T, addr string, lines []string) {
	t.Helper()
	var user, password string
	for _, l := range lines {
		if m := reDevPerson.FindStringSubmatch(l); m != nil {
			user, password = m[1], m[2]
		}
	}
	if user == "" {
		t.Fatal("keybroker dev printed no person to sign in as")
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := browser.Get("http://" + addr + "/auth/login?return=/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := reFormTag.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("the provider's login form: %d", resp.StatusCode)
	}
	action, err := resp.Request.URL.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = browser.PostForm(action.String(), url.Values{"username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/auth/callback" || !strings.Contains(string(done), "Signed in") {
		t.Fatalf("the sign-in ended at %s with %d", resp.Request.URL.Path, resp.StatusCode)
	}
	resp, err = browser.Get("http://" + addr + "/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var who struct {
		Person *struct {
			Name string `json:"name"`
		} `json:"person"`
		ScopedRoles *struct {
			Workspaces map[string]string `json:"workspaces"`
		} `json:"scopedRoles"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&who); err != nil || who.Person == nil || who.Person.Name != "Dev Admin" ||
		who.ScopedRoles == nil || who.ScopedRoles.Workspaces["ws1"] != "admin" {
		t.Fatalf("whoami after signing in: %d %v", resp.StatusCode, err)
	}
}
