package vault_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/vaulttest"
	"github.com/keybroker/keybroker/vault"
)

// These tests change the process environment (t.Setenv): not parallel.

func TestInsecureTransportToVaultIsRefusedUnlessAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		cfg  vault.Config
		want string // "" when New must succeed; else part of its error
		mode string // Transport() when it succeeds
	}{
		{"http off loopback", nil, vault.Config{Address: "http://vault.example.internal:8200"}, "plain http to a host that is not loopback", ""},
		{"http off loopback, allowed", nil, vault.Config{Address: "http://vault.example.internal:8200", AllowPlaintext: true}, "", "http (plaintext, allowed)"},
		{"http on loopback", nil, vault.Config{Address: "http://127.0.0.1:8200"}, "", "http (loopback)"},
		{"https", nil, vault.Config{Address: "https://vault.example.internal:8200"}, "", "https (system CAs)"},
		{"skip verify", map[string]string{"VAULT_SKIP_VERIFY": "true"}, vault.Config{Address: "https://vault.example.internal:8200"}, "VAULT_SKIP_VERIFY is set", ""},
		{"skip verify, allowed", map[string]string{"VAULT_SKIP_VERIFY": "1"}, vault.Config{Address: "https://vault.example.internal:8200", AllowInsecureTLS: true}, "", "https WITHOUT certificate verification (allowed)"},
		{"agent address", map[string]string{"VAULT_AGENT_ADDR": "http://127.0.0.1:8100"}, vault.Config{Address: "https://vault.example.internal:8200"}, "VAULT_AGENT_ADDR is set", ""},
		{"not a URL", nil, vault.Config{Address: "vault.example.internal:8200"}, "not an http(s) URL", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VAULT_SKIP_VERIFY", "")
			t.Setenv("VAULT_AGENT_ADDR", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tc.cfg.Token = "hvs.static-dev-token"
			c, err := vault.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			case tc.want == "" && c.Transport() != tc.mode:
				t.Fatalf("transport %q, want %q", c.Transport(), tc.mode)
			}
			if err != nil && strings.Contains(err.Error(), "hvs.static-dev-token") {
				t.Fatal("the error quotes the token")
			}
		})
	}
}

// tokenRecorder remembers the Vault tokens requests carried.
type tokenRecorder struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (r *tokenRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if tok := req.Header.Get("X-Vault-Token"); tok != "" {
		r.mu.Lock()
		r.tokens[tok] = true
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestRevokeEndsTheLoggedInToken(t *testing.T) {
	ctx := context.Background()
	ids := vaulttest.Bootstrap(t, vaulttest.Options{})
	addr, rootToken := testenv.Vault(t)
	method, err := vault.AppRole(vault.AppRoleConfig{MountPath: ids.AppRoleMount, RoleID: ids.Result.RoleIDs[ids.ReaderRole],
		SecretID: vaulttest.SecretID(t, ids.AppRoleMount, ids.ReaderRole)})
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecorder{tokens: map[string]bool{}}
	c := vaulttest.Start(t, vault.Config{Address: addr, Auth: method, Transport: rec})
	if err := c.CheckToken(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	held := make([]string, 0, len(rec.tokens))
	for tok := range rec.tokens {
		held = append(held, tok)
	}
	rec.mu.Unlock()
	if len(held) != 1 {
		t.Fatalf("%d tokens seen, want the one login's", len(held))
	}
	if err := c.Revoke(ctx); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	root := testenv.NewVaultClient(t, addr, rootToken)
	for _, tok := range held {
		if _, err := root.Auth().Token().LookupWithContext(ctx, tok); err == nil {
			t.Fatal("the token is still valid after Revoke")
		}
	}
	// A static token belongs to whoever made it: Revoke leaves it alone.
	static, err := vault.New(vault.Config{Address: addr, Token: rootToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := static.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if err := static.CheckToken(ctx); err != nil {
		t.Fatalf("the static token after Revoke: %v", err)
	}
}
