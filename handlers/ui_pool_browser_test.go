package handlers_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// The pool page of a workspace admin, every action end to end in Chromium
// against a real keybroker, Vault and PostgreSQL: what the page says
// serves, confirmations before what changes it, a message after each
// action, reorder by keyboard and by pointer, history with who wrote each
// version, delete with destroy, and no plaintext key left in the page.
func TestAdminPagePoolActionsInARealBrowser(t *testing.T) {
	provider, accept := openAIStandIn(t)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: map[string]string{"openai": provider.URL}})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIWith(t, handlers.ModeAll, checker)
	ctx0 := context.Background()
	hosted := openaiKey(t)
	if _, err := a.ground.keys.PutKey(ctx0, broker.PutKeyRequest{Actor: broker.Actor{Subject: "operator"}, Ref: broker.HostedKey("openai", broker.DefaultKeyID), Credential: providers.APIKey(hosted)}); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	k1, k2 := openaiKey(t), openaiKey(t)
	masked := providers.MaskKey
	status := `[data-status="openai"]`
	nth := func(n int) string {
		return `table[data-pool="openai"] tbody > tr:nth-child(` + string(rune('0'+n)) + `)`
	}
	resolved := func() string {
		t.Helper()
		r, err := a.ground.keys.Resolve(ctx0, broker.ResolveRequest{Workspace: "ws1", Provider: "openai"})
		if err != nil {
			return "error: " + err.Error()
		}
		return string(r.ScopeKind) + "/" + r.KeyID
	}

	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, "#who", "role admin")
	showAllSources(t, ctx)
	waitText(t, ctx, status, "Using hosted key")
	waitText(t, ctx, "#fallback-text", "billed at hosted rates")
	waitText(t, ctx, `[data-status="anthropic"]`, "the platform has no hosted key")

	// Fail closed: the confirmation says what it costs; cancelling changes
	// nothing, confirming does, and a message says so.
	run(t, ctx, "ask to turn the hosted fallback off", chromedp.Click(chromedp.ID("fallback-toggle")))
	answerConfirm(t, ctx, "will fail instead of using the platform's hosted key", false)
	if got, err := a.ground.keys.GetSettings(ctx0, "ws1"); err != nil || !got.HostedFallback {
		t.Fatalf("a cancelled toggle changed the settings: %+v %v", got, err)
	}
	run(t, ctx, "turn the hosted fallback off", chromedp.Click(chromedp.ID("fallback-toggle")))
	answerConfirm(t, ctx, "will fail", true)
	waitText(t, ctx, "#fallback-text", "Hosted fallback is off")
	waitText(t, ctx, status, "calls fail (hosted fallback is off)")
	waitToast(t, ctx, "Settings saved. Hosted fallback is off")
	if got, err := a.ground.keys.GetSettings(ctx0, "ws1"); err != nil || got.HostedFallback {
		t.Fatalf("settings after the toggle: %+v %v", got, err)
	}
	run(t, ctx, "turn it on again", chromedp.Click(chromedp.ID("fallback-toggle")))
	answerConfirm(t, ctx, "billed at hosted rates", true)
	waitText(t, ctx, status, "billed at the platform's hosted rates")

	// A bad key: the API's message next to the field, nothing saved.
	openAddForm(t, ctx, "openai")
	run(t, ctx, "add a bad key",
		chromedp.SendKeys(chromedp.ID("key-openai"), "sk-this has spaces in it"),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	answerConfirm(t, ctx, "OpenAI calls will use the new key from now on", true)
	waitText(t, ctx, "#err-openai", "whitespace")
	if got := resolved(); got != "hosted/default" {
		t.Fatalf("after a refused key, resolve gives %s", got)
	}

	// The first key: it changes what serves, so the page asks first.
	openAddForm(t, ctx, "openai")
	run(t, ctx, "add a key",
		chromedp.SendKeys(chromedp.ID("key-openai"), k1),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	answerConfirm(t, ctx, "BYOK, not billed by the platform", true)
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))
	waitText(t, ctx, status, "Calls use the workspace's own key 'default' (1 usable key; BYOK, not billed")
	waitToast(t, ctx, "Added OpenAI key 'default' ("+masked(k1)+") at priority 100")
	if pageHolds(t, ctx, k1) {
		t.Fatal("the plaintext key is in the DOM or sessionStorage after save")
	}
	run(t, ctx, "reload", chromedp.Reload())
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))

	keyMenu(t, ctx, keyRow("openai/default"), "data-replace")
	run(t, ctx, "rotate",
		chromedp.SendKeys(chromedp.ID("rotate-openai-default"), k2),
		chromedp.Click(chromedp.CSS(`form[data-rotate="openai/default"] button[type=submit]`)))
	answerConfirm(t, ctx, "use the new value at once", true)
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k2))
	waitText(t, ctx, keyRow("openai/default"), "version 2")
	waitToast(t, ctx, "now version 2")

	// Backups at priorities 200 and 300 change nothing that serves: no
	// confirmation.
	backup, spare := openaiKey(t), openaiKey(t)
	for _, k := range []struct{ value, name, priority string }{{backup, "Backup", "200"}, {spare, "Spare", "300"}} {
		openAddForm(t, ctx, "openai")
		run(t, ctx, "add "+k.name,
			chromedp.SendKeys(chromedp.ID("key-openai"), k.value),
			chromedp.SendKeys(chromedp.ID("newname-openai"), k.name),
			chromedp.SetValue(chromedp.ID("priority-openai"), k.priority),
			chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
		waitToast(t, ctx, "Added OpenAI key '"+k.name+"'")
		noConfirmOpen(t, ctx, "adding a backup key")
	}
	waitText(t, ctx, nth(2), "Backup")
	waitText(t, ctx, nth(3), "priority 300")
	waitText(t, ctx, status, "3 usable keys")

	// Keyboard: the up arrow on Backup's handle serves it first, after a
	// confirmation; the handle keeps the focus.
	backupID := eval[string](t, ctx, `document.querySelector('`+nth(2)+`').dataset.key`)
	run(t, ctx, "press the up arrow on Backup's handle",
		chromedp.Focus(chromedp.CSS(nth(2)+` button.handle`)), chromedp.KeyEvent(kb.ArrowUp))
	answerConfirm(t, ctx, "Serve 'Backup' before 'default'?", true)
	waitText(t, ctx, nth(1), "Backup")
	waitText(t, ctx, nth(1), "priority 99")
	waitToast(t, ctx, "'Backup' now serves before 'default'")
	if got := resolved(); got != "workspace/"+strings.TrimPrefix(backupID, "openai/") {
		t.Fatalf("after the reorder resolve gives %s, want Backup (%s)", got, backupID)
	}
	if focused := eval[string](t, ctx, `document.activeElement.dataset.handle || ''`); focused != backupID {
		t.Fatalf("after the reorder the focus is on %q, want Backup's handle", focused)
	}

	// Pointer: drag Spare's handle over the first key; cancel once (the
	// order stays), then do it.
	run(t, ctx, "a tall viewport, so the pool fits", chromedp.EmulateViewport(1200, 2600))
	drag := func() {
		run(t, ctx, "drag Spare to the top",
			chromedp.DragAndDrop(chromedp.CSS(nth(3)+` button.handle`), chromedp.CSS(nth(1)+` .kname`)))
	}
	drag()
	answerConfirm(t, ctx, "Serve 'Spare' before 'Backup'?", false)
	waitText(t, ctx, nth(3), "Spare")
	drag()
	answerConfirm(t, ctx, "'Spare' gets priority 98", true)
	waitText(t, ctx, nth(1), "Spare")
	waitText(t, ctx, nth(2), "Backup")
	waitText(t, ctx, nth(3), "default")
	run(t, ctx, "back to a desktop viewport", chromedp.EmulateViewport(1200, 900))

	// Disable the first: the confirmation names what serves instead.
	keyMenu(t, ctx, nth(1), "data-toggle-state")
	answerConfirm(t, ctx, "The pool's other active key 'Backup' serves instead", true)
	waitText(t, ctx, nth(1), "disabled")
	waitText(t, ctx, status, "'Backup' (2 usable keys")
	waitToast(t, ctx, "Disabled OpenAI key 'Spare'")

	// Rename changes nothing that resolves: no confirmation, a message.
	keyMenu(t, ctx, keyRow("openai/default"), "data-rename-open")
	run(t, ctx, "rename the first key",
		chromedp.SetValue(chromedp.ID("name-openai-default"), "Main"),
		chromedp.Click(chromedp.CSS(`form[data-rename="openai/default"] button[type=submit]`)))
	waitText(t, ctx, `[data-name="openai/default"]`, "Main")
	waitToast(t, ctx, "Renamed to 'Main'")
	noConfirmOpen(t, ctx, "a rename")

	// History: which value each version was and who wrote it; roll back
	// asks first, and a cancel changes nothing.
	keyMenu(t, ctx, keyRow("openai/default"), "data-history")
	waitText(t, ctx, `#history li[data-version="2"]`, masked(k2))
	waitText(t, ctx, `#history li[data-version="2"]`, "written by token "+a.ids["admin"])
	waitText(t, ctx, `#history li[data-version="1"]`, masked(k1))
	waitText(t, ctx, "#history-title", "'Main' (key id default)")
	run(t, ctx, "ask to roll back", chromedp.Click(chromedp.CSS(`button[data-rollback="1"]`)))
	answerConfirm(t, ctx, "use version 1's value ("+masked(k1)+") at once", false)
	if meta, err := a.ground.keys.GetKey(ctx0, broker.WorkspaceKey("ws1", "openai", "default")); err != nil || meta.Version != 2 {
		t.Fatalf("a cancelled roll back changed the key: %+v %v", meta, err)
	}
	run(t, ctx, "roll back", chromedp.Click(chromedp.CSS(`button[data-rollback="1"]`)))
	answerConfirm(t, ctx, "stays in Vault as version 2", true)
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(k1))
	waitText(t, ctx, keyRow("openai/default"), "version 3")
	waitToast(t, ctx, "now version 3")
	waitText(t, ctx, `#history li[data-version="3"]`, "(current) "+masked(k1))
	waitAudit(t, ctx, "rolled back OpenAI key default: to version 1 ("+masked(k1)+")")

	// Test key: the provider's verdict, and the badge follows it.
	keyMenu(t, ctx, keyRow("openai/default"), "data-test")
	waitText(t, ctx, `[data-test-result="openai/default"]`, "OpenAI refused the key (answered 401); the key is failing")
	waitText(t, ctx, `span[data-health="openai/default"]`, "failing: refused by the provider at")
	waitToast(t, ctx, "OpenAI refused the key")
	accept(k1)
	keyMenu(t, ctx, keyRow("openai/default"), "data-test")
	waitText(t, ctx, `[data-test-result="openai/default"]`, "OpenAI accepted the key (answered 200); the key is healthy")
	waitText(t, ctx, `span[data-health="openai/default"]`, "healthy")
	run(t, ctx, "open the key's menu", chromedp.Click(chromedp.CSS(keyRow("openai/default")+` button[data-menu]`)),
		chromedp.WaitVisible(chromedp.CSS(keyRow("openai/default")+` [role=menu]`)))
	screenshot(t, ctx, "key-menu")
	run(t, ctx, "close the menu", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS(keyRow("openai/default")+` [role=menu]`)))

	// Delete: the confirmation says what serves next and what a plain
	// delete leaves in Vault, and offers destroy.
	keyMenu(t, ctx, keyRow("openai/default"), "data-delete")
	waitText(t, ctx, "#confirm-text", "The pool's other active key 'Backup' serves instead")
	waitText(t, ctx, "#confirm-text", "the older versions stay in Vault")
	screenshot(t, ctx, "delete-confirmation")
	run(t, ctx, "tick destroy", chromedp.Click(chromedp.CSS(`#confirm input[data-destroy="openai/default"]`)))
	answerConfirm(t, ctx, "Destroy removes them all", true)
	waitToast(t, ctx, "Deleted OpenAI key 'Main', every version destroyed")
	run(t, ctx, "the key is gone", chromedp.WaitNotPresent(chromedp.CSS(keyRow("openai/default"))))
	if _, err := a.kv.Metadata(ctx0, broker.WorkspaceKey("ws1", "openai", broker.DefaultKeyID).VaultPath()); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("after a delete with destroy, Vault still holds the key's versions: %v", err)
	}
	waitText(t, ctx, status, "'Backup' (1 usable key")
	for _, k := range []string{k1, k2, backup, spare, hosted} {
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
	openAddForm(t, ctx, "openai")
	run(t, ctx, "add an organization key",
		chromedp.SendKeys(chromedp.ID("key-openai"), orgKey),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	answerConfirm(t, ctx, "for the organization's inheriting workspaces", true)
	waitText(t, ctx, `span[data-masked="openai/default"]`, masked(orgKey))
	if r := a.call("operator", "PUT", "/v1/workspaces/ws1/settings", client.SettingsRequest{Organization: new("acme")}); r.status != 200 {
		t.Fatalf("link: %d %s", r.status, r.body)
	}
	run(t, ctx, "reload", chromedp.Reload())
	waitText(t, ctx, `#linked li[data-linked="ws1"]`, "uses these keys")
	// The organization's admin does not reach the workspace: no link to it.
	if n := eval[int](t, ctx, `document.querySelectorAll('#linked a').length`); n != 0 {
		t.Fatalf("an organization admin is offered %d links to workspaces it cannot open", n)
	}
	signIn(t, ctx, a, "admin", "workspace-section")
	keyMenu(t, ctx, nth(2), "data-toggle-state")
	answerConfirm(t, ctx, "Calls will then use acme's keys", true)
	waitText(t, ctx, status, "Calls use organization acme's key 'default' (1 usable key; BYOK, not billed")
	waitText(t, ctx, "#inherit-text", "use acme's keys")
	if pageHolds(t, ctx, orgKey) {
		t.Fatal("the organization's key is in the DOM")
	}
}
