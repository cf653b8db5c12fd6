package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

// axeScript is axe-core's browser build, installed by scripts/tools.sh axe
// (KEYBROKER_AXE_JS names another copy).
func axeScript(t *testing.T) string {
	t.Helper()
	path := os.Getenv("KEYBROKER_AXE_JS")
	if path == "" {
		tools := os.Getenv("KEYBROKER_TOOLS_DIR")
		if tools == "" {
			home, _ := os.UserHomeDir()
			tools = filepath.Join(home, ".cache", "keybroker", "tools")
		}
		path = filepath.Join(tools, "npm", "node_modules", "axe-core", "axe.min.js")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("axe-core is not installed (%v): run scripts/tools.sh axe", err)
	}
	return string(b)
}

// axeCheck runs axe-core (WCAG 2.1 A and AA rules and best practices) on
// the page as it is and fails on any serious or critical violation.
func axeCheck(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	if !eval[bool](t, ctx, `typeof axe !== 'undefined'`) {
		eval[bool](t, ctx, axeScript(t)+"\n;true")
	}
	found, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, {
		runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}, resultTypes: ['violations'],
	}).then(r => [String(r.passes.length + r.violations.length)].concat(r.violations
		.filter(v => v.impact === 'serious' || v.impact === 'critical')
		.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join('; '))))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe-core on %s: %v", view, err)
	}
	if len(found) == 0 || found[0] == "0" {
		t.Fatalf("axe-core ran no rule on %s", view)
	}
	if len(found) > 1 {
		t.Fatalf("axe-core finds %d serious or critical violations on %s:\n%s", len(found)-1, view, strings.Join(found[1:], "\n"))
	}
}

// colorScheme makes the page see prefers-color-scheme: scheme.
func colorScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		t.Fatalf("emulate the %s colour scheme: %v", scheme, err)
	}
	if got := eval[bool](t, ctx, `matchMedia('(prefers-color-scheme: `+scheme+`)').matches`); !got {
		t.Fatalf("the page does not see the %s colour scheme", scheme)
	}
}

