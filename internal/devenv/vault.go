package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// VaultServer is a running `vault server -dev`: in memory, unsealed, with a
// random root token, listening on a free loopback port.
type VaultServer struct {
	// Addr is the server's address, e.g. http://127.0.0.1:38201.
	Addr string
	// RootToken is the dev server's root token. It exists only as long as
	// the server does.
	RootToken string
	// Dir holds the server's log (and storage); it is removed by Stop.
	Dir string

	proc *process
}

// StartVault starts a Vault dev server and waits until it answers
// sys/health as active and unsealed. Stop it with Stop.
func StartVault(ctx context.Context) (*VaultServer, error) {
	bin, err := FindTool("vault")
	if err != nil {
		return nil, err
	}
	dir, err := NewRunDir("vault")
	if err != nil {
		return nil, err
	}
	token, err := randomHex(16)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	RegisterSecret(token) // Redact hides it from then on
	var lastErr error
	for range 3 { // a free port can be taken between finding and binding it
		port, err := FreePort(true)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		v := &VaultServer{
			Addr:      "http://127.0.0.1:" + strconv.Itoa(port),
			RootToken: token,
			Dir:       dir,
		}
		cmd := exec.Command(bin, "server", "-dev",
			"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port),
			"-dev-root-token-id="+token,
			"-dev-no-store-token", // never touch ~/.vault-token
		)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "VAULT_ADDR=", "VAULT_TOKEN=")
		cmd.SysProcAttr = childAttrs(syscall.SIGKILL, nil) // in-memory: nothing to flush
		v.proc, err = startProcess("vault", cmd, filepath.Join(dir, "vault.log"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if lastErr = v.waitReady(ctx); lastErr == nil {
			return v, nil
		}
		v.proc.terminate(syscall.SIGTERM, 5*time.Second)
		if ctx.Err() != nil {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// waitReady waits until the server answers sys/health as active and
// unsealed (200).
func (v *VaultServer) waitReady(ctx context.Context) error {
	return v.waitHealth(ctx, func(status int) bool { return status == http.StatusOK })
}

// waitHealth polls sys/health until its status satisfies ok, the process
// exits, or a minute has passed.
func (v *VaultServer) waitHealth(ctx context.Context, ok func(status int) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := WaitHTTP(ctx, v.Addr+"/v1/sys/health", ok, v.proc.done)
	if errors.Is(err, ErrExited) {
		return fmt.Errorf("vault server exited during start-up (%v); its log ends with:\n%s", v.proc.waitErr, v.proc.logTail())
	}
	if err != nil {
		return fmt.Errorf("vault server: %w; its log ends with:\n%s", err, v.proc.logTail())
	}
	return nil
}

// StartVaultNode runs `vault server -config=configPath` in dir (a folder
// from NewRunDir, removed by Stop) for a server with storage that the caller
// configured to listen at addr, and returns once it answers HTTP (any
// status: uninitialised and sealed are expected). Initialising and
// unsealing are the caller's: the test fixtures of internal/testenv build
// storage servers and Raft clusters on it.
func StartVaultNode(ctx context.Context, dir, addr, configPath string) (*VaultServer, error) {
	bin, err := FindTool("vault")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "server", "-config="+configPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	cmd.SysProcAttr = childAttrs(syscall.SIGKILL, nil)
	proc, err := startProcess("vault", cmd, filepath.Join(dir, "vault.log"))
	if err != nil {
		return nil, err
	}
	v := &VaultServer{Addr: addr, Dir: dir, proc: proc}
	// Any answer will do: uninitialised (501) and sealed (503) are expected.
	if err := v.waitHealth(ctx, func(int) bool { return true }); err != nil {
		proc.terminate(syscall.SIGKILL, time.Second)
		return nil, err
	}
	return v, nil
}

// Running reports whether the server process is still alive.
func (v *VaultServer) Running() bool { return !v.proc.exited() }

// LogTail is the end of the server's log, for error messages.
func (v *VaultServer) LogTail() string { return Redact(v.proc.logTail()) }

// Pid is the server's process id.
func (v *VaultServer) Pid() int { return v.proc.cmd.Process.Pid }

// Exited is closed when the server process has ended, for whatever reason.
func (v *VaultServer) Exited() <-chan struct{} { return v.proc.done }

// Kill ends the server at once, as a crash would.
func (v *VaultServer) Kill() {
	v.proc.terminate(syscall.SIGKILL, time.Second)
}

// Stop shuts the server down and removes its folder. It is safe to call more
// than once and after Kill.
func (v *VaultServer) Stop() {
	v.proc.terminate(syscall.SIGTERM, 10*time.Second)
	os.RemoveAll(v.Dir)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Client returns a Vault API client of the server holding its root token.
func (v *VaultServer) Client() *vaultapi.Client {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		// Only a malformed address or environment makes NewClient fail;
		// ours is built above from a loopback port.
		panic(fmt.Sprintf("devenv: vault client for %s: %v", v.Addr, err))
	}
	c.SetToken(v.RootToken)
	return c
}

// EnableKVv2 mounts a KV v2 secrets engine at path and waits until it takes
// requests (a new KV v2 mount upgrades itself in the background first).
func EnableKVv2(ctx context.Context, c *vaultapi.Client, path string) error {
	err := c.Sys().MountWithContext(ctx, path, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}})
	if err != nil {
		return fmt.Errorf("enable KV v2 at %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := c.Logical().ReadWithContext(ctx, path+"/config")
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("KV v2 at %s not ready: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
