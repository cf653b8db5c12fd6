package handlers_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/providercheck"
	"github.com/keybroker/keybroker/vault"
)

// browser starts headless Chromium (Debian's, installed by
// scripts/tools.sh) for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH: install it with make tools (scripts/tools.sh chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1200, 900),
	}
	// Start the browser now, with a second chance: a start can fail when
	// the machine is busy.
	var lastErr error
	for range 3 {
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, chromedp.UserDataDir(t.TempDir()))...)
		ctx, cancel := chromedp.NewContext(actx)
		if lastErr = chromedp.Do(ctx); lastErr == nil {
			t.Cleanup(func() { cancel(); cancelAlloc() })
			ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
			t.Cleanup(cancelTimeout)
			return ctx
		}
		cancel()
		cancelAlloc()
		time.Sleep(time.Second)
	}
	t.Fatalf("start chromium: %v", lastErr)
	return nil
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.AtLeast(0)))
		if strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s says %q, want it to contain %q", sel, s, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pageHolds reports whether the DOM (with input values) or sessionStorage
// holds s.
func pageHolds(t *testing.T, ctx context.Context, s string) bool {
	t.Helper()
	dom := eval[string](t, ctx, `document.documentElement.outerHTML + [...document.querySelectorAll('input')].map(i => i.value).join(' ')`)
	session := eval[string](t, ctx, `JSON.stringify(Object.assign({}, sessionStorage))`)
	return strings.Contains(dom, s) || strings.Contains(session, s)
}