// An operator's tokens view: create (the token shown once, copied to the
// clipboard, gone when dismissed), list, revoke with a confirmation;
// actors named by their token's description in the workspace's page.
func TestAdminPageTokensInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	ctx := browser(t)
	signIn(t, ctx, a, "operator", "workspaces-section")
	run(t, ctx, "open the tokens view", chromedp.Click(chromedp.ID("nav-tokens")), chromedp.WaitVisible(chromedp.ID("tokens-section")))
	if h := eval[string](t, ctx, `location.hash`); h != "#/tokens" {
		t.Fatalf("the URL names %q", h)
	}
	waitText(t, ctx, "#token-list", a.ids["admin"])
	// An operator cannot revoke the token it is signed in with here.
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-revoke="`+a.ids["operator"]+`"]').length`); n != 0 {
		t.Fatal("the page offers to revoke the token it is signed in with")
	}

	// Bad input: the API's message, nothing created.
	before := len(mustTokens(t, a))
	run(t, ctx, "open the token form", chromedp.Click(chromedp.ID("token-new")), chromedp.WaitVisible(chromedp.ID("token-description")))
	run(t, ctx, "create an admin of nothing",
		chromedp.SendKeys(chromedp.ID("token-description"), "nobody's admin"),
		chromedp.SetValue(chromedp.ID("token-role"), "admin"),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)))
	waitText(t, ctx, "#token-error", "workspace")
	if n := len(mustTokens(t, a)); n != before {
		t.Fatalf("a refused create made a token: %d then %d", before, n)
	}

	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "clipboard-read"}, Setting: cdpbrowser.PermissionSettingGranted, Origin: a.srv.URL}); err != nil {
		t.Fatalf("grant clipboard-read: %v", err)
	}
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "clipboard-write"}, Setting: cdpbrowser.PermissionSettingGranted, Origin: a.srv.URL}); err != nil {
		t.Fatalf("grant clipboard-write: %v", err)
	}
	run(t, ctx, "create a token",
		chromedp.SetValue(chromedp.ID("token-description"), "CI deploy"),
		chromedp.SetValue(chromedp.ID("token-role"), "admin"),
		chromedp.SendKeys(chromedp.ID("token-workspaces"), "ws1"),
		chromedp.SendKeys(chromedp.ID("token-days"), "7"),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("token-created")))
	token := eval[string](t, ctx, `document.getElementById('new-token').textContent`)
	remember(token)
	if !strings.HasPrefix(token, "kbt_") {
		t.Fatalf("the page shows %q as the new token", "<redacted>")
	}
	waitToast(t, ctx, "Copy the token now")
	run(t, ctx, "copy it", chromedp.Click(chromedp.ID("copy-token")))
	waitToast(t, ctx, "Copied the token to the clipboard")
	if clip, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise)); err != nil || clip != token {
		t.Fatalf("the clipboard does not hold the new token (%v)", err)
	}
	axeCheck(t, ctx, "the tokens view with a new token")
	// The picture for the docs must not carry a token (secret scanners
	// know the kbt_ prefix): the panel shows a stand-in while it is taken.
	eval[bool](t, ctx, `(n => (window.realToken = n.textContent, n.textContent = 'kbt_<the new token, shown this once>', true))(document.getElementById('new-token'))`)
	screenshot(t, ctx, "token-created")
	eval[bool](t, ctx, `(n => (n.textContent = window.realToken, delete window.realToken, true))(document.getElementById('new-token'))`)
	if !pageHolds(t, ctx, token) {
		t.Fatal("the panel lost the token before Done")
	}
	var created client.TokenInfo
	for _, tok := range mustTokens(t, a) {
		if tok.Description == "CI deploy" {
			created = tok
		}
	}
	if created.ID == "" || created.Role != "admin" || strings.Join(created.Workspaces, ",") != "ws1" || created.ExpiresAt == nil ||
		time.Until(*created.ExpiresAt) > 7*24*time.Hour || time.Until(*created.ExpiresAt) < 6*24*time.Hour {
		t.Fatalf("the created token: %+v", created)
	}
	run(t, ctx, "done", chromedp.Click(chromedp.ID("token-done")), chromedp.WaitNotVisible(chromedp.ID("token-created")))
	if pageHolds(t, ctx, token) {
		t.Fatal("the token stays in the page after Done")
	}
	waitText(t, ctx, `[data-token="`+created.ID+`"]`, "CI deploy")

	// The new token acts; the workspace's page names it by its description.
	if r := a.call(token, "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != 201 {
		t.Fatalf("the new token adds a key: %d %s", r.status, r.body)
	}
	run(t, ctx, "open ws1", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws1"), chromedp.WaitVisible(chromedp.ID("workspace-section")))
	waitText(t, ctx, `[data-changed="openai/default"]`, "changed by CI deploy ("+created.ID+")")
	waitAudit(t, ctx, "CI deploy ("+created.ID+") added OpenAI key default")

	// Revoke asks first; a cancel keeps the token.
	run(t, ctx, "back to the tokens", chromedp.Click(chromedp.ID("nav-tokens")), chromedp.WaitVisible(chromedp.CSS(`[data-revoke="`+created.ID+`"]`)))
	run(t, ctx, "ask to revoke", chromedp.Click(chromedp.CSS(`[data-revoke="`+created.ID+`"]`)))
	answerConfirm(t, ctx, "is refused from now on, on every replica", false)
	if r := a.call(token, "GET", "/v1/workspaces/ws1/keys", nil); r.status != 200 {
		t.Fatalf("a cancelled revoke revoked the token: %d", r.status)
	}
	run(t, ctx, "revoke", chromedp.Click(chromedp.CSS(`[data-revoke="`+created.ID+`"]`)))
	answerConfirm(t, ctx, "Revoke 'CI deploy'?", true)
	waitText(t, ctx, `[data-token-state="`+created.ID+`"]`, "revoked")
	waitToast(t, ctx, "Revoked CI deploy")
	if r := a.call(token, "GET", "/v1/workspaces/ws1/keys", nil); r.status != 401 {
		t.Fatalf("the revoked token: %d", r.status)
	}
	if pageHolds(t, ctx, token) {
		t.Fatal("the token is in the page")
	}
}

