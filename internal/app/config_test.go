package app

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// Test keyrings: a mode-all replica holds both.
const (
	testAdminKeys    = "t1:app-test-admin-token-key-0123456789abcdef"
	testResolverKeys = "t1:app-test-resolver-key-0123456789abcdef01"
)

func validConfig() Config {
	return Config{DatabaseURL: "postgres://keybroker@127.0.0.1:1/keybroker", VaultAddr: "http://127.0.0.1:1",
		VaultAuth: VaultAuthToken, VaultToken: "hvs.dev", Pepper: "0123456789abcdef0123",
		AdminTokenKeys: testAdminKeys, ResolverKeys: testResolverKeys}
}

func TestConfigRefusesWhatWouldWeakenTheSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no vault auth", func(c *Config) { c.VaultAuth = "" }, "no --vault-auth"},
		{"kubernetes, mode all, one JWT", func(c *Config) { c.VaultAuth = VaultAuthKubernetes }, "one service-account token"},
		{"cert without key", func(c *Config) { c.TLSCertFile = "/x.crt" }, "go together"},
		{"client CA without TLS", func(c *Config) { c.TLSClientCAFile = "/ca.pem" }, "needs --tls-cert-file"},
		// Each mode holds the signing keys it needs, and an admin replica
		// never the ones that make a key-reading token.
		{"mode all without the admin keys", func(c *Config) { c.AdminTokenKeys = "" }, "needs KEYBROKER_ADMIN_TOKEN_KEYS"},
		{"mode all without the resolver keys", func(c *Config) { c.ResolverKeys = "" }, "needs KEYBROKER_RESOLVER_KEYS"},
		{"an admin replica with the resolver keys", func(c *Config) { c.Mode = "admin" }, "--mode=admin must not hold KEYBROKER_RESOLVER_KEYS"},
		{"a proxy replica without the resolver keys", func(c *Config) { c.Mode, c.ResolverKeys = "proxy", "" }, "needs KEYBROKER_RESOLVER_KEYS"},
		{"a short signing key", func(c *Config) { c.AdminTokenKeys = "t1:short" }, "at least 32 bytes"},
		{"a resolver replica without the admin keys (it verifies links)", func(c *Config) { c.Mode, c.AdminTokenKeys = "resolver", "" }, "needs KEYBROKER_ADMIN_TOKEN_KEYS"},
	} {
		cfg := validConfig()
		tc.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	// Kubernetes with two projected tokens, or one mode per deployment, is fine.
	for _, edit := range []func(*Config){
		func(c *Config) {
			c.VaultAuth = VaultAuthKubernetes
			c.Writer.KubernetesJWT, c.Reader.KubernetesJWT = "/var/run/secrets/writer/token", "/var/run/secrets/reader/token"
		},
		func(c *Config) { c.VaultAuth, c.Mode = VaultAuthKubernetes, "resolver" },
		func(c *Config) { c.Mode, c.ResolverKeys = "admin", "" },
	} {
		cfg := validConfig()
		edit(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("mode %q, auth %q: %v", cfg.Mode, cfg.VaultAuth, err)
		}
	}
}

func TestPlainHTTPOffLoopbackIsRefusedAtStart(t *testing.T) {
	a, err := New(context.Background(), validConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "refusing to serve plain HTTP") || !strings.Contains(err.Error(), "--insecure-plaintext") {
		t.Fatalf("plain HTTP on 0.0.0.0: %v", err)
	}
	// The listener was closed: the port is free again.
	again, lerr := net.Listen("tcp", ln.Addr().String())
	if lerr != nil {
		t.Fatalf("the refused listener was left open: %v", lerr)
	}
	again.Close()
	for _, ok := range []string{"127.0.0.1:0", "[::1]:0"} {
		if err := validConfig().checkListener(mustAddr(t, ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	cfg := validConfig()
	cfg.InsecurePlaintext = true
	if err := cfg.checkListener(mustAddr(t, "0.0.0.0:0")); err != nil {
		t.Errorf("with --insecure-plaintext: %v", err)
	}
}

func mustAddr(t *testing.T, s string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestExposeLongLivedCredentialsNamesKnownProviders(t *testing.T) {
	cfg := validConfig()
	cfg.ExposeLongLivedCredentials = []string{"openai", "nosuch"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `--expose-long-lived-credentials: no provider "nosuch"`) {
		t.Fatalf("an unknown provider: %v", err)
	}
	cfg.ExposeLongLivedCredentials = []string{"openai"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.MaxMintsInFlight = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--max-mints-in-flight") {
		t.Fatalf("a negative bound: %v", err)
	}
}

func TestTheSignInSettingsGoTogether(t *testing.T) {
	cfg := validConfig()
	cfg.OIDCIssuer, cfg.OIDCClientID = "https://idp.example.com", "keybroker"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("half the sign-in settings: %v", err)
	}
	cfg.OIDCRedirectURL, cfg.OIDCRoleMap = "https://keybroker.example.com/auth/callback", "/etc/keybroker/roles.yaml"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.OIDCCLIClientID = "keybroker"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "another client") {
		t.Fatalf("the CLI's client is keybroker's: %v", err)
	}
	cfg.OIDCCLIClientID = "keybroker-cli"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	alone := validConfig()
	alone.OIDCCLIClientID = "keybroker-cli"
	if err := alone.Validate(); err == nil || !strings.Contains(err.Error(), "--oidc-cli-client-id needs") {
		t.Fatalf("the CLI's client without the sign-in settings: %v", err)
	}
}
