package handlers_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// axeBoth runs axe-core on the page as it is, light and dark.
func axeBoth(t *testing.T, ctx context.Context, view string) {
	t.Helper()
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, view+" ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
}

// The key lifecycle on the admin page, in Chromium against a real
// keybroker, Vault and PostgreSQL, and the stand-ins of OpenAI's and
// Anthropic's admin APIs: expiry badges and Needs attention from the
// API's expiry, the expiry editor (set, then removed); the 7-day chart
// with the keys' resolutions; Rotate at the provider refused without an
// admin credential (saying why), the admin credential added through Add
// a provider (never in the page afterwards, listed apart without
// resolve-related actions), a rotation by keyboard alone showing the
// key's usage first, its history, a rotation the provider refuses
// (rolled back, said); revoke everywhere at Anthropic (done) and at
// OpenAI failing (pending, with the error and the next attempt); the
// rotation schedule. After each, the API (or the stand-in) is read back;
// axe-core finds no serious or critical violation in each new view, light
// and dark; a reader sees none of the controls.
func TestAdminPageKeyLifecycleInARealBrowser(t *testing.T) {
	openai, anthropic := cloudstub.NewOpenAI(t), cloudstub.NewAnthropic(t)
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	adminKey := remember("sk-admin-" + hex.EncodeToString(b))
	anthropicAdmin := remember("sk-ant-admin01-" + hex.EncodeToString(b))
	openai.AddAdminKey(adminKey, "org-1", "proj_ws1")
	anthropic.AddAdminKey(anthropicAdmin)
	primary := openaiKey(t)
	primaryAccount := openai.AddServiceAccount("proj_ws1", "original", primary)
	claude := anthropicKey(t)
	anthropic.AddKey("apikey_01abc", "prod", claude)
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{
		"openai": openai.URL, "openai-admin": openai.URL, "anthropic": anthropic.URL, "anthropic-admin": anthropic.URL}})
	if err != nil {
		t.Fatal(err)
	}
	a := newAPIGround(t, handlers.ModeAll, kbtest.Options{Checker: checker}, nil)
	t.Cleanup(func() {
		for _, k := range openai.Keys() {
			remember(k)
		}
	})
	soon := time.Now().Add(5*24*time.Hour + time.Hour).UTC()
	past := time.Now().Add(-24 * time.Hour).UTC()
	for _, r := range []answer{
		a.call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: primary, KeyID: "primary", Name: "Primary",
			Priority: new(5), ProviderKeyID: primaryAccount}),
		a.call("admin", "POST", "/v1/workspaces/ws1/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "backup", Name: "Backup",
			Priority: new(100), ExpiresAt: &soon}),
		a.call("admin", "POST", "/v1/workspaces/ws1/providers/anthropic/keys", client.AddKeyRequest{APIKey: claude, KeyID: "claude", Name: "Claude",
			ProviderKeyID: "apikey_01abc"}),
		a.call("admin", "POST", "/v1/workspaces/ws1/providers/mistral/keys", client.AddKeyRequest{APIKey: remember(strings.Repeat("a1", 16)), KeyID: "old",
			Name: "Old", ExpiresAt: &past}),
	} {
		if r.status != 201 {
			t.Fatalf("set up: %d %s", r.status, r.body)
		}
	}
	// Two resolves of Primary, counted for its usage.
	for range 2 {
		if r := a.call("resolver", "POST", "/v1/resolve", client.ResolveRequest{Workspace: "ws1", Provider: "openai"}); r.status != 200 {
			t.Fatalf("resolve: %d %s", r.status, r.body)
		}
	}
	if err := a.ground.keys.FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	getKey := func(id string) client.KeyMetadata {
		t.Helper()
		var m client.KeyMetadata
		r := a.call("admin", "GET", "/v1/workspaces/ws1/providers/"+id, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", id, r.status, r.body)
		}
		r.decode(t, &m)
		return m
	}

	ctx := browser(t)
	signIn(t, ctx, a, "admin", "workspace-section")

	// 1. Expiry: the badges and Needs attention say what the API says.
	waitTrue(t, ctx, "the expiring badge", `document.querySelector('[data-expires="openai/backup"]')?.dataset.expiry === 'expiring'`)
	waitText(t, ctx, `[data-expires="openai/backup"]`, "expires in 6 days")
	waitText(t, ctx, `[data-expires="mistral/old"]`, "expired")
	waitText(t, ctx, `[data-expires="openai/primary"]`, "no expiry")
	waitText(t, ctx, `[data-attention="openai/backup"]`, "expires in 6 days")
	waitText(t, ctx, `[data-attention="mistral/old"]`, "expired")
	waitText(t, ctx, "#attention-title", "Needs attention (2)")
	waitText(t, ctx, `[data-status="mistral"]`, "The workspace's keys are past their expiry")
	// The chart counts Primary's resolutions.
	waitText(t, ctx, "[data-usage-chart]", "2 resolutions")
	axeBoth(t, ctx, "a workspace with expiring and expired keys")

	// The expiry editor: set, then removed, each read back from the API.
	keyMenu(t, ctx, keyRow("openai/primary"), "data-expiry-open")
	run(t, ctx, "the expiry form", chromedp.WaitVisible(chromedp.ID("expires-openai-primary")))
	axeBoth(t, ctx, "the expiry editor")
	screenshotOf(t, ctx, "#panel", "expiry-editor")
	day := time.Now().Add(3 * 24 * time.Hour).UTC().Format(time.DateOnly)
	eval[bool](t, ctx, `(document.getElementById('expires-openai-primary').value = '`+day+`', true)`)
	run(t, ctx, "save the expiry", chromedp.Click(chromedp.CSS(`form[data-expiry="openai/primary"] button[type=submit]`)))
	waitToast(t, ctx, "OpenAI key 'Primary': expires "+day)
	if m := getKey("openai/keys/primary"); m.ExpiresAt == nil || m.ExpiresAt.Format(time.DateOnly) != day || m.Expiry != "expiring" {
		t.Fatalf("after the expiry editor the key is %+v", m)
	}
	waitText(t, ctx, `[data-attention="openai/primary"]`, "expires in")
	keyMenu(t, ctx, keyRow("openai/primary"), "data-expiry-open")
	run(t, ctx, "remove the expiry", chromedp.Click(chromedp.CSS(`button[data-expiry-clear="openai/primary"]`)))
	waitToast(t, ctx, "OpenAI key 'Primary': no expiry")
	if m := getKey("openai/keys/primary"); m.ExpiresAt != nil || m.Expiry != "" {
		t.Fatalf("after removing the expiry the key is %+v", m)
	}
	waitText(t, ctx, `[data-expires="openai/primary"]`, "no expiry")

	// 3. Rotate at the provider, without an admin credential: why not.
	keyMenu(t, ctx, keyRow("openai/primary"), "data-rotate-open")
	waitText(t, ctx, `[data-rotate-why="openai/primary"]`, "holds no usable one")
	keyMenu(t, ctx, keyRow("mistral/old"), "data-rotate-open")
	waitText(t, ctx, `[data-rotate-why="mistral/old"]`, "cannot rotate its keys at the provider")

	// 5. The admin credential, through Add a provider's own section.
	closePanel(t, ctx)
	run(t, ctx, "open the picker", chromedp.Click(chromedp.ID("add-provider")), chromedp.WaitVisible(chromedp.CSS(`#admin-picker button[data-pick="openai-admin"]`)))
	waitText(t, ctx, ".admin-picker", "never resolved and never served to calls")
	axeBoth(t, ctx, "the picker with the admin credentials")
	eval[bool](t, ctx, `(document.querySelector('.admin-picker').scrollIntoView(), true)`)
	screenshotOf(t, ctx, "#panel", "add-admin-credential")
	run(t, ctx, "pick the OpenAI admin credential", chromedp.Click(chromedp.CSS(`#admin-picker button[data-pick="openai-admin"]`)),
		chromedp.WaitVisible(chromedp.ID("add-openai-admin-adminKey")),
		chromedp.SendKeys(chromedp.ID("add-openai-admin-adminKey"), adminKey),
		chromedp.SendKeys(chromedp.ID("add-openai-admin-projectId"), "proj_ws1"),
		chromedp.Click(chromedp.CSS(`form[data-form="openai-admin"] button[type=submit]`)))
	noConfirmOpen(t, ctx, "adding an admin credential")
	waitToast(t, ctx, "Added OpenAI admin API credential 'admin'")
	if m := getKey("openai-admin/keys/admin"); m.Fields["projectId"] != "proj_ws1" {
		t.Fatalf("the admin credential %+v", m)
	}
	admin := `tr[data-admin-key="openai-admin/admin"]`
	run(t, ctx, "the admin credential's row", chromedp.WaitVisible(chromedp.CSS(admin)))
	if n := eval[int](t, ctx, `document.querySelectorAll('`+admin+` [data-handle], `+admin+` [data-test], `+admin+` [data-rotate-open], `+admin+` [data-up], `+admin+` [data-models-open]').length`); n != 0 {
		t.Fatalf("the admin credential's row offers %d resolve-related actions", n)
	}
	if pageHolds(t, ctx, adminKey) {
		t.Fatal("the admin key is in the page after it was added")
	}
	if eval[bool](t, ctx, `[...document.querySelectorAll('#sources [data-source]')].some(li => li.dataset.source === 'openai-admin')`) {
		t.Fatal("the overview lists the admin credential among the providers that serve calls")
	}
	axeBoth(t, ctx, "a workspace with an admin credential")

	// 2 and 3. Rotate Primary, by keyboard alone: the menu, the panel with
	// the key's usage (by version and caller), the grace period, the
	// confirmation.
	showTab(t, ctx, "keys")
	run(t, ctx, "focus Primary's menu", chromedp.Focus(chromedp.CSS(keyRow("openai/primary")+` button[data-menu]`)))
	press(t, ctx, "open the menu", kb.Enter)
	for i := 0; focused(t, ctx) != "rotateOpen=openai/primary"; i++ {
		if i > 12 {
			t.Fatalf("the down arrow never reaches Rotate at the provider (at %q)", focused(t, ctx))
		}
		press(t, ctx, "down", kb.ArrowDown)
	}
	press(t, ctx, "open the rotation", kb.Enter)
	run(t, ctx, "the rotation panel", chromedp.WaitVisible(chromedp.ID("grace-openai-primary")))
	if f := focused(t, ctx); f != "grace-openai-primary" {
		t.Fatalf("the rotation panel focuses %q, want the grace period", f)
	}
	waitText(t, ctx, `#panel [data-key-usage="openai/primary"]`, "Last 7 days: 2 resolutions and 0 calls through the proxy, by 1 caller")
	waitText(t, ctx, `#panel [data-key-usage="openai/primary"] table`, a.ids["resolver"])
	axeBoth(t, ctx, "the rotation panel")
	screenshotOf(t, ctx, "#panel", "rotate-panel")
	press(t, ctx, "a grace period of 5 minutes", "5", kb.Enter)
	run(t, ctx, "the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	waitText(t, ctx, "#confirm", "deleted at OpenAI after 5 minutes")
	press(t, ctx, "confirm", kb.Tab, kb.Enter)
	waitToast(t, ctx, "Rotated OpenAI key 'Primary': the new key 'primary-r")
	waitToast(t, ctx, "is deleted at OpenAI and from the pool after")
	var rots client.RotationList
	a.call("admin", "GET", "/v1/workspaces/ws1/providers/openai/keys/primary/rotations", nil).decode(t, &rots)
	if len(rots.Rotations) != 1 || rots.Rotations[0].GraceSeconds != 300 || rots.Rotations[0].Step != broker.StepGrace {
		t.Fatalf("rotations after the page's rotation: %+v", rots)
	}
	rot := rots.Rotations[0]
	if m := getKey("openai/keys/primary"); m.State != "disabled" {
		t.Fatalf("the rotated key is %s", m.State)
	}
	newRow := keyRow("openai/" + rot.NewKeyID)
	run(t, ctx, "the new key's row", chromedp.WaitVisible(chromedp.CSS(newRow)))
	// Its history lists the rotation.
	keyMenu(t, ctx, keyRow("openai/primary"), "data-history")
	waitText(t, ctx, "#rotations", "Rotation "+rot.ID)
	waitText(t, ctx, "#rotations", "in its grace period")
	axeBoth(t, ctx, "the history with a rotation")
	screenshotOf(t, ctx, "#panel", "rotation-history")
	waitAudit(t, ctx, "rotated OpenAI key primary at the provider")

	// A rotation the provider refuses: rolled back, said next to the form.
	openai.FailAdmin("GET", "/v1/models", 401)
	keyMenu(t, ctx, newRow, "data-rotate-open")
	run(t, ctx, "the rotation panel", chromedp.WaitVisible(chromedp.ID("grace-openai-"+rot.NewKeyID)),
		chromedp.Click(chromedp.CSS(`form[data-rotation="openai/`+rot.NewKeyID+`"] button[type=submit]`)))
	answerConfirm(t, ctx, "after the grace period", true)
	waitText(t, ctx, "#rotation-err-openai-"+rot.NewKeyID, "The rotation rolled back")
	waitToast(t, ctx, "serves as before")
	openai.FailAdmin("", "", 0)
	if m := getKey("openai/keys/" + rot.NewKeyID); m.State != "active" {
		t.Fatalf("after a rolled back rotation the key is %s", m.State)
	}
	closePanel(t, ctx)

	// 4. Revoke everywhere. Anthropic, without its admin credential: the
	// dialog says why not, with the key's usage; then with it: done.
	keyMenu(t, ctx, keyRow("anthropic/claude"), "data-delete")
	run(t, ctx, "the delete confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	waitText(t, ctx, `#confirm [data-key-usage="anthropic/claude"]`, "Last 7 days: not used")
	waitText(t, ctx, `#confirm [data-revoke-why="anthropic/claude"]`, "needs the workspace's Anthropic Admin API credential")
	answerConfirm(t, ctx, "Delete Anthropic key 'Claude'", false)
	if r := a.call("admin", "POST", "/v1/workspaces/ws1/providers/anthropic-admin/keys",
		`{"keyId":"admin","credential":{"adminKey":"`+anthropicAdmin+`"}}`); r.status != 201 {
		t.Fatalf("the Anthropic admin credential: %d %s", r.status, r.body)
	}
	signIn(t, ctx, a, "admin", "workspace-section")
	keyMenu(t, ctx, keyRow("anthropic/claude"), "data-delete")
	run(t, ctx, "the revoke box", chromedp.WaitVisible(chromedp.CSS(`#confirm input[data-revoke="anthropic/claude"]`)))
	axeBoth(t, ctx, "the delete confirmation with revoke everywhere")
	screenshotOf(t, ctx, "#confirm", "revoke-everywhere")
	run(t, ctx, "tick revoke everywhere", chromedp.Click(chromedp.CSS(`#confirm input[data-revoke="anthropic/claude"]`)))
	answerConfirm(t, ctx, "Delete Anthropic key 'Claude'", true)
	waitToast(t, ctx, "Deleted Anthropic key 'Claude'; its older versions stay in Vault. At Anthropic: deactivated.")
	if st := anthropic.Status("apikey_01abc"); st != "inactive" {
		t.Fatalf("after revoke everywhere the key is %q at Anthropic", st)
	}
	// OpenAI failing: pending, with the error and the next attempt.
	openai.FailAdmin("DELETE", "/v1/organization/projects", 500)
	keyMenu(t, ctx, newRow, "data-delete")
	run(t, ctx, "tick revoke everywhere", chromedp.WaitVisible(chromedp.CSS(`#confirm input[data-revoke="openai/`+rot.NewKeyID+`"]`)),
		chromedp.Click(chromedp.CSS(`#confirm input[data-revoke="openai/`+rot.NewKeyID+`"]`)))
	waitText(t, ctx, `#confirm [data-key-usage="openai/`+rot.NewKeyID+`"]`, "Last 7 days")
	answerConfirm(t, ctx, "Delete OpenAI key", true)
	waitToast(t, ctx, "At OpenAI: not yet (")
	waitToast(t, ctx, "keybroker asks again at ")
	openai.FailAdmin("", "", 0)
	if r := a.call("admin", "GET", "/v1/workspaces/ws1/providers/openai/keys/"+rot.NewKeyID, nil); r.status != 404 {
		t.Fatalf("a key revoked everywhere is still in its pool: %d", r.status)
	}
	waitAudit(t, ctx, "revoked Anthropic key claude at the provider")

	// 6. The rotation schedule, in the settings card: a bad value refused
	// next to its field, then 90 days.
	waitText(t, ctx, "#lifecycle-text", "Rotation: no schedule.")
	run(t, ctx, "change the schedule", chromedp.Click(chromedp.ID("lifecycle-change")), chromedp.WaitVisible(chromedp.ID("rotate-after")),
		chromedp.SendKeys(chromedp.ID("rotate-after"), "90x"), chromedp.Click(chromedp.CSS(`#lifecycle-form button[type=submit]`)))
	answerConfirm(t, ctx, "Rotate keys older than 90x", true)
	waitTrue(t, ctx, "the refusal next to the field", `document.getElementById('rotate-after').getAttribute('aria-invalid') === 'true' && document.getElementById('rotate-after-err').textContent !== ''`)
	axeBoth(t, ctx, "the rotation schedule with an error")
	var ls client.LifecycleSettings
	a.call("admin", "GET", "/v1/workspaces/ws1/lifecycle", nil).decode(t, &ls)
	if ls.RotateAfter != "" {
		t.Fatalf("a refused schedule was written: %+v", ls)
	}
	run(t, ctx, "90 days", chromedp.SetValue(chromedp.ID("rotate-after"), "90d"), chromedp.Click(chromedp.CSS(`#lifecycle-form button[type=submit]`)))
	answerConfirm(t, ctx, "Rotate keys older than 90 days", true)
	waitText(t, ctx, "#lifecycle-text", "keys older than 90 days are rotated at the provider")
	a.call("admin", "GET", "/v1/workspaces/ws1/lifecycle", nil).decode(t, &ls)
	if ls.RotateAfter != "90d" {
		t.Fatalf("the schedule after the page's change: %+v", ls)
	}
	if f := focused(t, ctx); f != "lifecycle-change" {
		t.Fatalf("after the schedule is saved the focus is on %q", f)
	}
	// The workspace with its expiring key, its admin credentials and its
	// schedule, desktop and phone, light and dark (axe-core first).
	run(t, ctx, "dismiss the message", chromedp.Click(chromedp.ID("toast-close")))
	viewShots(t, ctx, "lifecycle")

	// A reader sees it all without a control.
	signIn(t, ctx, a, "reader", "workspace-section")
	run(t, ctx, "the admin credential's row", chromedp.WaitVisible(chromedp.CSS(admin)))
	waitText(t, ctx, "#lifecycle-text", "90 days")
	if n := eval[int](t, ctx, `document.querySelectorAll('`+admin+` button, #lifecycle-setting button:not([hidden])').length`); n != 0 {
		t.Fatalf("a reader is offered %d lifecycle controls", n)
	}
	for _, s := range []string{adminKey, anthropicAdmin, primary} {
		if pageHolds(t, ctx, s) {
			t.Fatal("a key is in the reader's page")
		}
	}

	// An organization: the schedule is in its card of linked workspaces;
	// its chart counts its keys' resolutions.
	if r := a.call("org-admin", "POST", "/v1/organizations/acme/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "shared", Name: "Shared"}); r.status != 201 {
		t.Fatalf("an organization key: %d %s", r.status, r.body)
	}
	signIn(t, ctx, a, "org-admin", "workspace-section")
	waitText(t, ctx, "#linked-section #lifecycle-text", "Rotation: no schedule.")
	waitText(t, ctx, "#usage", "No resolution in the last 7 days.")
	run(t, ctx, "the organization's schedule", chromedp.Click(chromedp.ID("lifecycle-change")), chromedp.WaitVisible(chromedp.ID("rotate-after")),
		chromedp.SendKeys(chromedp.ID("rotate-after"), "36h"), chromedp.Click(chromedp.CSS(`#lifecycle-form button[type=submit]`)))
	answerConfirm(t, ctx, "Rotate keys older than 36 hours", true)
	waitText(t, ctx, "#lifecycle-text", "keys older than 36 hours")
	a.call("org-admin", "GET", "/v1/organizations/acme/lifecycle", nil).decode(t, &ls)
	if ls.RotateAfter != "36h" {
		t.Fatalf("the organization's schedule after the page's change: %+v", ls)
	}
	keyMenu(t, ctx, keyRow("openai/shared"), "data-rotate-open")
	waitText(t, ctx, `[data-rotate-why="openai/shared"]`, "keybroker rotates OpenAI keys with the organization's OpenAI admin API credential")
}
