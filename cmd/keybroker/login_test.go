package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/keybroker/keybroker/internal/fixtures/devenv"
	"github.com/keybroker/keybroker/internal/fixtures/oidctest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// loginAs runs `keybroker login --no-browser` with env and plays user at
// the provider: the URL it prints is authorized, and the provider's
// redirect is sent to the CLI's loopback listener. It returns what the
// command printed and whether it succeeded.
func loginAs(t *testing.T, idp *oidctest.Provider, env []string, user string, args ...string) (string, bool) {
	t.Helper()
	return runLogin(t, env, args, idp.Origin+"/", func(u string) {
		redirect, err := idp.Authorize(t.Context(), user, u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(redirect, "http://127.0.0.1:") {
			t.Fatalf("the provider redirects to %q, not the CLI's loopback listener", redirect)
		}
		resp, err := http.Get(redirect)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the CLI's listener answered %d", resp.StatusCode)
		}
	})
}

// runLogin runs `keybroker login --no-browser` with env and args, and
// calls act with the first line it prints that starts with prefix (the
// URL the person is to open). It returns what the command printed and
// whether it succeeded.
func runLogin(t *testing.T, env, args []string, prefix string, act func(url string)) (string, bool) {
	t.Helper()
	cmd := keybroker(append([]string{"login", "--no-browser", "--timeout", "2m"}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out testenv.SyncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	urls := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = out.Write([]byte(line + "\n"))
			if u := strings.TrimSpace(line); !sent && strings.HasPrefix(u, prefix) {
				urls <- u
				sent = true
			}
		}
	}()
	select {
	case u := <-urls:
		act(u)
	case <-done:
	}
	<-done
	err = cmd.Wait()
	return out.String(), err == nil
}