func mustTokens(t *testing.T, a *api) []client.TokenInfo {
	t.Helper()
	var list client.TokenList
	r := a.call("operator", "GET", "/v1/tokens", nil)
	if r.status != 200 {
		t.Fatalf("list tokens: %d %s", r.status, r.body)
	}
	r.decode(t, &list)
	return list.Tokens
}

// The audit view: lines in words, denials aggregated into one line with
// a count, filters, older pages, and a JSON-lines download of the
// filtered trail.
func TestAdminPageAuditInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	for i := range 30 {
		if r := a.call("admin", "PATCH", "/v1/workspaces/ws1/providers/openai/keys/default", client.UpdateKeyRequest{Name: new(fmt.Sprintf("name %d", i))}); r.status != 200 {
			t.Fatalf("rename: %d %s", r.status, r.body)
		}
	}
	for range 3 {
		if r := a.call("reader", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)}); r.status != 403 {
			t.Fatalf("a reader's write: %d", r.status)
		}
	}
	if err := a.ground.tokens.FlushDenials(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	signIn(t, ctx, a, "admin", "workspace-section")
	showTab(t, ctx, "activity")
	waitText(t, ctx, "#audit", "changed OpenAI key default")
	// A page is 25 events (the two rows of the denials are one line).
	first := eval[int](t, ctx, `document.querySelectorAll('#audit > li').length`)
	if first != 24 || strings.Contains(eval[string](t, ctx, `document.getElementById('audit').textContent`), "added OpenAI key") {
		t.Fatalf("the first page shows %d lines, want 24 without the oldest events", first)
	}
	run(t, ctx, "older events", chromedp.Click(chromedp.ID("audit-more")))
	waitText(t, ctx, "#audit", "added OpenAI key default")
	if n := eval[int](t, ctx, `document.querySelectorAll('#audit > li').length`); n <= first {
		t.Fatalf("after Older events the list has %d lines", n)
	}

	// The three denials are one line with a count.
	run(t, ctx, "filter on denials",
		chromedp.SetValue(chromedp.ID("audit-action"), "access.denied"),
		chromedp.Click(chromedp.CSS(`#audit-filters button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit[data-filters*="access.denied"]`)))
	lines := eval[[]string](t, ctx, `[...document.querySelectorAll('#audit > li')].map(li => li.dataset.action + ' ' + li.textContent)`)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "access.denied ") || !strings.Contains(lines[0], "token "+a.ids["reader"]+" was refused") ||
		!strings.Contains(lines[0], "×3") {
		t.Fatalf("the denials are shown as %q", lines)
	}

	// Filter on an action and an actor; download what the filter shows.
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	run(t, ctx, "filter on the admin's renames",
		chromedp.SetValue(chromedp.ID("audit-action"), "key.update"),
		chromedp.SendKeys(chromedp.ID("audit-actor"), "token:"+a.ids["admin"]),
		chromedp.Click(chromedp.CSS(`#audit-filters button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit[data-filters*="key.update"]`)))
	if n := eval[int](t, ctx, `document.querySelectorAll('#audit > li:not([data-action="key.update"])').length`); n != 0 {
		t.Fatalf("%d lines of other actions under the key.update filter", n)
	}
	run(t, ctx, "download", chromedp.Click(chromedp.ID("audit-download")))
	waitToast(t, ctx, "Downloaded 30 audit events")
	file := filepath.Join(dir, "keybroker-audit-workspace-ws1.jsonl")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("no download at %s (the folder holds %v)", file, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev client.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d of the download is not an audit event: %v", n+1, err)
		}
		if ev.Action != "key.update" || ev.Actor != "token:"+a.ids["admin"] || ev.Workspace != "ws1" {
			t.Fatalf("line %d of the download is outside the filter: %+v", n+1, ev)
		}
		n++
	}
	if n != 30 {
		t.Fatalf("the download has %d events, want the 30 renames", n)
	}
}

