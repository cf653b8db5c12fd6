package handlers

import (
	"context"
	"encoding/hex"
	"errors"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/assertion"
	"github.com/keybroker/keybroker/auth/oidclogin"
	"github.com/keybroker/keybroker/auth/rolemap"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/broker"
)

// SignIn is people's sign-in with their identity provider
// (docs/identity.md): the OpenID Connect relying party, the role mapping,
// the sessions, and the key that seals a sign-in in flight.
type SignIn struct {
	RP       *oidclogin.RP
	Roles    *rolemap.Map
	Sessions *session.Service
	// SealKey (32 bytes) seals the pending sign-in into a cookie; every
	// admin replica holds it (derived from the admin signing keys).
	SealKey []byte
	// Audit records sign-ins and sign-outs in the operator-wide trail
	// (PostgreSQL's audit_events); nil records none.
	Audit func(ctx context.Context, evs []broker.AuditEvent) error
	// RedirectURL is the callback registered at the provider; its origin
	// is the page's, which unsafe requests must come from, and its scheme
	// says whether cookies are Secure with the __Host- prefix (https) or
	// plain (http on loopback: `keybroker dev`).
	RedirectURL string
	// Issuer is the provider's issuer URL, told to `keybroker login`.
	Issuer string
	// CLI verifies the ID tokens of `keybroker login`: a relying party of
	// the CLI's public client (nil: the CLI does not sign in here), whose
	// client id is CLIClientID.
	CLI         *oidclogin.RP
	CLIClientID string
	// CLIDeviceGrant accepts ID tokens without a nonce, which the device
	// authorization grant gives (off: only the loopback redirect's, which
	// carry the nonce the CLI sent).
	CLIDeviceGrant bool
	// CLITokenUses records the first use of each CLI ID token where every
	// replica sees it (the store), so that a copied token opens no second
	// session at another replica; nil: this replica's memory only.
	CLITokenUses assertion.Uses
}

// signInState is what the server derives from SignIn once.
type signInState struct {
	*SignIn
	origin                string
	secure                bool
	sessionCookie, signin string
	cliTokens             usedTokens
}

func newSignInState(si *SignIn) *signInState {
	st := &signInState{SignIn: si, sessionCookie: "kb_session", signin: "kb_signin"}
	if u, err := url.Parse(si.RedirectURL); err == nil {
		st.origin = u.Scheme + "://" + u.Host
		st.secure = u.Scheme == "https"
	}
	if st.secure {
		st.sessionCookie = "__Host-kb_session"
		st.signin = "__Host-kb_signin"
	}
	return st
}

// csrfHeader must be on every unsafe request a session cookie
// authenticates, with the value "1": a cross-site form cannot set it.
const csrfHeader = "X-Keybroker-Csrf"

// setCookie writes a cookie of the sign-in: HttpOnly, Secure with the
// __Host- prefix (Path=/) on https, SameSite as given.
func (st *signInState) setCookie(c *gin.Context, name, value string, maxAge int, sameSite http.SameSite) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: st.secure, SameSite: sameSite})
}

// signInConfig tells the page that people sign in here with their
// identity provider (a replica without sign-in answers 404), and where.
func (s *server) signInConfig(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	out := gin.H{"oidc": true, "loginUrl": "/auth/login", "logoutUrl": "/auth/logout", "csrfHeader": csrfHeader}
	if s.signIn.Issuer != "" {
		out["issuer"] = s.signIn.Issuer
	}
	if s.signIn.CLI != nil {
		out["cliClientId"], out["cliSessionUrl"] = s.signIn.CLIClientID, "/auth/cli/session"
		out["cliDeviceGrant"] = s.signIn.CLIDeviceGrant
	}
	c.JSON(http.StatusOK, out)
}

// signInBegin starts a sign-in: the pending sign-in sealed into a cookie
// (SameSite=Lax: it must come back on the provider's redirect, a
// cross-site navigation), and the browser sent to the provider.
func (s *server) signInBegin(c *gin.Context) {
	authURL, pending := s.signIn.RP.Begin(safeReturn(c.Query("return")))
	sealed, err := oidclogin.Seal(s.signIn.SealKey, pending)
	if err != nil {
		s.signInPage(c, http.StatusInternalServerError, "The sign-in could not start. Try again.")
		return
	}
	s.signIn.setCookie(c, s.signIn.signin, sealed, 600, http.SameSiteLaxMode)
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusFound, authURL)
}

