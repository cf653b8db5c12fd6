package handlers_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/oidclogin"
	"github.com/keybroker/keybroker/auth/rolemap"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/oidctest"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// The callback keybroker registers at the provider. Vault matches
// loopback redirect URIs whatever their port; the test takes the
// provider's redirect and calls the real server's callback with it.
const signInCallback = "http://127.0.0.1:1/auth/callback"

const testRoleMap = `
rules:
  - group: kb-operators
    operator: true
  - group: "kb-ws-{ws}-admin"
    admin: {workspace: "{ws}"}
  - group: "kb-ws-{ws}-reader"
    reader: {workspace: "{ws}"}
`

type signInGround struct {
	*api
	settings *handlers.SignIn
	idp      *oidctest.Provider
	origin   string
	plain    *http.Client // follows no redirect, keeps no cookie
}

func newSignInGround(t *testing.T, tune ...func(*handlers.Options)) *signInGround {
	t.Helper()
	idp := oidctest.StartVaultProvider(t, oidctest.Options{RedirectURIs: []string{"http://127.0.0.1/auth/callback"},
		PublicRedirectURIs: []string{"http://127.0.0.1/callback"}})
	for _, u := range idp.Users() {
		remember(u.Password)
	}
	remember(idp.ClientSecret)
	cli, err := oidclogin.New(t.Context(), oidclogin.Config{Issuer: idp.Issuer, ClientID: idp.PublicClientID, RedirectURL: "http://127.0.0.1/callback"})
	if err != nil {
		t.Fatal(err)
	}
	signIn := withSignIn(t, idp, signInCallback)
	var si *handlers.SignIn
	a := newAPIGround(t, handlers.ModeAll, kbtest.Options{}, func(o *handlers.Options, g *keyGround) {
		signIn(o, g)
		o.SignIn.Issuer, o.SignIn.CLI, o.SignIn.CLIClientID = idp.Issuer, cli, idp.PublicClientID
		o.SignIn.CLIDeviceGrant, o.SignIn.CLITokenUses = true, g.st
		for _, f := range tune {
			f(o)
		}
		si = o.SignIn
	})
	return &signInGround{api: a, settings: si, idp: idp, origin: "http://127.0.0.1:1",
		plain: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request with cookies (name=value) and headers.
func (g *signInGround) do(t *testing.T, method, path, body string, cookies map[string]string, header ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, g.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for n, v := range cookies {
		req.AddCookie(&http.Cookie{Name: n, Value: v})
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := g.plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func cookieOf(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signIn plays user through the whole sign-in and returns the session
// cookie's value and the callback's answer.
func (g *signInGround) signIn(t *testing.T, user string) (string, *http.Response) {
	t.Helper()
	begin := g.do(t, "GET", "/auth/login?return=/ui/workspaces/ws1", "", nil)
	pending := cookieOf(begin, "kb_signin")
	if begin.StatusCode != http.StatusFound || pending == nil || !pending.HttpOnly || pending.SameSite != http.SameSiteLaxMode {
		t.Fatalf("sign-in start: %d, cookie %+v", begin.StatusCode, pending != nil)
	}
	redirect, err := g.idp.Authorize(t.Context(), user, begin.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(redirect)
	if err != nil {
		t.Fatal(err)
	}
	cb := g.do(t, "GET", "/auth/callback?"+u.RawQuery, "", map[string]string{"kb_signin": pending.Value})
	ses := cookieOf(cb, "kb_session")
	if ses == nil {
		return "", cb
	}
	if !ses.HttpOnly || ses.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the session cookie is not HttpOnly and SameSite=Strict: %+v", ses.HttpOnly)
	}
	remember(ses.Value)
	return ses.Value, cb
}

// TestPeopleSignInWithTheirIdentityProvider: the page's sign-in against a
// real OpenID provider (Vault's): the person's groups give their roles,
// scope by scope; the session cookie authenticates the API, unsafe
// requests only from the page's origin with the CSRF header; the trail
// names the person; sign-out ends the session; a person with no role is
// refused; a later sign-in that maps other roles ends the earlier
// sessions; a replayed callback is refused.
func TestPeopleSignInWithTheirIdentityProvider(t *testing.T) {
	g := newSignInGround(t)
	wes, _ := g.idp.User("wes")

	if r := g.do(t, "GET", "/auth/config", "", nil); r.StatusCode != http.StatusOK || !strings.Contains(bodyOf(t, r), `"loginUrl":"/auth/login"`) {
		t.Fatalf("the page asks whether people sign in here: %d", r.StatusCode)
	}
	cookie, cb := g.signIn(t, "wes")
	if cb.StatusCode != http.StatusOK || cookie == "" || !strings.Contains(bodyOf(t, cb), "/ui/workspaces/ws1") {
		t.Fatalf("callback: %d", cb.StatusCode)
	}
	jar := map[string]string{"kb_session": cookie}
	var who client.WhoAmI
	r := g.do(t, "GET", "/v1/whoami", "", jar)
	if err := decodeJSON(r, &who); err != nil || r.StatusCode != http.StatusOK || who.Person == nil || who.Person.Subject != wes.EntityID ||
		who.Person.Name != "Wes Admin" || who.ScopedRoles == nil || who.ScopedRoles.Workspaces["ws1"] != "admin" || who.Role != "admin" ||
		who.ScopedRoles.From["workspace:ws1"] != "rules[1]: group kb-ws-ws1-admin" {
		t.Fatalf("whoami: %d %+v %v", r.StatusCode, who, err)
	}
	put := `{"apiKey":"` + openaiKey(t) + `"}`
	if r := g.do(t, "PUT", "/v1/workspaces/ws1/keys/openai", put, jar); r.StatusCode != http.StatusForbidden || !strings.Contains(bodyOf(t, r), "csrf") {
		t.Fatalf("an unsafe request without the CSRF header: %d", r.StatusCode)
	}
	if r := g.do(t, "PUT", "/v1/workspaces/ws1/keys/openai", put, jar, "X-Keybroker-Csrf", "1", "Origin", "https://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("an unsafe request from another origin: %d", r.StatusCode)
	}
	if r := g.do(t, "PUT", "/v1/workspaces/ws1/keys/openai", put, jar, "X-Keybroker-Csrf", "1", "Origin", g.origin, "Content-Type", "application/json"); r.StatusCode != http.StatusCreated {
		t.Fatalf("the admin of ws1 writes its key from the page: %d %s", r.StatusCode, bodyOf(t, r))
	}
	if r := g.do(t, "GET", "/v1/workspaces/ws2/keys", "", jar); r.StatusCode != http.StatusForbidden {
		t.Fatalf("another workspace: %d", r.StatusCode)
	}
	var page client.AuditPage
	r = g.do(t, "GET", "/v1/workspaces/ws1/audit", "", jar)
	_ = decodeJSON(r, &page)
	want := "person:" + g.idp.Issuer + "|" + wes.EntityID + " (Wes Admin <wes@example.com>)"
	if len(page.Events) == 0 || page.Events[0].Actor != want {
		t.Fatalf("the trail names %q, want %q", page.Events[0].Actor, want)
	}

	// The sign-in is in the operator-wide trail, naming the person and
	// where their roles came from.
	var global client.AuditPage
	g.call("operator", "GET", "/v1/audit?action=session.create", nil).decode(t, &global)
	if len(global.Events) == 0 || global.Events[0].Actor != want ||
		!strings.Contains(global.Events[0].Detail, "admin of workspace ws1 (rules[1]: group kb-ws-ws1-admin)") {
		t.Fatalf("the sign-in in the trail: %+v", global.Events)
	}

	// A person with no mapped role is refused with a page that says so.
	if c, cb := g.signIn(t, "nora"); c != "" || cb.StatusCode != http.StatusForbidden || !strings.Contains(bodyOf(t, cb), "none of your groups") {
		t.Fatalf("a person with no role: %d", cb.StatusCode)
	}

	// Wes loses the admin group at the provider; his next sign-in maps a
	// reader, and ends the session that still said admin.
	if err := g.idp.SetGroups(t.Context(), "wes", "kb-ws-ws1-reader"); err != nil {
		t.Fatal(err)
	}
	second, _ := g.signIn(t, "wes")
	if r := g.do(t, "GET", "/v1/whoami", "", jar); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session whose roles changed: %d", r.StatusCode)
	}
	jar2 := map[string]string{"kb_session": second}
	if r := g.do(t, "PUT", "/v1/workspaces/ws1/keys/openai", put, jar2, "X-Keybroker-Csrf", "1", "Origin", g.origin, "Content-Type", "application/json"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a reader writes: %d", r.StatusCode)
	}

	// Sign-out ends the session server-side.
	if r := g.do(t, "POST", "/auth/logout", "", jar2, "X-Keybroker-Csrf", "1", "Origin", g.origin); r.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", r.StatusCode, bodyOf(t, r))
	}
	if r := g.do(t, "GET", "/v1/whoami", "", jar2); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %d", r.StatusCode)
	}
	g.call("operator", "GET", "/v1/audit?action=session.end", nil).decode(t, &global)
	if len(global.Events) == 0 || !strings.Contains(global.Events[0].Detail, "signed out") || !strings.HasPrefix(global.Events[0].Actor, "person:") {
		t.Fatalf("the sign-out in the trail: %+v", global.Events)
	}

	// Wes loses every group: his next sign-in is refused, and his open
	// sessions end with it.
	third, _ := g.signIn(t, "wes")
	if err := g.idp.SetGroups(t.Context(), "wes"); err != nil {
		t.Fatal(err)
	}
	if c, cb := g.signIn(t, "wes"); c != "" || cb.StatusCode != http.StatusForbidden {
		t.Fatalf("a person who lost every group signs in: %d", cb.StatusCode)
	}
	if r := g.do(t, "GET", "/v1/whoami", "", map[string]string{"kb_session": third}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session of a person who lost every group: %d", r.StatusCode)
	}
	if err := g.idp.SetGroups(t.Context(), "wes", "kb-ws-ws1-reader"); err != nil {
		t.Fatal(err)
	}

	// A replayed callback, and one without the pending cookie.
	begin := g.do(t, "GET", "/auth/login", "", nil)
	pending := cookieOf(begin, "kb_signin")
	redirect, err := g.idp.Authorize(t.Context(), "wes", begin.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(redirect)
	if r := g.do(t, "GET", "/auth/callback?"+u.RawQuery, "", nil); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("a callback without its pending sign-in: %d", r.StatusCode)
	}
	if r := g.do(t, "GET", "/auth/callback?"+u.RawQuery, "", map[string]string{"kb_signin": pending.Value}); r.StatusCode != http.StatusOK {
		t.Fatalf("the callback: %d", r.StatusCode)
	} else if c := cookieOf(r, "kb_session"); c != nil {
		remember(c.Value)
	}
	if r := g.do(t, "GET", "/auth/callback?"+u.RawQuery, "", map[string]string{"kb_signin": pending.Value}); r.StatusCode != http.StatusBadRequest ||
		!strings.Contains(bodyOf(t, r), "already used") {
		t.Fatalf("a replayed callback: %d", r.StatusCode)
	}
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// idToken plays user through the provider for clientID (a secret: the
// confidential client; none: the CLI's public client, with PKCE) and
// returns the ID token carrying nonce.
func (g *signInGround) idToken(t *testing.T, user, clientID, secret, nonce string) string {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), g.idp.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	redirect := "http://127.0.0.1:1/callback"
	if secret != "" {
		redirect = signInCallback
	}
	conf := oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: provider.Endpoint(), Scopes: g.idp.Scopes, RedirectURL: redirect}
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if nonce != "" {
		opts = append(opts, oidc.Nonce(nonce))
	}
	back, err := g.idp.Authorize(t.Context(), user, conf.AuthCodeURL("st", opts...))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(back)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no ID token")
	}
	return remember(raw)
}