// Each role sees what it may: a reader no control, a resolver nothing; an
// operator finds scopes by search and the URL names the open one.
func TestAdminPageRolesInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	key := openaiKey(t)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: key})
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	ctx := browser(t)

	signIn(t, ctx, a, "reader", "workspace-section")
	waitText(t, ctx, "#who", "role reader")
	waitText(t, ctx, `[data-status="openai"]`, "Calls use the workspace's own key 'default'")
	if n := eval[int](t, ctx, `document.querySelectorAll('#keys input, #keys button, #keys form, #fallback-toggle:not([hidden]), #inherit-toggle:not([hidden]), #add-provider:not([hidden])').length`); n != 0 {
		t.Fatalf("a reader sees %d edit controls", n)
	}
	if eval[bool](t, ctx, `!document.getElementById('nav-tokens').hidden`) {
		t.Fatal("a reader is offered the tokens view")
	}
	// A reader who types the tokens view's address stays on its scope.
	run(t, ctx, "go to #/tokens", chromedp.Navigate(a.srv.URL+"/ui/#/tokens"), chromedp.WaitVisible(chromedp.ID("workspaces-section")))
	if eval[bool](t, ctx, `!document.getElementById('tokens-section').hidden`) {
		t.Fatal("a reader sees the tokens view")
	}
	// And a scope the token does not reach says so, showing nothing.
	run(t, ctx, "go to ws2", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws2"))
	waitText(t, ctx, "#open-error", "does not reach workspace ws2")
	if eval[bool](t, ctx, `!document.getElementById('workspace-section').hidden`) {
		t.Fatal("a scope the reader does not reach is on screen")
	}

	// A resolver token is refused at sign in and kept nowhere. (The storage
	// is cleared before the page loads, as signIn does.)
	eval[bool](t, ctx, `sessionStorage.clear(), true`)
	run(t, ctx, "sign in as a resolver",
		chromedp.Navigate(a.srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), a.tokens["resolver"]),
		chromedp.Click(chromedp.CSS(`#signin button[type=submit]`)))
	waitText(t, ctx, "#signin-error", "This is a resolver token")
	if eval[bool](t, ctx, `!document.getElementById('workspaces-section').hidden || !document.getElementById('workspace-section').hidden`) {
		t.Fatal("a resolver sees a workspace view")
	}
	if pageHolds(t, ctx, a.tokens["resolver"]) || pageHolds(t, ctx, key) {
		t.Fatal("the resolver's token or a key is in the page")
	}
	axeCheck(t, ctx, "the sign-in view with an error")

	// An operator finds scopes by search; the URL names the open one, so a
	// reload lands there; an invalid id says so and leaves nothing of the
	// previous scope on screen.
	if r := a.call("operator", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("acme")}); r.status != 200 {
		t.Fatalf("link: %d %s", r.status, r.body)
	}
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
	// The operator reaches the linked workspace: a link opens it.
	run(t, ctx, "follow the link to ws1", chromedp.Click(chromedp.CSS(`#linked li[data-linked="ws1"] a`)))
	waitText(t, ctx, "#workspace-title", "Workspace ws1")
	waitText(t, ctx, "#org-text", "belongs to the organization acme")
	openSwitcher(t, ctx)
	run(t, ctx, "open an invalid workspace id",
		chromedp.SendKeys(chromedp.ID("workspace-id"), "Bad/Id"),
		chromedp.Click(chromedp.CSS(`#open-workspace button[type=submit]`)))
	waitText(t, ctx, "#open-error", "is not a workspace id")
	if visible := eval[bool](t, ctx, `!document.getElementById('workspace-section').hidden`); visible {
		t.Fatal("the previous scope's controls stay on screen after an invalid id")
	}
}

