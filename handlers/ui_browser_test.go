package handlers_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keybroker/keybroker/handlers"
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

// run runs steps. A single step whose node the page replaced between
// finding it and acting on it (a list rendered again as its data came in:
// "Could not find node with given id") is tried again, on the node found
// anew: the action did not happen.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for try := 0; ; try++ {
		err := chromedp.Do(ctx, steps...)
		if err == nil {
			return
		}
		if len(steps) != 1 || try == 4 || !strings.Contains(err.Error(), "Could not find node with given id") {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
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
// named token, waits for the section that follows and for the page to
// have shown all of it (no region aria-busy).
//
// The storage is cleared before the page loads, from the page already
// open on keybroker's origin: a page loaded with a token signs in by
// itself, and its history.replaceState would end a navigation's wait
// early (chromedp takes any same-document navigation for the end of the
// load), leaving the test acting on the page it meant to leave.
func signIn(t *testing.T, ctx context.Context, a *api, token, section string) {
	t.Helper()
	if eval[string](t, ctx, `location.origin`) == a.srv.URL {
		eval[bool](t, ctx, `sessionStorage.clear(), true`)
	}
	run(t, ctx, "sign in as "+token,
		chromedp.Navigate(a.srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), a.tokens[token]),
		chromedp.Click(chromedp.CSS(`#signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID(section)))
	waitShown(t, ctx)
}

// waitShown waits until no region of the page is busy (aria-busy): the
// page has shown everything its last navigation asked for.
func waitShown(t *testing.T, ctx context.Context) {
	t.Helper()
	waitTrue(t, ctx, "the page to finish showing the scope", `document.querySelector('[aria-busy="true"]') === null`)
}

// waitTrue waits until the expression is true in the page.
func waitTrue(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s (%s)", what, expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answerConfirm waits for the confirmation dialog, checks that it says
// want, and confirms (ok) or cancels it.
func answerConfirm(t *testing.T, ctx context.Context, want string, ok bool) {
	t.Helper()
	run(t, ctx, "wait for the confirmation", chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	waitText(t, ctx, "#confirm", want)
	button := "confirm-cancel"
	if ok {
		button = "confirm-ok"
	}
	run(t, ctx, "answer the confirmation", chromedp.Click(chromedp.ID(button)), chromedp.WaitNotVisible(chromedp.ID("confirm")))
}

// noConfirmOpen fails when the confirmation dialog is open.
func noConfirmOpen(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if eval[bool](t, ctx, `document.getElementById('confirm').open`) {
		t.Fatalf("%s asks for a confirmation; it changes nothing that resolves", what)
	}
}

// waitToast waits until the last action's message says want.
func waitToast(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	waitText(t, ctx, "#toast-text", want)
}

// screenshotDir is where the tests save the page's pictures:
// KEYBROKER_SCREENSHOTS (make screenshots sets docs/ui), else
// ui-screenshots at the top of the checkout (ignored by git).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KEYBROKER_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "ui-screenshots")
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page as name.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir(t), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
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
	// A browser that accepts gzip gets the files compressed (the first
	// load's budget, docs/ui.md), the same bytes once inflated; one that
	// does not, or refuses it, gets them as they are.
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		body := func(accept string) ([]byte, string) {
			req, _ := http.NewRequest(http.MethodGet, a.srv.URL+path, nil)
			req.Header.Set("Accept-Encoding", accept)
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
				t.Fatalf("GET %s (Accept-Encoding %q): %d %v %v", path, accept, resp.StatusCode, resp.Header, err)
			}
			return b, resp.Header.Get("Content-Encoding")
		}
		plain, enc := body("")
		if enc != "" {
			t.Fatalf("%s without Accept-Encoding comes %s", path, enc)
		}
		if _, enc := body("gzip;q=0, identity"); enc != "" {
			t.Fatalf("%s comes %s to a client that refuses gzip", path, enc)
		}
		packed, enc := body("br, gzip")
		if enc != "gzip" || len(packed) >= len(plain) {
			t.Fatalf("%s to a client that takes gzip: %q, %d bytes for %d", path, enc, len(packed), len(plain))
		}
		zr, err := gzip.NewReader(bytes.NewReader(packed))
		if err != nil {
			t.Fatal(err)
		}
		inflated, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(inflated, plain) {
			t.Fatalf("%s inflated is not the file (%v)", path, err)
		}
	}
	// The resolver-only server has no admin page.
	r := newAPI(t, handlers.ModeResolver)
	if resp, err := http.Get(r.srv.URL + "/ui/"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("resolver mode serves the page: %v %v", resp.StatusCode, err)
	}
}

// openAddForm opens a provider's add form in the side panel: its Add a
// key button when the scope's pool has keys, else through Add a provider
// and the picker. A form already open stays as it is.
func openAddForm(t *testing.T, ctx context.Context, provider string) {
	t.Helper()
	form := `form[data-form="` + provider + `"]`
	if eval[bool](t, ctx, `(() => { const f = document.querySelector('`+form+`'); return !!f && f.checkVisibility(); })()`) {
		return
	}
	waitShown(t, ctx)
	showTab(t, ctx, "keys")
	closePanel(t, ctx)
	if eval[bool](t, ctx, `!!document.querySelector('button[data-add="`+provider+`"]')`) {
		run(t, ctx, "open the "+provider+" add form", chromedp.Click(chromedp.CSS(`button[data-add="`+provider+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(form+` button[type=submit]`)))
		return
	}
	run(t, ctx, "add the provider "+provider,
		chromedp.Click(chromedp.ID("add-provider")), chromedp.WaitVisible(chromedp.CSS(`button[data-pick="`+provider+`"]`)),
		chromedp.Click(chromedp.CSS(`button[data-pick="`+provider+`"]`)), chromedp.WaitVisible(chromedp.CSS(form+` button[type=submit]`)))
}

// closePanel closes the side panel when it is open.
func closePanel(t *testing.T, ctx context.Context) {
	t.Helper()
	if eval[bool](t, ctx, `document.getElementById('panel').open`) {
		run(t, ctx, "close the side panel", chromedp.Click(chromedp.ID("panel-close")), chromedp.WaitNotVisible(chromedp.ID("panel")))
	}
}

// keyMenu opens the actions menu of the key row row (a selector) and
// picks the item that has the attribute item (data-test, data-delete, ...),
// closing the side panel first.
func keyMenu(t *testing.T, ctx context.Context, row, item string) {
	t.Helper()
	showTab(t, ctx, "keys")
	closePanel(t, ctx)
	entry := row + ` [role=menu] button[` + item + `]`
	run(t, ctx, "pick "+item+" in the menu of "+row,
		chromedp.Click(chromedp.CSS(row+` button[data-menu]`)), chromedp.WaitVisible(chromedp.CSS(entry)), chromedp.Click(chromedp.CSS(entry)))
}

// keyRow is the selector of a key's row (provider/keyId).
func keyRow(id string) string { return `tr[data-key="` + id + `"]` }

// openSwitcher opens the header's scope switcher (when a scope is on
// screen; the home view shows the list itself).
func openSwitcher(t *testing.T, ctx context.Context) {
	t.Helper()
	if eval[bool](t, ctx, `document.getElementById('scope-search').checkVisibility()`) {
		return
	}
	run(t, ctx, "open the scope switcher", chromedp.Click(chromedp.ID("scope-switch")), chromedp.WaitVisible(chromedp.ID("scope-search")))
}

// showTab shows a part of the scope: "keys" (its overview and keys) or
// "activity" (its calls and audit trail).
func showTab(t *testing.T, ctx context.Context, tab string) {
	t.Helper()
	if eval[string](t, ctx, `document.getElementById('tab-`+tab+`').getAttribute('aria-selected')`) == "true" {
		return
	}
	closePanel(t, ctx)
	run(t, ctx, "show the "+tab+" tab", chromedp.Click(chromedp.ID("tab-"+tab)), chromedp.WaitVisible(chromedp.ID(tab+"-panel")))
}

// waitAudit shows the Activity tab, waits until the audit trail says
// want, and goes back to the keys.
func waitAudit(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	showTab(t, ctx, "activity")
	waitText(t, ctx, "#audit", want)
	showTab(t, ctx, "keys")
}

// showAllSources unfolds the overview's list of the providers that use
// no key of the scope's own (hosted and billed, or none).
func showAllSources(t *testing.T, ctx context.Context) {
	t.Helper()
	waitShown(t, ctx)
	if eval[bool](t, ctx, `(b => !!b && b.getAttribute('aria-expanded') === 'false')(document.getElementById('sources-more'))`) {
		run(t, ctx, "show every provider's source", chromedp.Click(chromedp.ID("sources-more")), chromedp.WaitVisible(chromedp.ID("sources-rest")))
	}
}

// viewShots saves the page as it is in four pictures for docs/ui.md:
// name (a 1280 × 800 desktop, light), name-dark, name-phone (390 px) and
// name-phone-dark, each checked first by axe-core and for sideways
// scrolling; then it is back to the tests' viewport, light.
func viewShots(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	for _, shot := range []struct {
		suffix, scheme string
		w, h           int64
	}{{"", "light", 1280, 800}, {"-dark", "dark", 1280, 800}, {"-phone", "light", 390, 844}, {"-phone-dark", "dark", 390, 844}} {
		run(t, ctx, "a viewport for "+name+shot.suffix, chromedp.EmulateViewport(shot.w, shot.h))
		colorScheme(t, ctx, shot.scheme)
		waitTrue(t, ctx, "the layout at the new width", `document.documentElement.clientWidth === `+strconv.FormatInt(shot.w, 10))
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > int(shot.w) {
			t.Fatalf("%s%s is %d px wide at %d px: it scrolls sideways", name, shot.suffix, w, shot.w)
		}
		axeCheck(t, ctx, name+shot.suffix)
		screenshot(t, ctx, name+shot.suffix)
	}
	run(t, ctx, "back to the tests' viewport", chromedp.EmulateViewport(1200, 900))
	colorScheme(t, ctx, "light")
}
