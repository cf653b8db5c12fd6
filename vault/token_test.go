package vault

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// appRoleFixture sets up, on the shared Vault, a KV v2 mount with one
// secret, a policy that may read it, and an AppRole role holding that
// policy with the given token TTLs. It returns a client logged in with the
// role, and the mount.
func appRoleFixture(t *testing.T, tokenTTL, tokenMaxTTL string) (*Client, string) {
	t.Helper()
	ctx := context.Background()
	root := testenv.VaultClient(t)
	mount := testenv.NewKVMount(t)
	if _, err := root.KVv2(mount).Put(ctx, "workspaces/ws/providers/openai", map[string]any{"api_key": "sk-approle-test-0000000"}); err != nil {
		t.Fatal(err)
	}
	id := testenv.RandomID(t)
	authPath := "approle-" + id
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, authPath, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DisableAuthWithContext(context.Background(), authPath) })
	policy := "reader-" + id
	if err := root.Sys().PutPolicyWithContext(ctx, policy, `path "`+mount+`/data/workspaces/+/providers/+" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	rolePath := "auth/" + authPath + "/role/reader"
	if _, err := root.Logical().WriteWithContext(ctx, rolePath, map[string]any{
		"token_policies": policy, "token_ttl": tokenTTL, "token_max_ttl": tokenMaxTTL,
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	method, err := AppRole(AppRoleConfig{MountPath: authPath, RoleID: rid.Data["role_id"].(string), SecretID: sid.Data["secret_id"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := testenv.Vault(t)
	c, err := New(Config{Address: addr, Auth: method})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.Start(runCtx)
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := c.WaitForToken(waitCtx); err != nil {
		t.Fatal(err)
	}
	return c, mount
}

func TestShortLivedTokensKeepReadsWorkingAcrossMaxTTLs(t *testing.T) {
	c, mount := appRoleFixture(t, "3s", "6s")
	kv := c.KV(mount)
	ctx := context.Background()
	// Three max-TTLs and a bit: the token must be renewed and replaced by
	// new logins, without a single failed read.
	deadline := time.Now().Add(20 * time.Second)
	reads := 0
	for time.Now().Before(deadline) {
		if s, err := kv.Get(ctx, "workspaces/ws/providers/openai"); err != nil || s.Data["api_key"] != "sk-approle-test-0000000" {
			t.Fatalf("read %d failed: %v", reads, err)
		}
		reads++
		time.Sleep(100 * time.Millisecond)
	}
	logins, loginErrors, renewals, _ := c.TokenStats()
	t.Logf("%d reads, %d logins, %d renewals, %d failed logins", reads, logins, renewals, loginErrors)
	// One login per max-TTL (6s) over 20s, plus the first: 4; allow for a
	// login a request triggered at an expiry edge, but never one per read.
	if logins < 3 || logins > 8 {
		t.Fatalf("%d logins over %d reads in 20s with a 6s max TTL; want 3 to 8", logins, reads)
	}
	if renewals == 0 {
		t.Fatal("the token was never renewed")
	}
}

func TestRevokedTokenLeadsToExactlyOneRelogin(t *testing.T) {
	c, mount := appRoleFixture(t, "1h", "2h")
	kv := c.KV(mount)
	ctx := context.Background()
	before, _, _, _ := c.TokenStats()

	// Reads run all along, before and after the revocation.
	var reads, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := kv.Get(ctx, "workspaces/ws/providers/openai"); err != nil {
					failures.Add(1)
					t.Logf("read failed: %v", err)
				}
				reads.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	root := testenv.VaultClient(t)
	if err := root.Auth().Token().RevokeOrphanWithContext(ctx, c.api.Token()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	after, _, _, _ := c.TokenStats()
	t.Logf("%d reads by 20 goroutines across a revocation: %d failed, %d logins", reads.Load(), failures.Load(), after-before)
	if failures.Load() != 0 {
		t.Fatalf("%d reads failed across the revocation", failures.Load())
	}
	if after != before+1 {
		t.Fatalf("%d logins after revocation, want exactly 1", after-before)
	}
}

func TestPolicyDenialDoesNotLogIn(t *testing.T) {
	c, mount := appRoleFixture(t, "1h", "2h")
	before, _, _, _ := c.TokenStats()
	// The role may read data/, not metadata/.
	_, err := c.KV(mount).Metadata(context.Background(), "workspaces/ws/providers/openai")
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("metadata read outside the policy: %v, want ErrForbidden", err)
	}
	if after, _, _, _ := c.TokenStats(); after != before {
		t.Fatalf("a policy denial caused %d logins", after-before)
	}
}

func TestBackoffGrowsWithJitterAndCaps(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 30: loginBackoffMax} {
		for range 20 {
			d := backoffDelay(failures)
			if d < want/2 || d > want {
				t.Fatalf("backoff after %d failures: %v, want within [%v, %v]", failures, d, want/2, want)
			}
		}
	}
}
