package main

import (
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"strings"
	"testing"
)

func TestServeRefusesAnUnknownAccessLogSetting(t *testing.T) {
	serve := keybroker("serve", "--access-log", "verbose")
	out, err := serve.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with --access-log verbose:\n%s", out)
	}
	if !strings.Contains(string(out), `--access-log: unknown access log "verbose" (all, errors)`) {
		t.Fatalf("unclear error:\n%s", out)
	}
}

func TestServeRefusesABadEnvironmentValue(t *testing.T) {
	serve := keybroker("serve")
	serve.Env = append(serve.Env, "KEYBROKER_CACHE_TTL=thirty")
	out, err := serve.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with KEYBROKER_CACHE_TTL=thirty:\n%s", out)
	}
	if !strings.Contains(string(out), `KEYBROKER_CACHE_TTL="thirty": not a valid --cache-ttl`) {
		t.Fatalf("unclear error:\n%s", out)
	}
}

func TestServeRefusesABadTrustedProxy(t *testing.T) {
	serve := keybroker("serve", "--trusted-proxies", "10.0.0.0/8,not-a-proxy")
	serve.Env = append(serve.Env, "DATABASE_URL=postgres://127.0.0.1:1/x", "KEYBROKER_FINGERPRINT_PEPPER=0123456789abcdef", "KEYBROKER_VAULT_AUTH=token", "KEYBROKER_ADMIN_TOKEN_KEYS="+kbtest.AdminTokenKeys, "KEYBROKER_RESOLVER_KEYS="+kbtest.ResolverKeys)
	out, err := serve.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with a bad trusted proxy:\n%s", out)
	}
	if !strings.Contains(string(out), `--trusted-proxies: "not-a-proxy" is neither an IP address nor a CIDR`) {
		t.Fatalf("unclear error:\n%s", out)
	}
}
