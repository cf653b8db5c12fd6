package testenv_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/internal/devenv"
	"github.com/keybroker/keybroker/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestVaultWritesAndReadsKVv2(t *testing.T) {
	ctx := context.Background()
	c := testenv.VaultClient(t)
	mount := testenv.NewKVMount(t)
	kv := c.KVv2(mount)

	written, err := kv.Put(ctx, "workspaces/ws1/providers/openai", map[string]any{"api_key": "sk-test-value"})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if written.VersionMetadata.Version != 1 {
		t.Fatalf("first write is version %d, want 1", written.VersionMetadata.Version)
	}
	got, err := kv.Get(ctx, "workspaces/ws1/providers/openai")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Data["api_key"] != "sk-test-value" {
		t.Fatalf("read back %q", got.Data["api_key"])
	}
	// Check-and-set is on: a write that expects version 0 must now fail.
	if _, err := kv.Put(ctx, "workspaces/ws1/providers/openai", map[string]any{"api_key": "x"}, vaultapi.WithCheckAndSet(0)); err == nil {
		t.Fatal("put with cas=0 over an existing secret succeeded")
	}
}

func TestPostgresRunsSQL(t *testing.T) {
	ctx := context.Background()
	pool := testenv.NewPool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES (1, 'one'), (2, 'two')`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var n int
	var names string
	if err := pool.QueryRow(ctx, `SELECT count(*), string_agg(name, ',' ORDER BY id) FROM t`).Scan(&n, &names); err != nil {
		t.Fatalf("select: %v", err)
	}
	if n != 2 || names != "one,two" {
		t.Fatalf("got %d rows %q", n, names)
	}
}

func TestEachTestGetsItsOwnDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := testenv.NewPool(t), testenv.NewPool(t)
	if _, err := a.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var exists bool
	if err := b.QueryRow(ctx, `SELECT to_regclass('only_in_a') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatalf("query: %v", err)
	}
	if exists {
		t.Fatal("a table created in one test database is visible in another")
	}
}

func TestTerraformCompatibleCLIsAreBuilt(t *testing.T) {
	for _, tc := range []struct{ tool, want string }{
		{"terraform", "Terraform v1.5.7"},
		{"tofu", "OpenTofu v1.12.6"},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			bin, err := devenv.FindTool(tc.tool)
			if err != nil {
				t.Fatal(err)
			}
			// A CLI configuration of our own: the machine's may point
			// at a file that does not exist, which adds a warning.
			cliConfig := filepath.Join(t.TempDir(), "cli.tfrc")
			if err := os.WriteFile(cliConfig, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "version")
			cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "CHECKPOINT_DISABLE=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s version: %v: %s", bin, err, out)
			}
			if first, _, _ := strings.Cut(string(out), "\n"); !strings.HasPrefix(first, tc.want) {
				t.Fatalf("%s version says %q, want %q", bin, first, tc.want)
			}
		})
	}
}
