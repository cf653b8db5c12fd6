package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

// TestOperatorsEndAPersonsSessions: an operator lists a person's sessions
// (never a token) and ends them all, for offboarding or a stolen cookie:
// the cookie stops working at once. Nobody else may; a replica without
// sign-in says so.
func TestOperatorsEndAPersonsSessions(t *testing.T) {
	g := newSignInGround(t)
	wes, _ := g.idp.User("wes")
	cookie, _ := g.signIn(t, "wes")
	jar := map[string]string{"kb_session": cookie}
	q := "/v1/sessions?issuer=" + url.QueryEscape(g.idp.Issuer) + "&subject=" + url.QueryEscape(wes.EntityID)

	var list client.SessionList
	r := g.call("operator", "GET", q, nil)
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list.Sessions) != 1 || list.Sessions[0].Via != "page" || list.Sessions[0].EndedAt != nil ||
		list.Sessions[0].Roles.Workspaces["ws1"] != "admin" || strings.Contains(string(r.body), cookie) {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	for _, who := range []string{"admin", "reader", "resolver"} {
		if r := g.call(who, "GET", q, nil); r.status != http.StatusForbidden {
			t.Fatalf("%s lists sessions: %d", who, r.status)
		}
		if r := g.call(who, "POST", "/v1/sessions/end", client.EndSessionsRequest{Issuer: g.idp.Issuer, Subject: wes.EntityID}); r.status != http.StatusForbidden {
			t.Fatalf("%s ends sessions: %d", who, r.status)
		}
	}
	if r := g.do(t, "GET", "/v1/sessions?issuer=x&subject=y", "", jar); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a person who is no operator lists sessions: %d", r.StatusCode)
	}
	for _, bad := range []string{"/v1/sessions", "/v1/sessions?issuer=x", "/v1/sessions?issuer=x&subject=" + strings.Repeat("s", 600)} {
		if r := g.call("operator", "GET", bad, nil); r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d", bad, r.status)
		}
	}
	if r := g.call("operator", "POST", "/v1/sessions/end", "{not json"); r.status != http.StatusBadRequest {
		t.Fatalf("malformed JSON: %d", r.status)
	}
	if r := g.call("operator", "POST", "/v1/sessions/end", client.EndSessionsRequest{Issuer: g.idp.Issuer}); r.status != http.StatusBadRequest {
		t.Fatalf("no subject: %d", r.status)
	}
	if r := g.do(t, "GET", "/v1/whoami", "", jar); r.StatusCode != http.StatusOK {
		t.Fatalf("refused requests ended the session: %d", r.StatusCode)
	}

	var ended client.EndSessionsResponse
	r = g.call("operator", "POST", "/v1/sessions/end", client.EndSessionsRequest{Issuer: g.idp.Issuer, Subject: wes.EntityID})
	r.decode(t, &ended)
	if r.status != http.StatusOK || len(ended.Ended) != 1 || ended.Ended[0] != list.Sessions[0].ID {
		t.Fatalf("end: %d %s", r.status, r.body)
	}
	if r := g.do(t, "GET", "/v1/whoami", "", jar); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the ended session: %d", r.StatusCode)
	}
	r = g.call("operator", "GET", q, nil)
	r.decode(t, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].EndedAt == nil || !strings.Contains(list.Sessions[0].EndedReason, "token:") {
		t.Fatalf("after the end: %s", r.body)
	}
}

func TestSessionsNeedSignIn(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	if r := a.call("operator", "GET", "/v1/sessions?issuer=x&subject=y", nil); r.status != http.StatusNotImplemented {
		t.Fatalf("sessions on a replica without sign-in: %d %s", r.status, r.body)
	}
}
