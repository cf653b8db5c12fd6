package handlers_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/oidctest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// newUISignInAPI is a keybroker server with people's sign-in against a
// real OpenID provider (Vault's, behind its front door), on a loopback
// address known before the server is built: the callback registered with
// the relying party is the server's real one, so that a browser the
// provider sends back lands on it.
func newUISignInAPI(t *testing.T) (*api, *oidctest.Provider) {
	t.Helper()
	idp := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{"http://127.0.0.1/auth/callback"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	callback := "http://" + ln.Addr().String() + "/auth/callback"
	a := newAPIGround(t, handlers.ModeAll, kbtest.Options{}, withSignIn(t, idp, callback))
	srv := httptest.NewUnstartedServer(a.router)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	a.srv = srv
	a.http = &http.Client{Transport: newSpecCheck(t, srv.URL, http.DefaultTransport), Timeout: 30 * time.Second}
	return a, idp
}

// sessionCookie is the browser's session cookie for the server (nil when
// it holds none); CDP sees HttpOnly cookies, the page does not.
func sessionCookie(t *testing.T, ctx context.Context, a *api) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{a.srv.URL + "/ui/"}})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "kb_session" {
			return c
		}
	}
	return nil
}

// withCookie sends a request with the session cookie value and headers
// (name, value, ...), and answers its status.
func withCookie(t *testing.T, a *api, method, path, value string, header ...string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "kb_session", Value: value})
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A person signs in on the page with their identity provider, end to end
// in Chromium against a real OpenID provider (Vault's) and a real
// keybroker, Vault and PostgreSQL: the sign-in view offers the provider
// first and the token form second (axe-core clean in both colour
// schemes); Wes types his password at the provider's form and lands on
// the workspace he was looking at, named in the header with his roles;
// he adds a key in ws1, where his group makes him admin (the trail, and
// the page, name him), and sees ws2, where he is a reader, read-only; the session cookie
// is HttpOnly and strict, and survives a reload; a session ended
// elsewhere brings the sign-in view back, saying so; Sign out ends the session
// at keybroker (the cookie no longer authenticates) and shows the sign-in
// view; the token form still works. No secret (the session cookie, the
// password, the client secret, the key) is in the DOM, the console or
// the server's log.
func TestUISignInWithTheIdentityProviderInARealBrowser(t *testing.T) {
	a, idp := newUISignInAPI(t)
	if err := idp.SetGroups(t.Context(), "wes", "kb-ws-ws1-admin", "kb-ws-ws2-reader"); err != nil {
		t.Fatal(err)
	}
	wes, _ := idp.User("wes")
	ws2Key := openaiKey(t)
	if r := a.call("admin-ws2", "PUT", "/v1/workspaces/ws2/keys/openai", client.PutKeyRequest{APIKey: ws2Key}); r.status != http.StatusCreated {
		t.Fatalf("set up ws2: %d %s", r.status, r.body)
	}
	ctx := browser(t)
	console := recordConsole(t, ctx)
	eval[bool](t, ctx, `console.log('console-probe-'+'ok'), true`)
	for deadline := time.Now().Add(20 * time.Second); !console.holds("console-probe-ok"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the browser's console is not recorded")
		}
	}
	secrets := []string{wes.Password, idp.ClientSecret, ws2Key}
	noLeak := func(step string) {
		t.Helper()
		l := logs.String()
		for _, s := range secrets {
			switch {
			case pageHolds(t, ctx, s):
				t.Fatalf("%s: a secret (%s...) is in the DOM or sessionStorage", step, s[:4])
			case console.holds(s):
				t.Fatalf("%s: a secret (%s...) is in the browser's console", step, s[:4])
			case strings.Contains(l, s):
				t.Fatalf("%s: a secret (%s...) is in the server's log", step, s[:4])
			}
		}
	}

	// The sign-in view: the provider first, the token form second.
	run(t, ctx, "open the page", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws1"), chromedp.WaitVisible(chromedp.ID("signin-idp")))
	if !eval[bool](t, ctx, `!!(document.getElementById('signin-idp').compareDocumentPosition(document.getElementById('token')) & Node.DOCUMENT_POSITION_FOLLOWING)`) {
		t.Fatal("the token form comes before the identity provider's sign-in")
	}
	if !eval[bool](t, ctx, `getComputedStyle(document.getElementById('token')).display !== 'none' && !document.getElementById('signin-section').hidden`) {
		t.Fatal("the token form is not offered next to the identity provider")
	}
	waitText(t, ctx, "#signin-section", "Sign in with your identity provider")
	waitText(t, ctx, "#signin-section", "Or sign in with an API token")
	if href := eval[string](t, ctx, `document.getElementById('signin-idp').getAttribute('href')`); href != "/auth/login?return=%2Fui%2F%23%2Fworkspace%2Fws1" {
		t.Fatalf("the sign-in link is %q", href)
	}
	if eval[bool](t, ctx, `document.getElementById('views').checkVisibility()`) {
		t.Fatal("the sign-in view shows the views' navigation")
	}
	for _, scheme := range []string{"light", "dark"} {
		colorScheme(t, ctx, scheme)
		axeCheck(t, ctx, "the sign-in view with the identity provider ("+scheme+")")
	}
	colorScheme(t, ctx, "light")
	viewShots(t, ctx, "signin")

	// Wes signs in at the provider's form and comes back to ws1.
	run(t, ctx, "sign in at the identity provider",
		chromedp.Click(chromedp.ID("signin-idp")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "wes"),
		chromedp.SendKeys(chromedp.ID("password"), wes.Password),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("workspace-section")))
	waitShown(t, ctx)
	waitText(t, ctx, "#who", "Signed in as Wes Admin (wes@example.com): admin of workspace ws1 (group kb-ws-ws1-admin), reader of workspace ws2 (group kb-ws-ws2-reader)")
	waitText(t, ctx, "#workspace-title", "Workspace ws1")
	if got := eval[string](t, ctx, `location.pathname + location.hash`); got != "/ui/#/workspace/ws1" {
		t.Fatalf("the person lands on %q, want the view they signed in from", got)
	}
	if !eval[bool](t, ctx, `!document.getElementById('signout').hidden && document.getElementById('signin-section').hidden`) {
		t.Fatal("the header offers no Sign out, or the sign-in view stays")
	}
	if eval[string](t, ctx, `JSON.stringify(Object.assign({}, sessionStorage))`) != `{"keybroker.scope":"{\"kind\":\"workspace\",\"id\":\"ws1\"}"}` {
		t.Fatalf("the page keeps %s in sessionStorage", eval[string](t, ctx, `Object.keys(sessionStorage).join(',')`))
	}
	ck := sessionCookie(t, ctx, a)
	if ck == nil || !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict || ck.Path != "/" {
		t.Fatalf("the session cookie: %+v", ck != nil)
	}
	secrets = append(secrets, remember(ck.Value))
	if eval[bool](t, ctx, `document.cookie.includes('kb_session')`) {
		t.Fatal("the page's script reads the session cookie")
	}
	noLeak("signed in")

	// The admin of ws1 adds a key; the trail names him.
	key := openaiKey(t)
	secrets = append(secrets, key)
	openAddForm(t, ctx, "openai")
	run(t, ctx, "add a key",
		chromedp.SendKeys(chromedp.ID("key-openai"), key),
		chromedp.SendKeys(chromedp.ID("newname-openai"), "Wes's key"),
		chromedp.Click(chromedp.CSS(`form[data-form="openai"] button[type=submit]`)))
	answerConfirm(t, ctx, "OpenAI calls will use 'Wes's key' from now on", true)
	waitToast(t, ctx, "Added OpenAI key 'Wes's key'")
	var page client.AuditPage
	r := a.call("operator", "GET", "/v1/workspaces/ws1/audit", nil)
	r.decode(t, &page)
	if r.status != http.StatusOK || len(page.Events) == 0 ||
		page.Events[0].Action != "key.create" || page.Events[0].Actor != "person:"+idp.Issuer+"|"+wes.EntityID+" (Wes Admin <wes@example.com>)" {
		t.Fatalf("the trail of ws1: %d %+v", r.status, page.Events)
	}
	// The page names him in words: the key's author and the trail.
	waitText(t, ctx, `[data-changed="openai/default"]`, "changed by Wes Admin <wes@example.com> at")
	waitAudit(t, ctx, "Wes Admin <wes@example.com> added OpenAI key default")
	noLeak("added a key")

	// ws2, where Wes is a reader: the keys, no control that changes them.
	openSwitcher(t, ctx)
	run(t, ctx, "open ws2", chromedp.Click(chromedp.CSS(`#workspace-list button[data-scope="workspace/ws2"]`)))
	waitText(t, ctx, "#workspace-title", "Workspace ws2")
	waitShown(t, ctx)
	waitText(t, ctx, `[data-status="openai"]`, "Calls use the workspace's own key 'default'")
	waitText(t, ctx, "#scope-hint", "You are a reader of this workspace")
	if n := eval[int](t, ctx, `document.querySelectorAll('#keys input, #keys button, #keys form, #fallback-toggle:not([hidden]), #inherit-toggle:not([hidden]), #add-provider:not([hidden])').length`); n != 0 {
		t.Fatalf("a reader of ws2 sees %d edit controls", n)
	}
	if eval[bool](t, ctx, `!document.getElementById('nav-tokens').hidden`) {
		t.Fatal("a person who is no operator is offered the tokens view")
	}
	// A scope he has no role in says so.
	run(t, ctx, "go to ws3", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws3"))
	waitText(t, ctx, "#open-error", "You have no role in workspace ws3")

	// A reload keeps him signed in (the cookie), back in ws1 with forms.
	run(t, ctx, "reload at ws1", chromedp.Navigate(a.srv.URL+"/ui/#/workspace/ws1"), chromedp.Reload())
	waitText(t, ctx, "#who", "Signed in as Wes Admin")
	run(t, ctx, "see the forms", chromedp.WaitVisible(chromedp.CSS(`button[data-add="openai"]`)))
	waitShown(t, ctx)
	noLeak("reloaded")

	// A session ended elsewhere: the page's next call brings the sign-in
	// view back, saying so; Wes signs in again and lands where he was.
	if st := withCookie(t, a, "POST", "/auth/logout", ck.Value, "Origin", a.srv.URL, "X-Keybroker-Csrf", "1"); st != http.StatusNoContent {
		t.Fatalf("end the session elsewhere: %d", st)
	}
	openSwitcher(t, ctx)
	run(t, ctx, "open ws2 with an ended session", chromedp.Click(chromedp.CSS(`#workspace-list button[data-scope="workspace/ws2"]`)))
	waitText(t, ctx, "#signin-ended", "Your session has ended or expired")
	if !eval[bool](t, ctx, `document.getElementById('who').hidden && document.getElementById('workspace-section').hidden && !document.getElementById('signin-idp').hidden`) {
		t.Fatal("the page of an ended session still shows the person or a workspace")
	}
	run(t, ctx, "sign in again",
		chromedp.Click(chromedp.ID("signin-idp")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "wes"),
		chromedp.SendKeys(chromedp.ID("password"), wes.Password),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("workspace-section")))
	waitShown(t, ctx)
	waitText(t, ctx, "#workspace-title", "Workspace ws2")
	waitText(t, ctx, "#who", "Signed in as Wes Admin")
	if ck = sessionCookie(t, ctx, a); ck == nil {
		t.Fatal("no session cookie after signing in again")
	}
	secrets = append(secrets, remember(ck.Value))

	// Sign out: the session ends at keybroker, the sign-in view is back.
	run(t, ctx, "sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin-idp")))
	if !eval[bool](t, ctx, `document.getElementById('who').hidden && document.getElementById('workspace-section').hidden`) {
		t.Fatal("the signed-out page still shows the person or a workspace")
	}
	if c := sessionCookie(t, ctx, a); c != nil {
		t.Fatal("the browser keeps the session cookie after signing out")
	}
	if st := withCookie(t, a, "GET", "/v1/whoami", ck.Value); st != http.StatusUnauthorized {
		t.Fatalf("the signed-out session's cookie still authenticates: %d", st)
	}
	noLeak("signed out")

	// The token form still works, next to the provider's sign-in.
	signIn(t, ctx, a, "admin", "workspace-section")
	waitText(t, ctx, "#who", "role admin")
	run(t, ctx, "see the forms", chromedp.WaitVisible(chromedp.CSS(`button[data-add="openai"]`)))
	noLeak("signed in with a token")
}
