package handlers_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/client"
)

// ownKeysGround is newSharedKeyAPI with two keys of ws-c's own (ws-c
// belongs to no organization, so what serves it after them is the
// platform's hosted key, billed): main (priority 10) and backup (20),
// both accepted by the provider. refusedUser is the "user" of the calls
// the provider refuses.
func ownKeysGround(t *testing.T, refusedUser string) (a *api, provider *sharedKeyProvider, main, backup, hostedKey string) {
	t.Helper()
	provider = newSharedKeyProvider(t, refusedUser)
	a, _, hostedKey = newSharedKeyAPI(t, provider)
	main, backup = openaiKey(t), openaiKey(t)
	for _, k := range []struct {
		id       string
		key      string
		priority int
	}{{"main", main, 10}, {"backup", backup, 20}} {
		provider.accept(k.key)
		if r := a.call("operator", "POST", "/v1/workspaces/ws-c/providers/openai/keys",
			client.AddKeyRequest{KeyID: k.id, APIKey: k.key, Priority: &k.priority}); r.status != http.StatusCreated {
			t.Fatalf("add ws-c's %s: %d %s", k.id, r.status, r.body)
		}
	}
	if _, res := a.resolveAs(t, "ws-c"); res.KeyID != "main" || res.Scope != "workspace" {
		t.Fatalf("ws-c before any call: %+v", res)
	}
	return a, provider, main, backup, hostedKey
}

// mintSandbox mints a proxy token for one of ws's sandboxes.
func (a *api) mintSandbox(t *testing.T, ws string) string {
	t.Helper()
	r := a.call(ws, "POST", "/v1/proxy-tokens", client.ProxyTokenRequest{Workspace: ws, Providers: []string{"openai"}, TTLSeconds: 600})
	var tok client.ProxyToken
	r.decode(t, &tok)
	if r.status != http.StatusCreated {
		t.Fatalf("mint a proxy token for %s: %d %s", ws, r.status, r.body)
	}
	return remember(tok.Token)
}

const (
	mainKeyPath   = "/v1/workspaces/ws-c/providers/openai/keys/main"
	backupKeyPath = "/v1/workspaces/ws-c/providers/openai/keys/backup"
)

// TestASandboxsRefusedCallsLeaveItsWorkspacesKeysServingTheOthers: issue
// 28, review finding M2. ws-c has its own keys main and backup. The
// provider answers 401 to every call of one sandbox (as OpenAI answers a
// restricted key's call to an endpoint outside its scopes): the proxy
// reports main's refusal, retries with backup, and reports backup's. The
// refusals are the provider's word about those calls, not about the keys:
// keybroker's own checks find both keys accepted, so neither fails; ws-c
// still resolves main (never the billed hosted key), and its other
// sandboxes are served by main. Only the sandbox that was refused stops
// being sent to them, for a cooldown.
func TestASandboxsRefusedCallsLeaveItsWorkspacesKeysServingTheOthers(t *testing.T) {
	a, provider, main, backup, hostedKey := ownKeysGround(t, "restricted-endpoint")
	sandbox := a.mintSandbox(t, "ws-c")
	status, h := proxied(t, a, sandbox, "restricted-endpoint")
	if status != http.StatusUnauthorized || h.Get("X-Keybroker-Key-Id") != "backup" {
		t.Fatalf("the refused call: %d served by %q, want the provider's 401 after the retry with backup", status, h.Get("X-Keybroker-Key-Id"))
	}
	if provider.refusedWith(main) != 1 || provider.refusedWith(backup) != 1 {
		t.Fatalf("the provider refused %d calls with main and %d with backup, want 1 and 1 (the first try and the retry)",
			provider.refusedWith(main), provider.refusedWith(backup))
	}
	if err := a.ground.keys.WaitVerifications(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{mainKeyPath, backupKeyPath} {
		if h := a.healthOf(t, path); h != "healthy" {
			t.Fatalf("%s after one sandbox's refused call: %s, want healthy", path, h)
		}
	}
	// The workspace's other callers: its resolver token, another sandbox.
	for range 3 {
		if _, res := a.resolveAs(t, "ws-c"); res.Scope != "workspace" || res.KeyID != "main" || res.APIKey != main || !res.IsBYOK {
			t.Fatalf("ws-c's resolve after a sandbox's refused call: %+v, want its own key main", res)
		}
	}
	other := a.mintSandbox(t, "ws-c")
	for range 3 {
		status, h := proxied(t, a, other, "fine")
		if status != http.StatusOK || h.Get("X-Keybroker-Scope") != "workspace" || h.Get("X-Keybroker-Key-Id") != "main" || h.Get("X-Keybroker-Byok") != "true" {
			t.Fatalf("another sandbox of ws-c: %d, scope %q key %q", status, h.Get("X-Keybroker-Scope"), h.Get("X-Keybroker-Key-Id"))
		}
	}
	if provider.servedWith(main) != 3 {
		t.Fatalf("main served %d completions, want 3", provider.servedWith(main))
	}
	// The refused sandbox itself moves on along its workspace's chain for
	// the cooldown (here the hosted key: ws-c allows the fallback), as it
	// would if both keys were failing: its calls are not sent to the keys
	// that refused it again and again.
	if status, h := proxied(t, a, sandbox, "fine"); status != http.StatusOK || h.Get("X-Keybroker-Scope") != "hosted" {
		t.Fatalf("the refused sandbox's next call: %d, scope %q, want the next of its chain", status, h.Get("X-Keybroker-Scope"))
	}
	if provider.servedWith(hostedKey) != 1 || provider.refusedWith(main) != 1 || provider.refusedWith(backup) != 1 {
		t.Fatal("the refused sandbox's next call reached a key of ws-c")
	}
	// keybroker's checks are in ws-c's trail, naming the sandbox's token;
	// no health change is.
	var page client.AuditPage
	a.call("operator", "GET", "/v1/workspaces/ws-c/audit", nil).decode(t, &page)
	var got []string
	for _, ev := range page.Events {
		switch ev.Action {
		case "key.health":
			t.Fatalf("a health change in ws-c's trail: %+v", ev)
		case "key.test":
			got = append(got, ev.KeyID+":"+ev.Outcome+":"+ev.Actor)
			if !strings.Contains(ev.Detail, "proxied call") || !strings.Contains(ev.Detail, "ws-c") {
				t.Fatalf("a check's detail: %q", ev.Detail)
			}
		}
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, " "), "main:accepted:keybroker:verify") ||
		!strings.Contains(strings.Join(got, " "), "backup:accepted:keybroker:verify") {
		t.Fatalf("ws-c's checks: %v, want one accepted check of each key", got)
	}
}