// signInCallback finishes a sign-in: the provider's answer checked, the
// person's roles mapped from their claims (none: refused), their earlier
// sessions that granted other roles ended, a session opened in a
// SameSite=Strict cookie, and the person sent on by a page of keybroker's
// own (so that the strict cookie goes with the next request).
func (s *server) signInCallback(c *gin.Context) {
	si := s.signIn
	c.Header("Cache-Control", "no-store")
	sealed, err := c.Cookie(si.signin)
	si.setCookie(c, si.signin, "", -1, http.SameSiteLaxMode)
	if err != nil {
		s.signInPage(c, http.StatusBadRequest, "This sign-in was not started here, or took too long. Start again.")
		return
	}
	pending, err := oidclogin.Open(si.SealKey, sealed)
	if err != nil {
		s.signInPage(c, http.StatusBadRequest, "This sign-in was not started here, or took too long. Start again.")
		return
	}
	ctx := c.Request.Context()
	// Each finish may call the provider's token endpoint: a failed
	// sign-in counts against its address's failed authentications (a
	// failure is reserved first and given back when the sign-in works).
	var attempt *auth.AuthAttempt
	if s.limiter != nil {
		var ok bool
		if attempt, ok, _ = s.limiter.BeginAuth(ctx, clientAddr(c)); !ok {
			s.signInPage(c, http.StatusTooManyRequests, "Too many failed sign-ins from your address. Wait a minute and start again.")
			return
		}
	}
	id, err := si.RP.Finish(ctx, pending, c.Request.URL.Query())
	if attempt != nil {
		if err != nil {
			attempt.Failed()
		} else {
			attempt.Succeeded()
		}
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, oidclogin.ErrRefused) {
			status = http.StatusForbidden
		}
		s.log.InfoContext(ctx, "sign-in refused", "request_id", stateOf(c).id, "error", err)
		s.signInPage(c, status, "The sign-in failed: "+signInReason(err)+". Start again.")
		return
	}
	grants := si.Roles.Grants(id.Claims)
	if grants.Empty() {
		// The person lost every role: their open sessions end too.
		if _, err := si.Sessions.EndAllFor(ctx, id.Issuer, id.Subject, "no role at a later sign-in"); err != nil {
			s.log.WarnContext(ctx, "could not end the sessions of a person with no role", "error", err)
		}
		s.log.InfoContext(ctx, "sign-in refused: no role", "request_id", stateOf(c).id, "issuer", id.Issuer, "subject", id.Subject)
		s.signInPage(c, http.StatusForbidden, "You are signed in at your identity provider, but none of your groups gives you a role in keybroker. Ask your administrator.")
		return
	}
	person := session.Person{Issuer: id.Issuer, Subject: id.Subject, Name: id.Name, Email: id.Email}
	sg := sessionGrants(grants)
	s.endChangedSessions(ctx, person, sg)
	token, rec, err := si.Sessions.Create(ctx, person, sg, session.ViaPage)
	if err != nil {
		s.log.WarnContext(ctx, "could not open a session", "request_id", stateOf(c).id, "error", err)
		s.signInPage(c, http.StatusServiceUnavailable, "keybroker could not open your session. Try again.")
		return
	}
	s.auditSession(c, "session.create", personOfSession(rec).Subject(), "signed in on the page, session "+rec.ID+": "+rolesText(sg))
	si.setCookie(c, si.sessionCookie, token, 0, http.SameSiteStrictMode)
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	_ = continuePage.Execute(c.Writer, pending.Return)
}

// endChangedSessions ends the person's other open sessions whose roles
// differ from the ones this sign-in mapped: a person who lost a role at
// the provider loses it in every session at their next sign-in.
func (s *server) endChangedSessions(ctx context.Context, p session.Person, g session.Grants) {
	recs, err := s.signIn.Sessions.List(ctx, p.Issuer, p.Subject)
	if err != nil {
		s.log.WarnContext(ctx, "could not list a person's sessions", "error", err)
		return
	}
	want, _ := g.Canonical()
	for _, r := range recs {
		if r.EndedAt != nil {
			continue
		}
		if got, _ := r.Grants.Canonical(); string(got) != string(want) {
			if err := s.signIn.Sessions.End(ctx, r.ID, "roles changed at a later sign-in"); err != nil {
				s.log.WarnContext(ctx, "could not end a session whose roles changed", "session", r.ID, "error", err)
			}
		}
	}
}

