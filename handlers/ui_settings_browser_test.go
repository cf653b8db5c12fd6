package handlers_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

// A workspace's settings on the page, end to end in Chromium against a
// real keybroker, Vault and PostgreSQL: an operator links the workspace to
// an organization in the side panel (a bad id refused there, nothing
// written), and the overview then says the organization's key serves;
// inherit turned off (the provider then has no key) and on again; the
// workspace unlinked. An admin of the workspace is not offered the link;
// the panel is axe-core clean in light and dark. Each step is read back
// from the API.
func TestAdminPageSettingsInARealBrowser(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	if r := a.call("org-admin", "POST", "/v1/organizations/acme/providers/openai/keys", client.AddKeyRequest{APIKey: openaiKey(t), KeyID: "shared", Name: "Shared"}); r.status != 201 {
		t.Fatalf("an organization key: %d %s", r.status, r.body)
	}
	ctx0 := context.Background()
	settings := func() broker.Settings {
		t.Helper()
		s, err := a.ground.keys.GetSettings(ctx0, "ws1")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	status := `[data-status="openai"]`
	ctx := browser(t)

	// An admin of ws1 sees the settings, not the link.
	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, "#org-text", "belongs to no organization")
	if eval[bool](t, ctx, `document.getElementById('org-change').checkVisibility()`) {
		t.Fatal("an admin is offered to link the workspace to an organization")
	}

	signIn(t, ctx, a, "operator", "workspaces-section")
	run(t, ctx, "open ws1", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws1"), chromedp.WaitVisible(chromedp.ID("workspace-section")))
	waitShown(t, ctx)
	showAllSources(t, ctx)
	waitText(t, ctx, status, "No key: calls fail")
	run(t, ctx, "open the link form", chromedp.Click(chromedp.ID("org-change")), chromedp.WaitVisible(chromedp.ID("org-id")))
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the organization panel ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	run(t, ctx, "a bad id", chromedp.SendKeys(chromedp.ID("org-id"), "Acme Inc"), chromedp.Click(chromedp.CSS(`#org-form button[type=submit]`)))
	waitText(t, ctx, "#org-err", "is not an organization id")
	noConfirmOpen(t, ctx, "a bad organization id")
	if s := settings(); s.Organization != "" {
		t.Fatalf("a refused id linked the workspace to %q", s.Organization)
	}
	run(t, ctx, "link to acme", chromedp.SetValue(chromedp.ID("org-id"), "acme"), chromedp.Click(chromedp.CSS(`#org-form button[type=submit]`)))
	answerConfirm(t, ctx, "will use acme's keys (inherit is on)", true)
	waitToast(t, ctx, "Linked ws1 to acme")
	waitText(t, ctx, "#org-text", "belongs to the organization acme")
	waitText(t, ctx, status, "Calls use organization acme's key 'Shared' (1 usable key; BYOK, not billed")
	if s := settings(); s.Organization != "acme" || !s.Inherit {
		t.Fatalf("after the link: %+v", s)
	}

	// Inherit off: the provider has no key any more; on again.
	run(t, ctx, "turn inherit off", chromedp.Click(chromedp.ID("inherit-toggle")))
	answerConfirm(t, ctx, "will no longer use acme's keys", true)
	waitText(t, ctx, "#inherit-text", "Inherit is off")
	waitText(t, ctx, status, "No key: calls fail")
	if s := settings(); s.Inherit {
		t.Fatalf("after inherit off: %+v", s)
	}
	run(t, ctx, "turn inherit on", chromedp.Click(chromedp.ID("inherit-toggle")))
	answerConfirm(t, ctx, "will use acme's keys", true)
	waitText(t, ctx, "#inherit-text", "Inherit is on")
	waitText(t, ctx, status, "Calls use organization acme's key 'Shared'")
	if s := settings(); !s.Inherit {
		t.Fatalf("after inherit on: %+v", s)
	}

	// Unlink.
	run(t, ctx, "open the link form", chromedp.Click(chromedp.ID("org-change")), chromedp.WaitVisible(chromedp.ID("org-unlink")))
	run(t, ctx, "unlink", chromedp.Click(chromedp.ID("org-unlink")))
	answerConfirm(t, ctx, "will no longer use acme's keys", true)
	waitToast(t, ctx, "Unlinked ws1 from acme")
	waitText(t, ctx, "#org-text", "belongs to no organization")
	waitText(t, ctx, status, "No key: calls fail")
	if s := settings(); s.Organization != "" {
		t.Fatalf("after the unlink: %+v", s)
	}
}