// TestAProxiedRefusalTheProviderConfirmsFailsTheKeyForEveryone: main is
// revoked at the provider. A sandbox's call is refused with main and
// served by backup (the retry); keybroker checks main with the provider,
// which refuses it too: main is failing for everyone, every caller of
// ws-c is served backup, and the check is in ws-c's trail.
func TestAProxiedRefusalTheProviderConfirmsFailsTheKeyForEveryone(t *testing.T) {
	a, provider, main, backup, _ := ownKeysGround(t, "")
	provider.revoke(main)
	sandbox := a.mintSandbox(t, "ws-c")
	if status, h := proxied(t, a, sandbox, "fine"); status != http.StatusOK || h.Get("X-Keybroker-Key-Id") != "backup" {
		t.Fatalf("a call refused with main: %d, key %q, want served by backup on the retry", status, h.Get("X-Keybroker-Key-Id"))
	}
	if err := a.ground.keys.WaitVerifications(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := a.healthOf(t, mainKeyPath); h != "failing" {
		t.Fatalf("main, refused to keybroker's own check: %s, want failing", h)
	}
	if h := a.healthOf(t, backupKeyPath); h != "healthy" {
		t.Fatalf("backup: %s", h)
	}
	if _, res := a.resolveAs(t, "ws-c"); res.KeyID != "backup" || res.APIKey != backup {
		t.Fatalf("ws-c's resolve once main fails: %+v, want backup", res)
	}
	if status, h := proxied(t, a, a.mintSandbox(t, "ws-c"), "fine"); status != http.StatusOK || h.Get("X-Keybroker-Key-Id") != "backup" {
		t.Fatalf("another sandbox once main fails: %d, key %q", status, h.Get("X-Keybroker-Key-Id"))
	}
	if provider.refusedWith(main) != 1 {
		t.Fatalf("main was tried %d times, want once", provider.refusedWith(main))
	}
	var page client.AuditPage
	a.call("operator", "GET", "/v1/workspaces/ws-c/audit", nil).decode(t, &page)
	var got []string
	for _, ev := range page.Events {
		if ev.Action == "key.test" || ev.Action == "key.health" {
			got = append(got, ev.Action+":"+ev.KeyID+":"+ev.Outcome+":"+ev.Actor)
		}
	}
	if strings.Join(got, " ") != "key.test:main:refused:keybroker:verify" {
		t.Fatalf("ws-c's trail: %v", got)
	}
}