// signOut ends the caller's session (a person signed in on the page) and
// clears its cookie.
func (s *server) signOut(c *gin.Context) {
	p, _ := principalOf(c)
	if p.Person == nil || !strings.HasPrefix(p.TokenID, "ses_") {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "only a session signs out; revoke a token instead"})
		return
	}
	if err := s.signIn.Sessions.End(c.Request.Context(), p.TokenID, "signed out"); err != nil {
		renderError(c, s.log, unavailable(err))
		return
	}
	s.auditSession(c, "session.end", p.Subject(), "signed out, session "+p.TokenID)
	s.signIn.setCookie(c, s.signIn.sessionCookie, "", -1, http.SameSiteStrictMode)
	c.Status(http.StatusNoContent)
}

// sessionPrincipal authenticates a session: a cookie of the page's
// (cookie true), which on an unsafe method also needs the page's Origin
// and the CSRF header, or a bearer token of `keybroker login`, which is
// not ambient and needs neither. Each kind of session is used only the
// way it was opened: a page's session is no bearer token, a CLI session
// no cookie.
func (s *server) sessionPrincipal(c *gin.Context, token string, cookie bool) (auth.Principal, *Error) {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if cookie && (c.GetHeader("Origin") != s.signIn.origin || c.GetHeader(csrfHeader) != "1") {
			return auth.Principal{}, &Error{Status: http.StatusForbidden, Code: "csrf",
				Message: "a request a session cookie authenticates must come from keybroker's page (Origin) with the " + csrfHeader + " header"}
		}
	}
	want := session.ViaCLI
	if cookie {
		want = session.ViaPage
	}
	rec, err := s.signIn.Sessions.Authenticate(c.Request.Context(), token)
	switch {
	case err == nil && rec.Via != want:
		err = session.ErrUnauthenticated
	case err != nil && !errors.Is(err, session.ErrUnauthenticated):
		return auth.Principal{}, unavailable(err)
	}
	if err != nil {
		if cookie {
			s.signIn.setCookie(c, s.signIn.sessionCookie, "", -1, http.SameSiteStrictMode)
		}
		return auth.Principal{}, errUnauthenticatedSession
	}
	return personOfSession(rec), nil
}

// personOfSession is the principal of a session: the person and the
// roles their sign-in mapped.
func personOfSession(rec session.Record) auth.Principal {
	roles := auth.ScopedRoles{Operator: rec.Grants.Operator, Workspaces: map[string]auth.Role{}, Organizations: map[string]auth.Role{},
		From: map[string]string{}}
	if rec.Grants.Operator && len(rec.Grants.OperatorFrom) > 0 {
		roles.From["operator"] = strings.Join(rec.Grants.OperatorFrom, "; ")
	}
	for id, g := range rec.Grants.Workspaces {
		roles.Workspaces[id] = auth.Role(g.Role)
		if len(g.From) > 0 {
			roles.From["workspace:"+id] = strings.Join(g.From, "; ")
		}
	}
	for id, g := range rec.Grants.Organizations {
		roles.Organizations[id] = auth.Role(g.Role)
		if len(g.From) > 0 {
			roles.From["organization:"+id] = strings.Join(g.From, "; ")
		}
	}
	return auth.PersonPrincipal(rec.ID, auth.Person{Issuer: rec.Person.Issuer, Subject: rec.Person.Subject, Name: rec.Person.Name, Email: rec.Person.Email}, roles)
}

var errUnauthenticatedSession = &Error{Status: http.StatusUnauthorized, Code: "unauthenticated",
	Message: "the session has ended or expired: sign in again"}

// sessionGrants are a mapping's grants as a session keeps them.
func sessionGrants(g rolemap.Grants) session.Grants {
	out := session.Grants{}
	if g.Operator != nil {
		out.Operator, out.OperatorFrom = true, []string{g.Operator.String()}
	}
	conv := func(in map[string]rolemap.Grant) map[string]session.Grant {
		if len(in) == 0 {
			return nil
		}
		m := make(map[string]session.Grant, len(in))
		for _, id := range slices.Sorted(maps.Keys(in)) {
			m[id] = session.Grant{Role: session.Role(in[id].Role), From: []string{in[id].From.String()}}
		}
		return m
	}
	out.Workspaces, out.Organizations = conv(g.Workspaces), conv(g.Organizations)
	return out
}

// safeReturn is where a person goes after signing in: a path of
// keybroker's page, never another site.
func safeReturn(r string) string {
	if !strings.HasPrefix(r, "/ui/") || strings.HasPrefix(r, "//") || strings.ContainsAny(r, "\\\r\n") {
		return "/ui/"
	}
	return r
}

// signInReason is the words of a sign-in error, never a token.
func signInReason(err error) string {
	for _, e := range []error{oidclogin.ErrState, oidclogin.ErrExpired, oidclogin.ErrReplayed, oidclogin.ErrBusy, oidclogin.ErrRefused, oidclogin.ErrToken} {
		if errors.Is(err, e) {
			return strings.TrimPrefix(e.Error(), "oidclogin: ")
		}
	}
	return "the identity provider's answer could not be used"
}

