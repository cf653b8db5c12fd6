package vault_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/vault"
)

// readerToken mints a token carrying the reader policy, as a Vault Agent
// would after its own login.
func readerToken(t *testing.T, ids *vaulttest.Identities) string {
	t.Helper()
	addr, root := testenv.Vault(t)
	s, err := testenv.NewVaultClient(t, addr, root).Auth().Token().CreateWithContext(context.Background(), &vaultapi.TokenCreateRequest{
		Policies: []string{ids.ReaderRole}, TTL: "1h", NoDefaultPolicy: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.Auth.ClientToken
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as an agent's sink does: atomically
		t.Fatal(err)
	}
}

func TestTokenFileRotationWhileServing(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{})
	if _, err := ids.Root.KV(ids.Mount).Put(ctx, "hosted/providers/openai", map[string]string{"api_key": "sk-hosted-tokenfile-0000"}, 0); err != nil {
		t.Fatal(err)
	}
	addr, root := testenv.Vault(t)
	file := filepath.Join(t.TempDir(), "vault-token")
	writeFile(t, file, readerToken(t, ids))
	method, err := vault.TokenFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := vaulttest.Start(t, vault.Config{Address: addr, Auth: method})
	kv := c.KV(ids.Mount)

	var failures atomic.Int64
	var reads atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := kv.Get(ctx, "hosted/providers/openai"); err != nil {
				failures.Add(1)
				t.Logf("read failed: %v", err)
			}
			reads.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	rc := testenv.NewVaultClient(t, addr, root)
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		old, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// The agent writes a new token, and the old one dies.
		writeFile(t, file, readerToken(t, ids))
		if err := rc.Auth().Token().RevokeOrphanWithContext(ctx, strings.TrimSpace(string(old))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d reads failed across three token rotations", failures.Load(), reads.Load())
	}
	if logins, _, _, _ := c.TokenStats(); logins != 4 {
		t.Fatalf("%d file reads (logins), want 4: the first and one per rotation", logins)
	}
}