// The quality bar: no serious or critical axe-core violation in the main
// views, in the light and the dark colour scheme, and nothing wider than
// a 390 px phone; screenshots of each.
func TestAdminPageAccessibilityInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	a.call("admin", "PUT", "/v1/workspaces/ws1/keys/openai", client.PutKeyRequest{APIKey: openaiKey(t)})
	a.call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), Name: "Backup", Priority: new(200)})
	for _, r := range []answer{
		a.call("org-admin", "POST", "/v1/organizations/acme/providers/anthropic/keys", client.AddKeyRequest{APIKey: anthropicKey(t), Name: "shared"}),
		a.call("operator", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("acme")}),
	} {
		if r.status >= 300 {
			t.Fatalf("set up: %d %s", r.status, r.body)
		}
	}
	ctx := browser(t)

	run(t, ctx, "open the page", chromedp.Navigate(a.srv.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("token")))
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the sign-in view ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, `[data-status="anthropic"]`, "Calls use organization acme's key 'shared'")
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "a workspace admin's view ("+scheme+")")
		keyMenu(t, ctx, keyRow("openai/default"), "data-history")
		run(t, ctx, "the history", chromedp.WaitVisible(chromedp.ID("history-section")))
		axeCheck(t, ctx, "the history panel ("+scheme+")")
		screenshot(t, ctx, "history-"+scheme)
		keyMenu(t, ctx, keyRow("openai/default"), "data-delete")
		run(t, ctx, "the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
		axeCheck(t, ctx, "the delete confirmation ("+scheme+")")
		if scheme == "dark" {
			screenshot(t, ctx, "delete-confirmation-dark")
		}
		answerConfirm(t, ctx, "Delete OpenAI key 'default'?", false)
	}
	colorScheme(t, ctx, "light")

	// Keyboard: the first Tab reaches the skip link, and every control
	// shows where the focus is.
	run(t, ctx, "tab", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`button[data-add="openai"]`)), chromedp.KeyEvent("\t"))
	if got := eval[string](t, ctx, `document.activeElement.className`); got != "skip" {
		t.Fatalf("the first Tab focuses %q, want the skip link", got)
	}
	if outline := eval[string](t, ctx, `(() => { const b = document.querySelector('button[data-menu="openai/default"]'); b.focus(); return getComputedStyle(b).outlineStyle; })()`); outline == "none" {
		t.Fatal("a focused button shows no outline")
	}

	signIn(t, ctx, a, "org-admin", "workspace-section")
	waitText(t, ctx, "#linked", "ws1")
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "an organization admin's view ("+scheme+")")
	}
	colorScheme(t, ctx, "light")

	signIn(t, ctx, a, "operator", "workspaces-section")
	run(t, ctx, "open the tokens", chromedp.Click(chromedp.ID("nav-tokens")), chromedp.WaitVisible(chromedp.CSS(`[data-token="`+a.ids["admin"]+`"]`)))
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the tokens view ("+scheme+")")
	}
	colorScheme(t, ctx, "light")

	// A 390 px phone: nothing scrolls sideways, for each role's view.
	run(t, ctx, "a phone's viewport", chromedp.EmulateViewport(390, 844))
	for _, view := range []struct{ as, section, hash, wait string }{
		{"operator", "workspaces-section", "#/tokens", `[data-token="` + a.ids["admin"] + `"]`},
		{"operator", "workspaces-section", "#/workspace/ws1", `button[data-add="openai"]`},
		{"operator", "workspaces-section", "#/organization/acme", `button[data-add="anthropic"]`},
		{"reader", "workspace-section", "#/workspace/ws1", `span[data-masked="openai/default"]`},
	} {
		signIn(t, ctx, a, view.as, view.section)
		run(t, ctx, "open "+view.hash, chromedp.Navigate(a.srv.URL+"/ui/"+view.hash), chromedp.WaitVisible(chromedp.CSS(view.wait)))
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
			t.Fatalf("at 390 px %s's %s is %d px wide: it scrolls sideways", view.as, view.hash, w)
		}
		if view.hash == "#/workspace/ws1" && view.as == "operator" {
			axeCheck(t, ctx, "the workspace view on a phone")
		}
	}
}