// signInPage is a page that says why a sign-in did not work.
func (s *server) signInPage(c *gin.Context, status int, message string) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	_ = messagePage.Execute(c.Writer, message)
}

var (
	messagePage = template.Must(template.New("m").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>keybroker sign-in</title></head>` +
		`<body><main><h1>keybroker sign-in</h1><p role="alert">{{.}}</p><p><a href="/ui/">Back to keybroker</a></p></main></body></html>`))
	continuePage = template.Must(template.New("c").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed in</title>` +
		`<meta http-equiv="refresh" content="0;url={{.}}"></head><body><main><p>Signed in. <a href="{{.}}">Continue to keybroker</a>.</p></main></body></html>`))
)

// sessionTokenPrefix starts every session token (auth/session): a bearer
// token with it is a session of `keybroker login`, not an API token.
const sessionTokenPrefix = "kbs_"

// maxCLISessionBody bounds the body of POST /auth/cli/session (an ID
// token is a few kilobytes).
const maxCLISessionBody = 64 << 10

// maxIDTokenAge is how old an ID token POST /auth/cli/session takes: the
// CLI posts it right after the code exchange.
const maxIDTokenAge = 10 * time.Minute

type cliSessionRequest struct {
	IDToken string `json:"idToken"`
	Nonce   string `json:"nonce"`
}

// cliSession opens a session for `keybroker login` (docs/identity.md): the
// CLI's ID token verified for the CLI's client (signature, issuer,
// audience, times, nonce), issued within maxIDTokenAge and taken once; the
// person's roles mapped (none: refused, and their sessions ended); their
// sessions that granted other roles ended; the session's token answered
// once, never stored.
func (s *server) cliSession(c *gin.Context) {
	si := s.signIn
	c.Header("Cache-Control", "no-store")
	ctx := c.Request.Context()
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxCLISessionBody)
	var req cliSessionRequest
	if e := decodeJSON(c, &req); e != nil {
		renderError(c, s.log, e)
		return
	}
	if req.IDToken == "" {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "idToken is required (and nonce, but for a device-flow token, which has none)"})
		return
	}
	// Each try checks a token: a refused one counts against its address's
	// failed authentications (reserved first, given back when it works).
	var attempt *auth.AuthAttempt
	if s.limiter != nil {
		var ok bool
		var wait time.Duration
		if attempt, ok, wait = s.limiter.BeginAuth(ctx, clientAddr(c)); !ok {
			renderError(c, s.log, rateLimited(wait, "too many failed sign-ins from this address"))
			return
		}
	}
	if req.Nonce == "" && !si.CLIDeviceGrant {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: "nonce is required: this server does not take the device authorization grant's sign-ins (--oidc-cli-device-grant); run keybroker login --flow loopback"})
		return
	}
	id, err := si.CLI.Verify(ctx, req.IDToken, req.Nonce)
	var until time.Time
	if err == nil {
		until, err = si.cliTokens.take(id.TokenHash, id.Claims["iat"], time.Now())
	}
	if err == nil && si.CLITokenUses != nil {
		first, uerr := si.CLITokenUses.FirstAssertionUse(ctx, cliTokenUses, hex.EncodeToString(id.TokenHash[:]), until)
		if uerr != nil {
			s.log.WarnContext(ctx, "could not record the use of a CLI ID token", "request_id", stateOf(c).id, "error", uerr)
			if attempt != nil {
				attempt.Succeeded() // not the caller's fault
			}
			renderError(c, s.log, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 5 * time.Second,
				Message: "the sign-in could not be recorded; run keybroker login again"})
			return
		}
		if !first {
			err = errors.New("this ID token was already used")
		}
	}
	if attempt != nil {
		if err != nil {
			attempt.Failed()
		} else {
			attempt.Succeeded()
		}
	}
	if err != nil {
		s.log.InfoContext(ctx, "CLI sign-in refused", "request_id", stateOf(c).id, "error", err)
		renderError(c, s.log, &Error{Status: http.StatusUnauthorized, Code: "invalid_id_token",
			Message: "the ID token was refused: " + strings.TrimPrefix(err.Error(), "oidclogin: ") + "; run keybroker login again"})
		return
	}
	grants := si.Roles.Grants(id.Claims)
	if grants.Empty() {
		if _, err := si.Sessions.EndAllFor(ctx, id.Issuer, id.Subject, "no role at a later sign-in"); err != nil {
			s.log.WarnContext(ctx, "could not end the sessions of a person with no role", "error", err)
		}
		s.log.InfoContext(ctx, "CLI sign-in refused: no role", "request_id", stateOf(c).id, "issuer", id.Issuer, "subject", id.Subject)
		renderError(c, s.log, &Error{Status: http.StatusForbidden, Code: "no_role",
			Message: "you are signed in at your identity provider, but none of your groups gives you a role in keybroker; ask your administrator"})
		return
	}
	person := session.Person{Issuer: id.Issuer, Subject: id.Subject, Name: id.Name, Email: id.Email}
	sg := sessionGrants(grants)
	s.endChangedSessions(ctx, person, sg)
	token, rec, err := si.Sessions.Create(ctx, person, sg, session.ViaCLI)
	if err != nil {
		s.log.WarnContext(ctx, "could not open a session", "request_id", stateOf(c).id, "error", err)
		renderError(c, s.log, unavailable(err))
		return
	}
	s.auditSession(c, "session.create", personOfSession(rec).Subject(), "signed in with keybroker login, session "+rec.ID+": "+rolesText(sg))
	c.JSON(http.StatusCreated, gin.H{"token": token, "sessionId": rec.ID, "expiresAt": rec.ExpiresAt})
}