// TestLoginFromTheCLI: keybroker login against a real keybroker server and
// Vault's OpenID provider, through the CLI's loopback listener; the
// session kept 0600 in a 0700 folder and used by the API commands without
// KEYBROKER_TOKEN (never for another address, never from a file others
// may read); logout ends it at the server; a person with no role is
// refused and keeps no file; nothing secret printed or logged.
func TestLoginFromTheCLI(t *testing.T) {
	idp := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{"http://127.0.0.1/auth/callback"},
		PublicRedirectURIs: []string{"http://127.0.0.1/callback"}})
	vaultAddr, vaultToken := testenv.Vault(t)
	mount := testenv.NewKVMount(t)
	dbURL := testenv.DatabaseURL(t)
	runtimeURL := testenv.RuntimeURL(t, dbURL)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))
	dir := t.TempDir()
	roleMap := writeSecret(t, dir, "roles.yaml", "rules:\n  - group: \"kb-ws-{ws}-admin\"\n    admin: {workspace: \"{ws}\"}\n")
	env := append([]string{"DATABASE_URL=" + runtimeURL, "VAULT_ADDR=" + vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + vaultToken,
		"KEYBROKER_KV_MOUNT=" + mount, "KEYBROKER_FINGERPRINT_PEPPER=login-test-pepper-0123456789",
		"KEYBROKER_OIDC_ISSUER=" + idp.Issuer, "KEYBROKER_OIDC_CLIENT_ID=" + idp.ClientID, "KEYBROKER_OIDC_CLIENT_SECRET=" + idp.ClientSecret,
		"KEYBROKER_OIDC_REDIRECT_URL=http://127.0.0.1:1/auth/callback", "KEYBROKER_OIDC_ROLE_MAP=" + roleMap,
		"KEYBROKER_OIDC_CLI_CLIENT_ID=" + idp.PublicClientID}, kbtest.KeysEnv("all")...)
	addr, logs := startServe(t, env)

	home := filepath.Join(dir, "home")
	config := filepath.Join(dir, "config")
	cli := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + config, "KEYBROKER_ADDR=http://" + addr}
	printed, ok := loginAs(t, idp, cli, "wes")
	all := printed
	if !ok || !strings.Contains(printed, "Signed in to http://"+addr+" as Wes Admin <wes@example.com>") {
		t.Fatalf("keybroker login printed %q", printed)
	}
	path := filepath.Join(config, "keybroker", "session.json")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the session file: %v %v", fi, err)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("the session folder: %v %v", di, err)
	}
	var kept storedSession
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &kept) != nil || !strings.HasPrefix(kept.Token, "kbs_") || kept.Address != "http://"+addr {
		t.Fatalf("the session kept: %v %+v", err, kept.Address)
	}
	devenv.Redact(kept.Token)

	// The API commands use it: with the address given, and without.
	out, _ := run(t, cli, "", false, "whoami")
	if !strings.Contains(out, "Wes Admin <wes@example.com>") || !strings.Contains(out, "admin of workspace ws1") {
		t.Fatalf("whoami printed %q", out)
	}
	noAddr := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + config}
	if out, _ := run(t, noAddr, "", false, "keys", "list", "--workspace", "ws1", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("keys list with the session printed %q", out)
	}
	_, msg := run(t, noAddr, "", true, "keys", "list", "--workspace", "ws1", "--addr", "http://127.0.0.1:1")
	if !strings.Contains(msg, "is for http://"+addr) {
		t.Fatalf("the session for another address: %q", msg)
	}
	_, msg = run(t, cli, "", true, "keys", "list", "--workspace", "ws2")
	if !strings.Contains(msg, "403") {
		t.Fatalf("another workspace: %q", msg)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, msg := run(t, cli, "", true, "whoami"); !strings.Contains(msg, "others may read it") {
		t.Fatalf("a session file others may read: %q", msg)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	// Logout ends it at the server and deletes it.
	if _, msg := run(t, cli, "", false, "logout"); !strings.Contains(msg, "Signed out of http://"+addr) {
		t.Fatalf("logout said %q", msg)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the session file after logout: %v", err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+kept.Token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session after logout: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, msg := run(t, cli, "", true, "whoami"); !strings.Contains(msg, "run keybroker login") {
		t.Fatalf("whoami after logout: %q", msg)
	}

	// A person with no role.
	printed, ok = loginAs(t, idp, cli, "nora")
	all += printed
	if ok || !strings.Contains(printed, "none of your groups gives you a role") {
		t.Fatalf("nora's login printed %q", printed)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a refused login kept a file: %v", err)
	}

	for _, secret := range append([]string{kept.Token, idp.ClientSecret}, passwords(idp)...) {
		if strings.Contains(logs.String(), secret) || strings.Contains(all, secret) {
			t.Fatalf("a secret (%.4s...) is in the server's log or the CLI's output", secret)
		}
	}
}

// loginWithDevice runs `keybroker login --no-browser` with env against a
// provider that offers the device grant, and plays user at the
// verification page: the complete URI the CLI prints is opened and the
// sign-in allowed or denied. It returns what the command printed and
// whether it succeeded.
func loginWithDevice(t *testing.T, idp *oidctest.Provider, env []string, user string, allow bool) (string, bool) {
	t.Helper()
	return runLogin(t, env, nil, idp.VerificationURI+"?user_code=", func(u string) {
		if _, err := idp.AnswerDevice(t.Context(), user, u, "", allow); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLoginFromTheCLIWithTheDeviceGrant: where the provider offers the
// device authorization grant, keybroker login uses it by default (a URL
// and a code, no listener), keybroker opens the session from the ID token
// without a nonce, and the API commands use it; a denied sign-in and a
// person with no role keep nothing; --flow loopback still signs in with
// the redirect.
func TestLoginFromTheCLIWithTheDeviceGrant(t *testing.T) {
	idp := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{"http://127.0.0.1/auth/callback"},
		PublicRedirectURIs: []string{"http://127.0.0.1/callback"}, DeviceGrant: true, DeviceInterval: time.Second})
	vaultAddr, vaultToken := testenv.Vault(t)
	dbURL := testenv.DatabaseURL(t)
	run(t, []string{"DATABASE_URL=" + dbURL}, "", false, "migrate", "--runtime-role", testenv.RuntimeRole(t))
	dir := t.TempDir()
	roleMap := writeSecret(t, dir, "roles.yaml", "rules:\n  - group: \"kb-ws-{ws}-admin\"\n    admin: {workspace: \"{ws}\"}\n")
	env := append([]string{"DATABASE_URL=" + testenv.RuntimeURL(t, dbURL), "VAULT_ADDR=" + vaultAddr, "KEYBROKER_VAULT_AUTH=token", "VAULT_TOKEN=" + vaultToken,
		"KEYBROKER_KV_MOUNT=" + testenv.NewKVMount(t), "KEYBROKER_FINGERPRINT_PEPPER=login-test-pepper-0123456789",
		"KEYBROKER_OIDC_ISSUER=" + idp.Issuer, "KEYBROKER_OIDC_CLIENT_ID=" + idp.ClientID, "KEYBROKER_OIDC_CLIENT_SECRET=" + idp.ClientSecret,
		"KEYBROKER_OIDC_REDIRECT_URL=http://127.0.0.1:1/auth/callback", "KEYBROKER_OIDC_ROLE_MAP=" + roleMap,
		"KEYBROKER_OIDC_CLI_CLIENT_ID=" + idp.PublicClientID, "KEYBROKER_OIDC_CLI_DEVICE_GRANT=true"}, kbtest.KeysEnv("all")...)
	addr, logs := startServe(t, env)
	config := filepath.Join(dir, "config")
	cli := []string{"HOME=" + filepath.Join(dir, "home"), "XDG_CONFIG_HOME=" + config, "KEYBROKER_ADDR=http://" + addr}
	path := filepath.Join(config, "keybroker", "session.json")

	printed, ok := loginWithDevice(t, idp, cli, "wes", true)
	all := printed
	if !ok || !strings.Contains(printed, "enter the code") || strings.Contains(printed, "127.0.0.1:") && strings.Contains(printed, "/callback") ||
		!strings.Contains(printed, "Signed in to http://"+addr+" as Wes Admin <wes@example.com>") {
		t.Fatalf("keybroker login with the device grant printed %q", printed)
	}
	var kept storedSession
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &kept) != nil || !strings.HasPrefix(kept.Token, "kbs_") {
		t.Fatalf("the session kept: %v", err)
	}
	devenv.Redact(kept.Token)
	if out, _ := run(t, cli, "", false, "whoami"); !strings.Contains(out, "Wes Admin <wes@example.com>") || !strings.Contains(out, "admin of workspace ws1") {
		t.Fatalf("whoami printed %q", out)
	}
	if _, msg := run(t, cli, "", false, "logout"); !strings.Contains(msg, "Signed out") {
		t.Fatalf("logout said %q", msg)
	}

	// Denied at the provider; a person with no role: nothing kept.
	for _, tc := range []struct {
		user  string
		allow bool
		want  string
	}{{"wes", false, "the sign-in was denied at the identity provider"}, {"nora", true, "none of your groups gives you a role"}} {
		printed, ok := loginWithDevice(t, idp, cli, tc.user, tc.allow)
		all += printed
		if ok || !strings.Contains(printed, tc.want) {
			t.Fatalf("%s (allow %v): keybroker login printed %q", tc.user, tc.allow, printed)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("a refused login kept a file: %v", err)
		}
	}

	// --flow loopback still takes the redirect.
	printed, ok = loginAs(t, idp, cli, "wes", "--flow", "loopback")
	all += printed
	if !ok || !strings.Contains(printed, "Signed in to http://"+addr+" as Wes Admin") {
		t.Fatalf("keybroker login --flow loopback printed %q", printed)
	}

	for _, secret := range append([]string{kept.Token, idp.ClientSecret}, passwords(idp)...) {
		if strings.Contains(logs.String(), secret) || strings.Contains(all, secret) {
			t.Fatalf("a secret (%.4s...) is in the server's log or the CLI's output", secret)
		}
	}
}

// TestTheLoginFlowIsTheProvidersDeviceGrantWhereOffered: --flow auto picks
// the device grant when discovery names its endpoint, else the loopback
// redirect; --flow device without it, and an unknown flow, are refused.
func TestTheLoginFlowIsTheProvidersDeviceGrantWhereOffered(t *testing.T) {
	// The server's word comes first: without --oidc-cli-device-grant,
	// auto takes the loopback redirect and device is refused.
	with := (&oidc.ProviderConfig{IssuerURL: "https://idp.example", AuthURL: "https://idp.example/auth", TokenURL: "https://idp.example/token",
		DeviceAuthURL: "https://idp.example/device", JWKSURL: "https://idp.example/jwks"}).NewProvider(t.Context())
	without := (&oidc.ProviderConfig{IssuerURL: "https://idp.example", AuthURL: "https://idp.example/auth", TokenURL: "https://idp.example/token",
		JWKSURL: "https://idp.example/jwks"}).NewProvider(t.Context())
	for _, tc := range []struct {
		name     string
		server   bool
		provider *oidc.Provider
		want     string
	}{
		{"auto", true, with, "*main.deviceFlow"}, {"", true, with, "*main.deviceFlow"}, {"auto", true, without, "*main.loopbackFlow"},
		{"auto", false, with, "*main.loopbackFlow"},
		{"device", true, with, "*main.deviceFlow"}, {"loopback", true, with, "*main.loopbackFlow"},
		{"device", true, without, "error: the identity provider does not offer the device authorization grant"},
		{"device", false, with, "error: this keybroker does not take the device authorization grant"},
		{"browser", true, with, "error: --flow \"browser\": want auto, device or loopback"},
	} {
		f, err := chooseFlow(tc.name, tc.server, tc.provider, "cli", []string{"openid"}, io.Discard, false)
		got := fmt.Sprintf("%T", f)
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("--flow %q: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func passwords(idp *oidctest.Provider) []string {
	var out []string
	for _, u := range idp.Users() {
		out = append(out, u.Password)
	}
	return out
}