// A workspace's calls through the credential proxy, as its reader sees
// them: newest first, 25 at a time, which key served each and whether the
// platform bills it; an organization's view and a replica that does not
// list them show no such section.
func TestAdminPageProxyCallsInARealBrowser(t *testing.T) {
	a := newAPIOpts(t, handlers.ModeAll, nil, func(o *handlers.Options, g *keyGround) { o.ProxyCalls = g.st })
	now := time.Now().UTC()
	var batch []broker.ProxyCall
	for i := range 30 {
		c := broker.ProxyCall{At: now.Add(time.Duration(i-30) * time.Minute), Workspace: "ws1", Provider: "openai", Scope: "workspace", KeyID: "main",
			KeyVersion: 2, Status: 200, Duration: time.Duration(400+i) * time.Millisecond, BYOK: true, Caller: "ptk_00000000000000" + fmt.Sprintf("%02d", i)}
		switch i {
		case 29:
			c.Scope, c.KeyID, c.KeyVersion, c.BYOK, c.Provider = "hosted", "billed", 1, false, "anthropic"
		case 28:
			c.Status, c.Retried = 429, true
		}
		batch = append(batch, c)
	}
	if err := a.store.AddProxyCalls(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	signIn(t, ctx, a, "reader", "workspace-section")
	// The overview's last 7 days count the calls by day.
	waitText(t, ctx, "[data-usage-chart]", "30 calls through the proxy")
	if label := eval[string](t, ctx, `document.querySelector('[data-usage-chart] svg').getAttribute('aria-label')`); !strings.HasPrefix(label, "Resolutions and calls through the proxy by day: ") ||
		strings.Count(label, ",") != 6 {
		t.Fatalf("the chart is labelled %q, want the seven days in words", label)
	}
	screenshotOf(t, ctx, "#usage-card", "usage-chart")
	showTab(t, ctx, "activity")
	run(t, ctx, "the calls are listed", chromedp.WaitVisible(chromedp.ID("calls-section")))
	waitText(t, ctx, "#calls", "ptk_0000000000000029")
	rows := eval[[]string](t, ctx, `[...document.querySelectorAll('#calls > tr')].map(tr => [...tr.cells].map(td => td.textContent).join(' | '))`)
	if len(rows) != 25 {
		t.Fatalf("the first page shows %d calls, want 25", len(rows))
	}
	if !strings.Contains(rows[0], "Anthropic") || !strings.Contains(rows[0], "hosted billed v1") || !strings.Contains(rows[0], "yes (hosted key)") {
		t.Fatalf("the newest call (a hosted key's) reads %q", rows[0])
	}
	if !strings.Contains(rows[1], "429 (retried with another key)") || !strings.Contains(rows[2], "main v2") || !strings.Contains(rows[2], "no (BYOK)") ||
		!strings.Contains(rows[2], "427 ms") {
		t.Fatalf("the next calls read %q", rows[1:3])
	}
	run(t, ctx, "older calls", chromedp.Click(chromedp.ID("calls-more")))
	waitText(t, ctx, "#calls", "ptk_0000000000000000")
	if n := eval[int](t, ctx, `document.querySelectorAll('#calls > tr').length`); n != 30 {
		t.Fatalf("after Older calls the table has %d rows, want 30", n)
	}
	if eval[bool](t, ctx, `!document.getElementById('calls-more').hidden`) {
		t.Fatal("Older calls is offered past the last call")
	}
	axeCheck(t, ctx, "the workspace with its proxied calls")

	// An organization has no calls of its own.
	signIn(t, ctx, a, "org-admin", "workspace-section")
	waitText(t, ctx, "#workspace-title", "Organization acme")
	if !eval[bool](t, ctx, `document.getElementById('calls-section').hidden`) {
		t.Fatal("an organization's view shows proxied calls")
	}

	// A replica that does not list them (its route answers 404).
	b := newAPI(t, handlers.ModeAll)
	signIn(t, ctx, b, "admin", "workspace-section") // an admin's view ends with the audit trail, after the calls
	waitText(t, ctx, "#workspace-title", "Workspace ws1")
	showTab(t, ctx, "activity")
	run(t, ctx, "the audit trail is shown", chromedp.WaitVisible(chromedp.ID("audit-section")))
	if !eval[bool](t, ctx, `document.getElementById('calls-section').hidden`) {
		t.Fatal("a replica without proxied calls shows their section")
	}
}