// cliTokenUses is the namespace of CLI ID tokens in the record of first
// uses shared with platform assertions (a platform's id cannot hold ':').
const cliTokenUses = "oidc-cli:"

// usedTokens remembers the CLI's ID tokens taken (by the hash of their
// verified claims, which no re-encoding of the token changes) until they
// are too old to be taken anyway: a copied ID token opens no second
// session.
type usedTokens struct {
	mu        sync.Mutex
	used      map[[32]byte]time.Time
	lastPrune time.Time
}

// maxUsedTokens bounds the ID tokens remembered.
const maxUsedTokens = 100_000

// take accepts the token whose claims hash to h, issued at iat (the
// claim), once, and says until when it is remembered.
func (u *usedTokens) take(h [32]byte, iat any, now time.Time) (time.Time, error) {
	secs, ok := iat.(float64)
	if !ok {
		return time.Time{}, errors.New("the ID token has no issue time")
	}
	issued := time.Unix(int64(secs), 0)
	if now.Sub(issued) > maxIDTokenAge {
		return time.Time{}, errors.New("the ID token was issued more than 10 minutes ago")
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.used == nil {
		u.used = map[[32]byte]time.Time{}
	}
	if _, done := u.used[h]; done {
		return time.Time{}, errors.New("this ID token was already used")
	}
	if now.Sub(u.lastPrune) > time.Minute || len(u.used) >= maxUsedTokens {
		for k, exp := range u.used {
			if now.After(exp) {
				delete(u.used, k)
			}
		}
		u.lastPrune = now
	}
	if len(u.used) >= maxUsedTokens {
		return time.Time{}, errors.New("too many sign-ins at once; try again shortly")
	}
	until := issued.Add(maxIDTokenAge + 2*time.Minute)
	u.used[h] = until
	return until, nil
}

// auditSession records a sign-in or a sign-out in the operator-wide
// trail; a failure to record is logged, not the person's problem.
func (s *server) auditSession(c *gin.Context, action, actor, detail string) {
	if s.signIn.Audit == nil {
		return
	}
	ev := broker.AuditEvent{Action: action, Actor: actor, Outcome: "success", RemoteAddr: clientAddr(c), RequestID: stateOf(c).id,
		Detail: detail, OccurredAt: time.Now().UTC()}
	if err := s.signIn.Audit(c.Request.Context(), []broker.AuditEvent{ev}); err != nil {
		s.log.WarnContext(c.Request.Context(), "could not record a sign-in or sign-out in the audit trail", "action", action, "error", err)
	}
}

// rolesText says a session's roles and where they came from, for the
// trail.
func rolesText(g session.Grants) string {
	var parts []string
	if g.Operator {
		parts = append(parts, "operator ("+strings.Join(g.OperatorFrom, "; ")+")")
	}
	for _, id := range slices.Sorted(maps.Keys(g.Workspaces)) {
		parts = append(parts, string(g.Workspaces[id].Role)+" of workspace "+id+" ("+strings.Join(g.Workspaces[id].From, "; ")+")")
	}
	for _, id := range slices.Sorted(maps.Keys(g.Organizations)) {
		parts = append(parts, string(g.Organizations[id].Role)+" of organization "+id+" ("+strings.Join(g.Organizations[id].From, "; ")+")")
	}
	return strings.Join(parts, ", ")
}
