package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/internal/devenv"
)

// VaultStorageServer is a Vault server (not -dev) with file storage, for
// tests that stop Vault and bring the same one back: Restart keeps its data.
type VaultStorageServer struct {
	*devenv.VaultServer
	configPath, unsealKey string
}

// StartVaultServer starts a Vault server with file storage in a folder of
// its own, initialises it with one unseal key and unseals it. Stop it with
// Stop.
func StartVaultServer(ctx context.Context) (*VaultStorageServer, error) {
	dir, err := devenv.NewRunDir("vault-server")
	if err != nil {
		return nil, err
	}
	port, err := devenv.FreePort(true)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := "http://127.0.0.1:" + strconv.Itoa(port)
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
	v := &VaultStorageServer{configPath: filepath.Join(dir, "vault.hcl")}
	if err := os.WriteFile(v.configPath, []byte(config), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write vault config: %w", err)
	}
	if v.VaultServer, err = devenv.StartVaultNode(ctx, dir, addr, v.configPath); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	init, err := v.Client().Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
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

func (v *VaultStorageServer) unseal(ctx context.Context) error {
	if _, err := v.Client().Sys().UnsealWithContext(ctx, v.unsealKey); err != nil {
		return fmt.Errorf("vault operator unseal: %w", err)
	}
	return waitUnsealed(ctx, v.VaultServer, true)
}

// Restart starts the server again on the same address and storage after
// Kill (or a death of its own), and unseals it.
func (v *VaultStorageServer) Restart(ctx context.Context) error {
	v.Kill()
	token := v.RootToken
	next, err := devenv.StartVaultNode(ctx, v.Dir, v.Addr, v.configPath)
	if err != nil {
		return err
	}
	next.RootToken = token
	v.VaultServer = next
	return v.unseal(ctx)
}

// waitUnsealed waits until v is unsealed and, with active, the leader.
func waitUnsealed(ctx context.Context, v *devenv.VaultServer, active bool) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	c := v.Client()
	for {
		h, err := c.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed && (!active || !h.Standby) {
			return nil
		}
		select {
		case <-v.Exited():
			return fmt.Errorf("vault node exited; its log ends with:\n%s", v.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("vault node at %s not unsealed: %v", v.Addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