// TestTheCLISignsInWithItsIDToken: POST /auth/cli/session takes an ID
// token of the CLI's public client from the real provider with its nonce,
// once, and answers a session token that authenticates as a bearer (no
// CSRF rule: it is not ambient) and signs out; an ID token of the
// confidential client (another audience), a wrong nonce, a replayed ID
// token, a malformed body and a person with no role are refused; a CLI
// session is no cookie.
func TestTheCLISignsInWithItsIDToken(t *testing.T) {
	g := newSignInGround(t)
	wes, _ := g.idp.User("wes")
	post := func(body string) *http.Response {
		return g.do(t, "POST", "/auth/cli/session", body, nil, "Content-Type", "application/json")
	}
	var cfg struct {
		Issuer, CLIClientID string
		CLIDeviceGrant      bool
	}
	if r := g.do(t, "GET", "/auth/config", "", nil); decodeJSON(r, &cfg) != nil || cfg.Issuer != g.idp.Issuer || cfg.CLIClientID != g.idp.PublicClientID || !cfg.CLIDeviceGrant {
		t.Fatalf("/auth/config tells the CLI %+v", cfg)
	}
	for body, want := range map[string]string{
		`{"idToken": "x"`:                       "malformed_json",
		`{"idToken": "x", "nonce": "n", "a":1}`: "malformed_json",
		`{"nonce": "n"}`:                        "idToken is required",
		`{"idToken": "x"}`:                      "malformed",
		`{"idToken": "x", "nonce": "n"}`:        "malformed",
		`{"idToken": "` + strings.Repeat("a", 70<<10) + `", "nonce": "n"}`: "too_large",
	} {
		if r := post(body); r.StatusCode/100 != 4 || !strings.Contains(bodyOf(t, r), want) {
			t.Fatalf("a bad body (%.20s...): %d, want %q", body, r.StatusCode, want)
		}
	}

	nonce := "cli-nonce-" + strings.Repeat("n", 20)
	raw := g.idToken(t, "wes", g.idp.PublicClientID, "", nonce)
	r := post(`{"idToken":"` + raw + `","nonce":"wrong-nonce"}`)
	if b := bodyOf(t, r); r.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "nonce") {
		t.Fatalf("a wrong nonce: %d %s", r.StatusCode, b)
	}
	// A token that carries a nonce is refused without it; one that
	// carries none (as a device grant's) is taken without, and refused
	// with one.
	r = post(`{"idToken":"` + raw + `"}`)
	if b := bodyOf(t, r); r.StatusCode != http.StatusUnauthorized || !strings.Contains(b, "nonce") {
		t.Fatalf("a token with a nonce sent without it: %d %s", r.StatusCode, b)
	}
	bare := g.idToken(t, "wes", g.idp.PublicClientID, "", "")
	if r := post(`{"idToken":"` + bare + `","nonce":"n"}`); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a token without a nonce sent with one: %d", r.StatusCode)
	}
	// Without --oidc-cli-device-grant a token without a nonce is refused
	// before it is looked at (and so not spent).
	g.settings.CLIDeviceGrant = false
	if r := post(`{"idToken":"` + bare + `"}`); r.StatusCode != http.StatusBadRequest || !strings.Contains(bodyOf(t, r), "oidc-cli-device-grant") {
		t.Fatalf("a device grant's token where the server takes none: %d", r.StatusCode)
	}
	g.settings.CLIDeviceGrant = true
	if r := post(`{"idToken":"` + bare + `"}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("a token without a nonce, as the device grant gives: %d %s", r.StatusCode, bodyOf(t, r))
	} else {
		var o struct{ Token string }
		_ = decodeJSON(r, &o)
		remember(o.Token)
	}
	// The same token re-encoded (base64 ignores a line break, and the spare
	// bits of the signature's last character) is the same token: refused.
	head, rest, _ := strings.Cut(bare, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	last := strings.IndexByte(base64URLAlphabet, sig[len(sig)-1])
	flipped := sig[:len(sig)-1] + string(base64URLAlphabet[last^1])
	for _, variant := range []string{head + "." + payload[:10] + `\n` + payload[10:] + "." + sig, head + "." + payload + "." + flipped} {
		if r := post(`{"idToken":"` + variant + `"}`); r.StatusCode == http.StatusCreated {
			t.Fatalf("a re-encoded copy of a used ID token opened a session")
		}
	}
	// Another replica (its own memory, the same database) refuses it too.
	other := newAPIGround(t, handlers.ModeAll, kbtest.Options{}, func(o *handlers.Options, kg *keyGround) {
		o.SignIn = &handlers.SignIn{RP: g.settings.RP, Roles: g.settings.Roles, Sessions: g.settings.Sessions, SealKey: g.settings.SealKey,
			RedirectURL: g.settings.RedirectURL, Issuer: g.settings.Issuer, CLI: g.settings.CLI, CLIClientID: g.settings.CLIClientID,
			CLIDeviceGrant: true, CLITokenUses: g.settings.CLITokenUses}
	})
	req, _ := http.NewRequestWithContext(t.Context(), "POST", other.srv.URL+"/auth/cli/session", strings.NewReader(`{"idToken":"`+bare+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized || !strings.Contains(bodyOf(t, r), "already used") {
		t.Fatalf("the same ID token at another replica: %v %v", r, err)
	}
	r = post(`{"idToken":"` + raw + `","nonce":"` + nonce + `"}`)
	var opened struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if err := decodeJSON(r, &opened); err != nil || r.StatusCode != http.StatusCreated || !strings.HasPrefix(opened.Token, "kbs_") ||
		time.Until(opened.ExpiresAt) < 11*time.Hour || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("the CLI's session: %d %v %v", r.StatusCode, err, opened.ExpiresAt)
	}
	remember(opened.Token)
	if r := post(`{"idToken":"` + raw + `","nonce":"` + nonce + `"}`); r.StatusCode != http.StatusUnauthorized || !strings.Contains(bodyOf(t, r), "already used") {
		t.Fatalf("the same ID token again: %d", r.StatusCode)
	}

	bearer := []string{"Authorization", "Bearer " + opened.Token}
	var who client.WhoAmI
	r = g.do(t, "GET", "/v1/whoami", "", nil, bearer...)
	if err := decodeJSON(r, &who); err != nil || r.StatusCode != http.StatusOK || who.Person == nil || who.Person.Subject != wes.EntityID ||
		who.ScopedRoles == nil || who.ScopedRoles.Workspaces["ws1"] != "admin" {
		t.Fatalf("whoami with the CLI's session: %d %+v %v", r.StatusCode, who, err)
	}
	put := `{"apiKey":"` + openaiKey(t) + `"}`
	if r := g.do(t, "PUT", "/v1/workspaces/ws1/keys/openai", put, nil, append(bearer, "Content-Type", "application/json")...); r.StatusCode != http.StatusCreated {
		t.Fatalf("the CLI's session writes a key without the page's CSRF header: %d %s", r.StatusCode, bodyOf(t, r))
	}
	if r := g.do(t, "GET", "/v1/whoami", "", map[string]string{"kb_session": opened.Token}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the CLI's session as a cookie: %d", r.StatusCode)
	}
	page, _ := g.signIn(t, "wes")
	if r := g.do(t, "GET", "/v1/whoami", "", nil, "Authorization", "Bearer "+page); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the page's session as a bearer: %d", r.StatusCode)
	}

	// The confidential client's ID token: another audience.
	conf := g.idToken(t, "wes", g.idp.ClientID, g.idp.ClientSecret, nonce)
	if r := post(`{"idToken":"` + conf + `","nonce":"` + nonce + `"}`); r.StatusCode != http.StatusUnauthorized || !strings.Contains(bodyOf(t, r), "another client") {
		t.Fatalf("the confidential client's ID token: %d", r.StatusCode)
	}

	// Signing out ends the session server-side.
	if r := g.do(t, "POST", "/auth/logout", "", nil, bearer...); r.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out with the CLI's session: %d %s", r.StatusCode, bodyOf(t, r))
	}
	if r := g.do(t, "GET", "/v1/whoami", "", nil, bearer...); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %d", r.StatusCode)
	}

	// A person with no role is refused, and says so; so is a person who
	// lost every group, whose open sessions end with it.
	nora := g.idToken(t, "nora", g.idp.PublicClientID, "", nonce)
	if r := post(`{"idToken":"` + nora + `","nonce":"` + nonce + `"}`); r.StatusCode != http.StatusForbidden || !strings.Contains(bodyOf(t, r), "none of your groups") {
		t.Fatalf("a person with no role: %d", r.StatusCode)
	}
	second := g.idToken(t, "wes", g.idp.PublicClientID, "", nonce)
	r = post(`{"idToken":"` + second + `","nonce":"` + nonce + `"}`)
	if err := decodeJSON(r, &opened); err != nil || r.StatusCode != http.StatusCreated {
		t.Fatalf("wes again: %d", r.StatusCode)
	}
	remember(opened.Token)
	if err := g.idp.SetGroups(t.Context(), "wes"); err != nil {
		t.Fatal(err)
	}
	third := g.idToken(t, "wes", g.idp.PublicClientID, "", nonce)
	if r := post(`{"idToken":"` + third + `","nonce":"` + nonce + `"}`); r.StatusCode != http.StatusForbidden {
		t.Fatalf("wes with no group: %d", r.StatusCode)
	}
	if r := g.do(t, "GET", "/v1/whoami", "", nil, "Authorization", "Bearer "+opened.Token); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session of a person who lost every group: %d", r.StatusCode)
	}
}

