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

// VaultCluster is an HA Vault cluster with integrated storage (Raft) on
// loopback: node 0 is initialised and active, the others join it.
type VaultCluster struct {
	Nodes     []*devenv.VaultServer
	RootToken string
	unsealKey string
}

// StartVaultCluster starts n Vault servers with Raft storage, initialises
// the first, and unseals and joins the others. Stop it with Stop.
func StartVaultCluster(ctx context.Context, n int) (*VaultCluster, error) {
	c := &VaultCluster{}
	var leader string
	for i := range n {
		dir, err := devenv.NewRunDir("vault-raft")
		if err != nil {
			c.Stop()
			return nil, err
		}
		port, err := devenv.FreePort(true)
		if err != nil {
			c.Stop()
			return nil, err
		}
		addr := "http://127.0.0.1:" + strconv.Itoa(port)
		if i == 0 {
			leader = addr
		}
		// performance_multiplier = 1: Raft's production timing (Vault's
		// default, 5, is for development and makes an election five times
		// slower); docs/operations.md recommends it.
		config := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node%d"
  performance_multiplier = 1
}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = %q
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
`, filepath.Join(dir, "raft"), i, port, port+1, addr, port+1)
		configPath := filepath.Join(dir, "vault.hcl")
		if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
			os.RemoveAll(dir)
			c.Stop()
			return nil, err
		}
		if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
			os.RemoveAll(dir)
			c.Stop()
			return nil, err
		}
		v, err := devenv.StartVaultNode(ctx, dir, addr, configPath)
		if err != nil {
			os.RemoveAll(dir)
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, v)
		if i == 0 {
			init, err := v.Client().Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
			if err != nil {
				c.Stop()
				return nil, fmt.Errorf("vault operator init: %w", err)
			}
			c.RootToken, c.unsealKey = init.RootToken, init.KeysB64[0]
		}
		v.RootToken = c.RootToken
		if i > 0 {
			// operator raft join, then unseal with the cluster's key.
			if _, err := v.Client().Sys().RaftJoinWithContext(ctx, &vaultapi.RaftJoinRequest{LeaderAPIAddr: leader}); err != nil {
				c.Stop()
				return nil, fmt.Errorf("node %d: raft join %s: %w", i, leader, err)
			}
		}
		if _, err := v.Client().Sys().UnsealWithContext(ctx, c.unsealKey); err != nil {
			c.Stop()
			return nil, fmt.Errorf("unseal node %d: %w", i, err)
		}
		if err := waitUnsealed(ctx, v, i == 0); err != nil {
			c.Stop()
			return nil, err
		}
	}
	// Autopilot promotes a joined node to voter only after it has been
	// healthy for a while (server_stabilization_time, 10 s); until then
	// the cluster could not survive the loss of its leader.
	if err := c.waitVoters(ctx, n); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *VaultCluster) waitVoters(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	root := c.Nodes[0].Client()
	root.SetToken(c.RootToken)
	for {
		voters := 0
		if s, err := root.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration"); err == nil && s != nil {
			if cfg, ok := s.Data["config"].(map[string]any); ok {
				servers, _ := cfg["servers"].([]any)
				for _, srv := range servers {
					if m, ok := srv.(map[string]any); ok && m["voter"] == true {
						voters++
					}
				}
			}
		}
		if voters == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vault cluster: %d of %d nodes are voters after 90 s", voters, n)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Active returns the index of the active node, or -1.
func (c *VaultCluster) Active(ctx context.Context) int {
	for i, v := range c.Nodes {
		if !v.Running() {
			continue
		}
		h, err := v.Client().Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return i
		}
	}
	return -1
}

// Stop stops every node and removes their folders.
func (c *VaultCluster) Stop() {
	for _, v := range c.Nodes {
		v.Stop()
	}
}
