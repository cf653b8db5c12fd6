package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
)

// focused is what has the focus: its id, else its data attributes.
func focused(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `(e => e.id || Object.entries(e.dataset).map(([k, v]) => k + '=' + v).join(' '))(document.activeElement)`)
}

// press sends keys to what has the focus.
func press(t *testing.T, ctx context.Context, what string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		run(t, ctx, what, chromedp.KeyEvent(k))
	}
}

// Every action of the v3 page by keyboard alone, in Chromium against a
// real keybroker, Vault and PostgreSQL: a key's menu (Enter opens it on
// its first action, the arrow keys move, Escape closes it and gives the
// focus back), limiting a key to some models in the side panel (the
// confirmation answered by keyboard, the focus back on the menu), Add a
// provider (the picker searched as you type, its form, the first key),
// Escape closing the panel, the tabs moved with the arrow keys, and the
// header's scope switcher (search as you type, recent scopes first, the
// arrow keys, Escape). axe-core finds no serious or critical violation
// with the menu, the picker or the switcher open, in light and dark.
func TestAdminPageKeyboardInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	for _, r := range []answer{
		a.call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "main", Name: "Main"}),
		a.call("org-admin", "POST", "/v1/organizations/acme/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "shared", Name: "Shared"}),
	} {
		if r.status != 201 {
			t.Fatalf("set up: %d %s", r.status, r.body)
		}
	}
	ctx := browser(t)
	signIn(t, ctx, a, "admin", "workspace-section")
	main := keyRow("openai/main")

	// The menu: Enter on its button opens it on the first action.
	run(t, ctx, "focus the menu of Main", chromedp.Focus(chromedp.CSS(main+` button[data-menu]`)))
	press(t, ctx, "open the menu", kb.Enter)
	run(t, ctx, "the menu", chromedp.WaitVisible(chromedp.CSS(main+` [role=menu]`)))
	if f := focused(t, ctx); f != "replace=openai/main" {
		t.Fatalf("an opened menu focuses %q, want its first action", f)
	}
	if got := eval[string](t, ctx, `document.querySelector('`+main+` button[data-menu]').getAttribute('aria-expanded')`); got != "true" {
		t.Fatalf("the open menu's button says aria-expanded=%s", got)
	}
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "a key's open menu ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	press(t, ctx, "wrap up to the last action", kb.ArrowUp)
	if f := focused(t, ctx); f != "delete=openai/main" {
		t.Fatalf("the up arrow on the first action focuses %q, want the last (Delete)", f)
	}
	press(t, ctx, "close the menu", kb.Escape)
	run(t, ctx, "the menu closes", chromedp.WaitNotVisible(chromedp.CSS(main+` [role=menu]`)))
	if f := focused(t, ctx); f != "menu=openai/main" {
		t.Fatalf("Escape leaves the focus on %q, want the menu's button", f)
	}

	// Limit to models: the third action; the panel's field has the focus;
	// Enter submits, the confirmation is answered by keyboard.
	press(t, ctx, "open the menu and go to Limit to models", kb.Enter, kb.ArrowDown, kb.ArrowDown)
	if f := focused(t, ctx); f != "modelsOpen=openai/main" {
		t.Fatalf("two down arrows focus %q, want Limit to models", f)
	}
	press(t, ctx, "open the models form", kb.Enter)
	run(t, ctx, "the models form", chromedp.WaitVisible(chromedp.ID("models-openai-main")))
	if f := focused(t, ctx); f != "models-openai-main" {
		t.Fatalf("the side panel focuses %q, want its field", f)
	}
	press(t, ctx, "type the models and submit", "gpt-4o, gpt-4o-mini", kb.Enter)
	run(t, ctx, "the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	waitText(t, ctx, "#confirm", "'Main' serves only gpt-4o, gpt-4o-mini from now on")
	if f := focused(t, ctx); f != "confirm-cancel" {
		t.Fatalf("the confirmation focuses %q, want Cancel", f)
	}
	press(t, ctx, "confirm", kb.Tab, kb.Enter)
	waitToast(t, ctx, "'Main' now serves only gpt-4o, gpt-4o-mini")
	waitText(t, ctx, main, "only for gpt-4o, gpt-4o-mini")
	if m, err := a.ground.keys.GetKey(context.Background(), broker.WorkspaceKey("ws1", "openai", "main")); err != nil || strings.Join(m.Models, ",") != "gpt-4o,gpt-4o-mini" {
		t.Fatalf("the key's models after the form: %v %v", m.Models, err)
	}
	waitTrue(t, ctx, "the focus back on Main's menu", `document.activeElement.dataset.menu === 'openai/main'`)

	// Add a provider: the picker is searched as you type; its form takes
	// the first key.
	key := anthropicKey(t)
	run(t, ctx, "focus Add a provider", chromedp.Focus(chromedp.ID("add-provider")))
	press(t, ctx, "open the picker", kb.Enter)
	run(t, ctx, "the picker", chromedp.WaitVisible(chromedp.ID("provider-search")))
	if f := focused(t, ctx); f != "provider-search" {
		t.Fatalf("the picker focuses %q, want its search", f)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#provider-picker button[data-pick="openai"]').length`); n != 0 {
		t.Fatal("the picker offers OpenAI, which has keys already")
	}
	press(t, ctx, "search", "anthro")
	waitTrue(t, ctx, "the picker filtered", `[...document.querySelectorAll('#provider-picker button[data-pick]')].map(b => b.dataset.pick).join() === 'anthropic'`)
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the provider picker ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	screenshot(t, ctx, "add-provider")
	press(t, ctx, "pick Anthropic", kb.Tab, kb.Enter)
	run(t, ctx, "the Anthropic form", chromedp.WaitVisible(chromedp.ID("key-anthropic")))
	if f := focused(t, ctx); f != "key-anthropic" {
		t.Fatalf("the add form focuses %q, want the key's field", f)
	}
	press(t, ctx, "type the key and submit", key, kb.Enter)
	run(t, ctx, "the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	waitText(t, ctx, "#confirm", "Anthropic calls will use the new key from now on")
	press(t, ctx, "confirm", kb.Tab, kb.Enter)
	waitToast(t, ctx, "Added Anthropic key 'default' ("+providers.MaskKey(key)+")")
	waitText(t, ctx, `[data-status="anthropic"]`, "Calls use the workspace's own key 'default'")
	if pageHolds(t, ctx, key) {
		t.Fatal("the key is in the page after it was added")
	}

	// Escape closes the side panel and gives the focus back.
	run(t, ctx, "focus Add a key to OpenAI", chromedp.Focus(chromedp.CSS(`button[data-add="openai"]`)))
	press(t, ctx, "open the add form", kb.Enter)
	run(t, ctx, "the form", chromedp.WaitVisible(chromedp.ID("key-openai")))
	press(t, ctx, "close it", kb.Escape)
	run(t, ctx, "the panel closes", chromedp.WaitNotVisible(chromedp.ID("panel")))
	if f := focused(t, ctx); f != "add=openai" {
		t.Fatalf("closing the panel leaves the focus on %q, want Add a key", f)
	}

	// The tabs: the arrow keys move between them.
	run(t, ctx, "focus the tabs", chromedp.Focus(chromedp.ID("tab-keys")))
	press(t, ctx, "next tab", kb.ArrowRight)
	run(t, ctx, "the activity", chromedp.WaitVisible(chromedp.ID("audit-section")))
	if f := focused(t, ctx); f != "tab-activity" || !eval[bool](t, ctx, `document.getElementById('keys-panel').hidden`) {
		t.Fatalf("the right arrow on the first tab focuses %q (or leaves the keys on screen)", f)
	}
	waitText(t, ctx, "#audit", "added Anthropic key default")
	press(t, ctx, "previous tab", kb.ArrowLeft)
	run(t, ctx, "the keys", chromedp.WaitVisible(chromedp.ID("keys-panel")))

	// The scope switcher, for an operator: recent scopes first, search as
	// you type, the arrow keys, Escape.
	signIn(t, ctx, a, "operator", "workspaces-section")
	for _, sc := range []string{"workspace/ws1", "organization/acme"} {
		openSwitcher(t, ctx)
		run(t, ctx, "open "+sc, chromedp.Click(chromedp.CSS(`#workspace-list button[data-scope="`+sc+`"]`)), chromedp.WaitVisible(chromedp.ID("workspace-section")))
		waitShown(t, ctx)
		waitText(t, ctx, "#switch-label", strings.Split(sc, "/")[1])
	}
	run(t, ctx, "focus the switcher", chromedp.Focus(chromedp.ID("scope-switch")))
	press(t, ctx, "open it", kb.Enter)
	run(t, ctx, "the switcher", chromedp.WaitVisible(chromedp.ID("scope-search")))
	if got := eval[string](t, ctx, `[...document.querySelectorAll('#scope-recent button')].map(b => b.dataset.recent).join()`); got != "organization/acme,workspace/ws1" {
		t.Fatalf("the recent scopes are %q, want the last opened first", got)
	}
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the scope switcher ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	screenshot(t, ctx, "switcher")
	press(t, ctx, "search", "ws")
	waitTrue(t, ctx, "the search's answer", `document.getElementById('workspace-list').dataset.query === 'ws'`)
	if got := eval[string](t, ctx, `[...document.querySelectorAll('#switcher button[data-scope]')].map(b => b.dataset.scope).join()`); got != "workspace/ws1,workspace/ws1" {
		t.Fatalf("searching ws shows %q, want ws1 (recent, then in the list)", got)
	}
	press(t, ctx, "go down to ws1", kb.ArrowDown)
	if f := focused(t, ctx); f != "scope=workspace/ws1 recent=workspace/ws1" {
		t.Fatalf("the down arrow from the search focuses %q, want the first scope", f)
	}
	press(t, ctx, "open ws1", kb.Enter)
	waitText(t, ctx, "#workspace-title", "Workspace ws1")
	if !eval[bool](t, ctx, `document.getElementById('switcher').hidden`) {
		t.Fatal("the switcher stays open once a scope is chosen")
	}
	waitShown(t, ctx)
	run(t, ctx, "focus the switcher", chromedp.Focus(chromedp.ID("scope-switch")))
	press(t, ctx, "open it and close it", kb.Enter, kb.Escape)
	if f := focused(t, ctx); f != "scope-switch" || !eval[bool](t, ctx, `document.getElementById('switcher').hidden`) {
		t.Fatalf("Escape in the switcher leaves the focus on %q (or the switcher open)", f)
	}
	// On a phone the open switcher fits the screen.
	run(t, ctx, "a phone's viewport", chromedp.EmulateViewport(390, 844))
	press(t, ctx, "open the switcher", kb.Enter)
	run(t, ctx, "the switcher", chromedp.WaitVisible(chromedp.ID("scope-search")))
	if w := eval[int](t, ctx, `Math.max(document.documentElement.scrollWidth, Math.ceil(document.getElementById('switcher').getBoundingClientRect().right))`); w > 390 {
		t.Fatalf("at 390 px the open switcher reaches %d px: it does not fit", w)
	}
	axeCheck(t, ctx, "the scope switcher on a phone")
}