// TestRefusedCLISignInsCountAsFailedAuthentications: each refused ID token
// at POST /auth/cli/session uses one of the address's failed
// authentications; past them, 429 before any check.
func TestRefusedCLISignInsCountAsFailedAuthentications(t *testing.T) {
	g := newSignInGround(t, func(o *handlers.Options) {
		o.Limiter = auth.NewLimiter(auth.RateLimits{FailedAuthPerAddr: 0.001, FailedAuthBurst: 3}, nil)
	})
	for i := range 5 {
		r := g.do(t, "POST", "/auth/cli/session", `{"idToken":"a.b.c","nonce":"n"}`, nil, "Content-Type", "application/json")
		want := http.StatusUnauthorized
		if i >= 3 {
			want = http.StatusTooManyRequests
		}
		if r.StatusCode != want {
			t.Fatalf("refused ID token %d: %d, want %d", i+1, r.StatusCode, want)
		}
	}
}

// withSignIn is the tune of newAPIGround that signs people in with idp, the
// callback at redirectURL: the relying party, the test's role mapping,
// sessions signed with a test ring, sign-ins audited.
func withSignIn(t *testing.T, idp *oidctest.Provider, redirectURL string) func(*handlers.Options, *keyGround) {
	t.Helper()
	for _, u := range idp.Users() {
		remember(u.Password)
	}
	remember(idp.ClientSecret)
	rp, err := oidclogin.New(t.Context(), oidclogin.Config{Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, RedirectURL: redirectURL})
	if err != nil {
		t.Fatal(err)
	}
	roles, err := rolemap.Parse([]byte(testRoleMap))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keyring.New("k1", []byte("sign-in test admin signing key 0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	return func(o *handlers.Options, g *keyGround) {
		sessions, err := session.NewService(g.st, session.Options{Keys: ring})
		if err != nil {
			t.Fatal(err)
		}
		o.SignIn = &handlers.SignIn{RP: rp, Roles: roles, Sessions: sessions, SealKey: oidclogin.KeyFrom([]byte("seal")), RedirectURL: redirectURL,
			Audit: g.st.AppendAudits}
	}
}

// base64URLAlphabet is RFC 4648's URL-safe alphabet, in order.
const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
