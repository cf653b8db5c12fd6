package testenv

import (
	"context"
	"testing"
)

func TestVaultClusterForms(t *testing.T) {
	ctx := context.Background()
	c, err := StartVaultCluster(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if a := c.Active(ctx); a != 0 {
		t.Fatalf("active node %d, want 0", a)
	}
	cfg, err := c.Nodes[0].Client().Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		t.Fatal(err)
	}
	servers := cfg.Data["config"].(map[string]any)["servers"].([]any)
	if len(servers) != 3 {
		t.Fatalf("%d raft peers, want 3", len(servers))
	}
}
