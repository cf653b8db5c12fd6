package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// storedSession is the session `keybroker login` keeps in the user's
// config folder (os.UserConfigDir()/keybroker/session.json), mode 0600
// in a folder of mode 0700: the address it was opened at, its token and
// when it ends at the latest.
type storedSession struct {
	Address   string    `json:"address"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// sessionPath is where the session is kept.
func sessionPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("the user's config folder: %w", err)
	}
	return filepath.Join(dir, "keybroker", "session.json"), nil
}

// errNoSession: no session is kept (never signed in, or signed out).
var errNoSession = errors.New("no session: run keybroker login, or set KEYBROKER_TOKEN")

// private refuses a file or folder that others than its owner may read
// or write.
func private(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: others may read it; keybroker uses it only when it is private (chmod go-rwx %s, or run keybroker login again)",
			path, fi.Mode().Perm(), path)
	}
	return nil
}

// loadSession reads the kept session; errNoSession when there is none. A
// file or folder others may read or write is refused, as is a session
// past its end.
func loadSession() (storedSession, error) {
	path, err := sessionPath()
	if err != nil {
		return storedSession{}, err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return storedSession{}, errNoSession
	case err != nil:
		return storedSession{}, fmt.Errorf("read the session: %w", err)
	case !fi.Mode().IsRegular():
		return storedSession{}, fmt.Errorf("%s is not a regular file", path)
	}
	if err := private(path, fi); err != nil {
		return storedSession{}, err
	}
	if dfi, err := os.Stat(filepath.Dir(path)); err == nil {
		if err := private(filepath.Dir(path), dfi); err != nil {
			return storedSession{}, err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return storedSession{}, fmt.Errorf("read the session: %w", err)
	}
	var s storedSession
	if err := json.Unmarshal(b, &s); err != nil || s.Token == "" || s.Address == "" {
		return storedSession{}, fmt.Errorf("%s is not a session of keybroker login: run keybroker login again", path)
	}
	return s, nil
}

// saveSession keeps s: the folder made 0700 (an existing one must be
// private), the file written 0600 beside and renamed into place.
func saveSession(s storedSession) (string, error) {
	path, err := sessionPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if err := private(dir, fi); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".session-*.json")
	if err != nil {
		return "", fmt.Errorf("write the session: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", fmt.Errorf("write the session: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return "", fmt.Errorf("write the session: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write the session: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("write the session: %w", err)
	}
	return path, nil
}

// removeSession deletes the kept session (none is no error).
func removeSession() error {
	path, err := sessionPath()
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the session: %w", err)
	}
	return nil
}

// sameAddress says whether two keybroker addresses are one.
func sameAddress(a, b string) bool {
	return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
}

// tokenFor is the token of the API commands at address: KEYBROKER_TOKEN,
// else the session of keybroker login when it was opened at address
// (explicit: the command's address was given) or at any address (the
// session's address is then used).
func tokenFor(address string, explicit bool) (token, addr string, err error) {
	if t := os.Getenv("KEYBROKER_TOKEN"); t != "" {
		return t, address, nil
	}
	s, err := loadSession()
	if err != nil {
		return "", "", err
	}
	if explicit && !sameAddress(s.Address, address) {
		// Never send the session to another server than the one it is for.
		return "", "", fmt.Errorf("the session of keybroker login is for %s, not %s: run keybroker login --addr %s, or set KEYBROKER_TOKEN", s.Address, address, address)
	}
	if !s.ExpiresAt.IsZero() && time.Now().After(s.ExpiresAt) {
		return "", "", fmt.Errorf("the session of keybroker login ended at %s: run keybroker login again", s.ExpiresAt.Local().Format(time.RFC1123))
	}
	return s.Token, s.Address, nil
}