// signIn opens the page afresh (sessionStorage cleared), signs in with the
// named token and waits for the section that follows.
func signIn(t *testing.T, ctx context.Context, a *api, token, section string) {
	t.Helper()
	run(t, ctx, "open the page", chromedp.Navigate(a.srv.URL+"/ui/"))
	eval[bool](t, ctx, `sessionStorage.clear(), true`)
	run(t, ctx, "sign in as "+token,
		chromedp.Navigate(a.srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), a.tokens[token]),
		chromedp.Click(chromedp.CSS(`#signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID(section)))
}

func TestAdminPageInARealBrowser(t *testing.T) {
	provider, accept := openAIStandIn(t)
	checker, err := providercheck.New(providercheck.Config{BaseURLs: map[string]string{"openai": provider.URL}})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIWith(t, handlers.ModeAll, checker)
	hosted := openaiKey(t)
	if _, err := a.ground.keys.SetKey(context.Background(), broker.SetKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.HostedKey("openai", broker.DefaultKeyID), APIKey: hosted}); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	k1, k2 := openaiKey(t), openaiKey(t)
	masked := func(k string) string { return k[:6] + "..." + k[len(k)-4:] }
	row := `tr[data-provider="openai"]`

	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, "#who", "role admin")
	waitText(t, ctx, row+` td[data-status="openai"]`, "Using hosted key")
	waitText(t, ctx, "#fallback-text", "billed at hosted rates")
	// The platform has no hosted Anthropic key: the page says calls fail.
	waitText(t, ctx, `td[data-status="anthropic"]`, "the platform has no hosted key")

	// Fail closed, and back: the page says what calls will do.
	run(t, ctx, "turn the hosted fallback off", chromedp.Click(chromedp.ID("fallback-toggle")))
	waitText(t, ctx, "#fallback-text", "fail")
	waitText(t, ctx, row+` td[data-status="openai"]`, "calls fail (hosted fallback is off)")
	if got, err := a.ground.keys.GetSettings(context.Background(), "ws1"); err != nil || got.HostedFallback {
		t.Fatalf("settings after the toggle: %+v %v", got, err)
	}
	run(t, ctx, "turn it on again", chromedp.Click(chromedp.ID("fallback-toggle")))
	waitText(t, ctx, "#fallback-text", "billed at hosted rates")
	waitText(t, ctx, row+` td[data-status="openai"]`, "billed at the platform's hosted rates")

	// A bad key: the API's message next to the field, nothing saved.
	run(t, ctx, "set a bad key",
		chromedp.SendKeys(chromedp.ID("key-openai"), "sk-this has spaces in it"),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	waitText(t, ctx, "#err-openai", "whitespace")

	run(t, ctx, "add a key",
		chromedp.SendKeys(chromedp.ID("key-openai"), k1),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))
	waitText(t, ctx, row+` td[data-status="openai"]`, "Calls use the workspace's own keys (1 usable key; BYOK, not billed")
	if pageHolds(t, ctx, k1) {
		t.Fatal("the plaintext key is in the DOM or sessionStorage after save")
	}

	run(t, ctx, "reload", chromedp.Reload())
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))

	run(t, ctx, "rotate",
		chromedp.SendKeys(chromedp.ID("rotate-openai-default"), k2),
		chromedp.Click(chromedp.CSS(`form[data-rotate="openai/default"] button[type=submit]`)))
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k2))
	waitText(t, ctx, `li[data-key="openai/default"]`, "version 2")

	// A second key of the pool, named, served later; then moved before the
	// first, disabled, and the first renamed.
	backup := openaiKey(t)
	run(t, ctx, "add a second key",
		chromedp.SendKeys(chromedp.ID("key-openai"), backup),
		chromedp.SendKeys(chromedp.ID("newname-openai"), "Backup"),
		chromedp.SetValue(chromedp.ID("priority-openai"), "200"),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	waitText(t, ctx, `ul[data-pool="openai"] > li:nth-child(2)`, "Backup")
	waitText(t, ctx, `ul[data-pool="openai"] > li:nth-child(2)`, "priority 200")
	waitText(t, ctx, row+` td[data-status="openai"]`, "2 usable keys")
	run(t, ctx, "serve the backup first", chromedp.Click(chromedp.CSS(`ul[data-pool="openai"] > li:nth-child(2) button[data-up]`)))
	waitText(t, ctx, `ul[data-pool="openai"] > li:nth-child(1)`, "Backup")
	waitText(t, ctx, `ul[data-pool="openai"] > li:nth-child(1)`, "priority 99")
	run(t, ctx, "disable the backup", chromedp.Click(chromedp.CSS(`ul[data-pool="openai"] > li:nth-child(1) button[data-toggle-state]`)))
	waitText(t, ctx, `ul[data-pool="openai"] > li:nth-child(1)`, "disabled")
	waitText(t, ctx, row+` td[data-status="openai"]`, "1 usable key")
	run(t, ctx, "rename the first key",
		chromedp.SetValue(chromedp.ID("name-openai-default"), "Main"),
		chromedp.Click(chromedp.CSS(`form[data-rename="openai/default"] button[type=submit]`)))
	waitText(t, ctx, `strong[data-name="openai/default"]`, "Main")
	if r, err := a.ground.keys.Resolve(context.Background(), broker.ResolveRequest{Workspace: "ws1", Provider: "openai"}); err != nil || r.KeyID != "default" {
		t.Fatalf("resolve with the backup disabled: %v %v", r, err)
	}

	run(t, ctx, "roll back",
		chromedp.Click(chromedp.CSS(`button[data-history="openai/default"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-rollback="1"]`)),
		chromedp.Click(chromedp.CSS(`button[data-rollback="1"]`)))
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))
	waitText(t, ctx, `li[data-key="openai/default"]`, "version 3")
	waitText(t, ctx, "#audit", "key.rollback openai/default")
	waitText(t, ctx, `span[data-health="openai/default"]`, "healthy")

	// Test key: the provider's verdict, and the badge follows it.
	run(t, ctx, "test a key the provider refuses", chromedp.Click(chromedp.CSS(`button[data-test="openai/default"]`)))
	waitText(t, ctx, `[data-test-result="openai/default"]`, "OpenAI refused the key (answered 401); the key is failing")
	waitText(t, ctx, `span[data-health="openai/default"]`, "failing: refused by the provider at")
	accept(k1)
	run(t, ctx, "test it again once the provider accepts it", chromedp.Click(chromedp.CSS(`button[data-test="openai/default"]`)))
	waitText(t, ctx, `[data-test-result="openai/default"]`, "OpenAI accepted the key (answered 200); the key is healthy")
	waitText(t, ctx, `span[data-health="openai/default"]`, "healthy")
	waitText(t, ctx, "#audit", "key.update openai/")

	var png []byte
	screenshots := filepath.Join("..", "ui-screenshots")
	if err := os.MkdirAll(screenshots, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(screenshots, "workspace.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	run(t, ctx, "delete",
		chromedp.Click(chromedp.CSS(`button[data-delete="openai/default"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-confirm-delete="openai/default"]`)))
	waitText(t, ctx, `[data-usage="openai/default"]`, "never used")
	waitText(t, ctx, `li[data-key="openai/default"] .warning`, "the platform's hosted key (billed)")
	waitText(t, ctx, `li[data-key="openai/default"] .warning`, "the older versions stay in Vault")
	run(t, ctx, "confirm delete, destroying every version",
		chromedp.Click(chromedp.CSS(`input[data-destroy="openai/default"]`)),
		chromedp.Click(chromedp.CSS(`button[data-confirm-delete="openai/default"]`)))
	// The disabled backup stays; nothing of the workspace may serve.
	waitText(t, ctx, row+` td[data-status="openai"]`, "Using hosted key")
	if _, err := a.kv.Metadata(context.Background(), broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath()); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after a delete with destroy, Vault still holds the key's versions: %v", err)
	}
	for _, k := range []string{k1, k2, backup, hosted} {
		if pageHolds(t, ctx, k) {
			t.Fatal("a plaintext key is in the DOM or sessionStorage")
		}
	}

	// An organization's admin manages its pools and sees who inherits them;
	// the workspace's page then says its calls use them.
	orgKey := openaiKey(t)
	signIn(t, ctx, a, "org-admin", "workspace-section")
	waitText(t, ctx, "#workspace-title", "Organization acme")
	waitText(t, ctx, "#linked", "No workspace is linked")
	run(t, ctx, "add an organization key",
		chromedp.SendKeys(chromedp.ID("key-openai"), orgKey),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(orgKey))
	if r := a.call("operator", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("acme")}); r.status != 200 {
		t.Fatalf("link: %d %s", r.status, r.body)
	}
	run(t, ctx, "reload", chromedp.Reload())
	waitText(t, ctx, `#linked li[data-linked="ws1"]`, "uses these keys")
	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, row+` td[data-status="openai"]`, "Calls use organization acme's keys (1 usable key; BYOK, not billed")
	waitText(t, ctx, "#inherit-text", "use acme's keys")
	if pageHolds(t, ctx, orgKey) {
		t.Fatal("the organization's key is in the DOM")
	}

	// A reader sees everything but the controls that would change it.
	signIn(t, ctx, a, "reader", "workspace-section")
	waitText(t, ctx, "#who", "role reader")
	waitText(t, ctx, row, "Calls use organization acme's keys")
	controls := eval[int](t, ctx, `document.querySelectorAll('#keys input, #keys button, #keys form').length`)
	if controls != 0 {
		t.Fatalf("a reader sees %d edit controls", controls)
	}

	// A 390 px phone: nothing scrolls sideways.
	run(t, ctx, "a phone's viewport", chromedp.EmulateViewport(390, 844), chromedp.Reload(),
		chromedp.WaitVisible(chromedp.ID("workspace-section")))
	waitText(t, ctx, row, "Calls use organization acme's keys")
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Fatalf("at 390 px the page is %d px wide: it scrolls sideways", w)
	}
	run(t, ctx, "back to a desktop viewport", chromedp.EmulateViewport(1200, 900))

	// An operator finds scopes by search; the URL names the open one, so a
	// reload lands there; an invalid id says so and leaves nothing of the
	// previous scope on screen.
	signIn(t, ctx, a, "operator", "workspaces-section")
	waitText(t, ctx, "#workspace-list", "Workspace ws1")
	waitText(t, ctx, "#workspace-list", "Organization acme")
	run(t, ctx, "search", chromedp.SendKeys(chromedp.ID("scope-search"), "acm"),
		chromedp.WaitVisible(chromedp.CSS(`#workspace-list[data-query="acm"] button[data-scope="organization/acme"]`)))
	if n := eval[int](t, ctx, `document.querySelectorAll('#workspace-list button').length`); n != 1 {
		t.Fatalf("the search for acm shows %d scopes", n)
	}
	run(t, ctx, "open the organization", chromedp.Click(chromedp.CSS(`button[data-scope="organization/acme"]`)))
	waitText(t, ctx, "#workspace-title", "Organization acme")
	if h := eval[string](t, ctx, `location.hash`); h != "#/organization/acme" {
		t.Fatalf("the URL names %q", h)
	}
	run(t, ctx, "reload", chromedp.Reload())
	waitText(t, ctx, "#workspace-title", "Organization acme")
	// The operator's view, with every control, on a phone.
	run(t, ctx, "a phone's viewport again", chromedp.EmulateViewport(390, 844), chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`form[data-form="openai"]`)))
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Fatalf("at 390 px the operator's page is %d px wide: it scrolls sideways", w)
	}
	png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(screenshots, "organization-phone.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "a desktop viewport", chromedp.EmulateViewport(1200, 900))
	run(t, ctx, "open an invalid workspace id",
		chromedp.SendKeys(chromedp.ID("workspace-id"), "Bad/Id"),
		chromedp.Click(chromedp.CSS(`#open-workspace button[type=submit]`)))
	waitText(t, ctx, "#open-error", "is not a workspace id")
	if visible := eval[bool](t, ctx, `!document.getElementById('workspace-section').hidden`); visible {
		t.Fatal("the previous scope's controls stay on screen after an invalid id")
	}
}

func TestAdminPageSecurityHeaders(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		resp, err := http.Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
			strings.Contains(h.Get("Content-Security-Policy"), "unsafe-inline") || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, h)
		}
	}
	// No inline script in the page.
	resp, err := http.Get(a.srv.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	if strings.Contains(b.String(), "<script>") || strings.Contains(b.String(), "onclick=") {
		t.Fatal("the page has inline script")
	}
	// HEAD is answered as GET is, without a body; the icon is served, and
	// /favicon.ico leads to it.
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/favicon.svg"} {
		req, _ := http.NewRequest(http.MethodHead, a.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("Content-Type") == "" {
			t.Fatalf("HEAD %s: %d %v (%d bytes)", path, resp.StatusCode, resp.Header, len(body))
		}
	}
	resp, err = http.Get(a.srv.URL + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("/favicon.ico: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The resolver-only server has no admin page.
	r := newAPI(t, handlers.ModeResolver)
	if resp, err := http.Get(r.srv.URL + "/ui/"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("resolver mode serves the page: %v %v", resp.StatusCode, err)
	}
}
