package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTheKeptSessionIsPrivateAndForItsAddress: the session file is made
// 0600 in a 0700 folder; a folder or file others may read is refused for
// reading and writing; KEYBROKER_TOKEN wins; the session goes only to its
// address, and not past its end.
func TestTheKeptSessionIsPrivateAndForItsAddress(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("KEYBROKER_TOKEN", "")
	if _, _, err := tokenFor("http://127.0.0.1:8080", false); err != errNoSession {
		t.Fatalf("no session: %v", err)
	}
	s := storedSession{Address: "http://127.0.0.1:8080", Token: "kbs_test", ExpiresAt: time.Now().Add(time.Hour)}
	path, err := saveSession(s)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v %v", fi, err)
	}
	if tok, addr, err := tokenFor("http://127.0.0.1:8080/", true); err != nil || tok != "kbs_test" || addr != s.Address {
		t.Fatalf("the session at its address: %q %q %v", tok, addr, err)
	}
	if tok, addr, err := tokenFor("http://127.0.0.1:9999", false); err != nil || tok != "kbs_test" || addr != s.Address {
		t.Fatalf("the session with no address given: %q %q %v", tok, addr, err)
	}
	if _, _, err := tokenFor("https://elsewhere.example", true); err == nil || !strings.Contains(err.Error(), "is for http://127.0.0.1:8080") {
		t.Fatalf("the session for another address: %v", err)
	}
	t.Setenv("KEYBROKER_TOKEN", "kbt_env")
	if tok, _, err := tokenFor("https://elsewhere.example", true); err != nil || tok != "kbt_env" {
		t.Fatalf("KEYBROKER_TOKEN: %q %v", tok, err)
	}
	t.Setenv("KEYBROKER_TOKEN", "")

	dir := filepath.Dir(path)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSession(); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Fatalf("a folder others may read: %v", err)
	}
	if _, err := saveSession(s); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Fatalf("saving into a folder others may read: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSession(); err == nil || !strings.Contains(err.Error(), "others may read it") {
		t.Fatalf("a file others may read: %v", err)
	}

	s.ExpiresAt = time.Now().Add(-time.Minute)
	if _, err := saveSession(s); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokenFor(s.Address, true); err == nil || !strings.Contains(err.Error(), "ended at") {
		t.Fatalf("a session past its end: %v", err)
	}
	if err := removeSession(); err != nil {
		t.Fatal(err)
	}
	if err := removeSession(); err != nil {
		t.Fatalf("removing no session: %v", err)
	}
}
