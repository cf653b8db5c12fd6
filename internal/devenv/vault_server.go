package devenv

import (
	"context"
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

// StartVaultServer starts a Vault server (not -dev) with file storage in a
// folder of its own, initialises it with one unseal key and unseals it. Unlike
// a dev server it keeps its data across Restart, so tests can stop Vault and
// bring the same one back.
func StartVaultServer(ctx context.Context) (*VaultServer, error) {
	bin, err := FindTool("vault")
	if err != nil {
		return nil, err
	}
	dir, err := newRunDir("vault-server")
	if err != nil {
		return nil, err
	}
	port, err := freePort(true)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	v := &VaultServer{Addr: "http://127.0.0.1:" + strconv.Itoa(port), Dir: dir, bin: bin}
	config := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = "http://127.0.0.1:%d"
cluster_addr  = "http://127.0.0.1:%d"
disable_mlock = true
`, filepath.Join(dir, "data"), port, port+1, port, port+1)
	v.configPath = filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(v.configPath, []byte(config), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write vault config: %w", err)
	}
	if err := v.startServer(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	c := v.Client()
	init, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		v.Stop()
		return nil, fmt.Errorf("vault operator init: %w", err)
	}
	v.RootToken, v.unsealKey = init.RootToken, init.KeysB64[0]
	if err := v.unseal(ctx); err != nil {
		v.Stop()
		return nil, err
	}
	return v, nil
}

// startServer starts the server process and waits until it answers HTTP.
func (v *VaultServer) startServer(ctx context.Context) error {
	cmd := exec.Command(v.bin, "server", "-config="+v.configPath)
	cmd.Dir = v.Dir
	cmd.Env = append(os.Environ(), "HOME="+v.Dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	cmd.SysProcAttr = childAttrs(syscall.SIGKILL, nil)
	proc, err := startProcess("vault", cmd, filepath.Join(v.Dir, "vault.log"))
	if err != nil {
		return err
	}
	v.proc = proc
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.Addr+"/v1/sys/health", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil // any answer: uninitialised (501) and sealed (503) are expected here
		}
		select {
		case <-proc.done:
			return fmt.Errorf("vault server exited during start-up (%v); its log ends with:\n%s", proc.waitErr, proc.logTail())
		case <-ctx.Done():
			return fmt.Errorf("vault server at %s does not answer: %w", v.Addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (v *VaultServer) unseal(ctx context.Context) error {
	if _, err := v.Client().Sys().UnsealWithContext(ctx, v.unsealKey); err != nil {
		return fmt.Errorf("vault operator unseal: %w", err)
	}
	return v.waitReady(ctx)
}

// Restart starts the server again on the same address and storage after
// Kill or Stop-less death, and unseals it.
func (v *VaultServer) Restart(ctx context.Context) error {
	if v.configPath == "" {
		return fmt.Errorf("restart: only a server started by StartVaultServer keeps its data")
	}
	v.proc.terminate(syscall.SIGKILL, time.Second)
	if err := v.startServer(ctx); err != nil {
		return err
	}
	return v.unseal(ctx)
}
