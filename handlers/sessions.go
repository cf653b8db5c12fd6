package handlers

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/client"
)

// maxPersonText bounds an issuer or a subject in a query.
const maxPersonText = 512

var errNoSignIn = &Error{Status: http.StatusNotImplemented, Code: "not_available_in_mode",
	Message: "people do not sign in on this keybroker (no --oidc-issuer): there are no sessions"}

// personOf checks the issuer and subject of a sessions request.
func personOf(issuer, subject string) *Error {
	if issuer == "" || subject == "" || len(issuer) > maxPersonText || len(subject) > maxPersonText {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "issuer and subject are required, each at most 512 characters"}
	}
	return nil
}

// listSessions lists a person's sessions for an operator.
func (s *server) listSessions(c *gin.Context) {
	if _, ok := s.open(c, opening{action: auth.ActionManageTokens}); !ok {
		return
	}
	if s.signIn == nil {
		renderError(c, s.log, errNoSignIn)
		return
	}
	issuer, subject := c.Query("issuer"), c.Query("subject")
	if e := personOf(issuer, subject); e != nil {
		renderError(c, s.log, e)
		return
	}
	recs, err := s.signIn.Sessions.List(c.Request.Context(), issuer, subject)
	if err != nil {
		renderError(c, s.log, unavailable(err))
		return
	}
	out := client.SessionList{Sessions: make([]client.SessionInfo, 0, len(recs))}
	for _, r := range recs {
		out.Sessions = append(out.Sessions, sessionInfo(r))
	}
	c.JSON(http.StatusOK, out)
}

// endSessions ends every open session of a person for an operator.
func (s *server) endSessions(c *gin.Context) {
	var req client.EndSessionsRequest
	if _, ok := s.open(c, opening{action: auth.ActionManageTokens, body: &req}); !ok {
		return
	}
	if s.signIn == nil {
		renderError(c, s.log, errNoSignIn)
		return
	}
	if e := personOf(req.Issuer, req.Subject); e != nil {
		renderError(c, s.log, e)
		return
	}
	p, _ := principalOf(c)
	ids, err := s.signIn.Sessions.EndAllFor(c.Request.Context(), req.Issuer, req.Subject, "ended by "+p.Subject())
	if err != nil {
		renderError(c, s.log, unavailable(err))
		return
	}
	if ids == nil {
		ids = []string{}
	}
	if len(ids) > 0 {
		s.auditSession(c, "session.end", p.Subject(), fmt.Sprintf("ended %d session(s) of %s", len(ids),
			auth.Person{Issuer: req.Issuer, Subject: req.Subject}.Actor()))
	}
	c.JSON(http.StatusOK, client.EndSessionsResponse{Ended: ids})
}

func sessionInfo(r session.Record) client.SessionInfo {
	out := client.SessionInfo{ID: r.ID, Via: string(r.Via), CreatedAt: r.CreatedAt, LastSeenAt: r.LastSeenAt, IdleExpiresAt: r.IdleExpiresAt,
		ExpiresAt: r.ExpiresAt, EndedAt: r.EndedAt, EndedReason: r.EndedReason,
		Roles: client.ScopedRoles{Operator: r.Grants.Operator, Workspaces: map[string]string{}, Organizations: map[string]string{}}}
	for id, g := range r.Grants.Workspaces {
		out.Roles.Workspaces[id] = string(g.Role)
	}
	for id, g := range r.Grants.Organizations {
		out.Roles.Organizations[id] = string(g.Role)
	}
	return out
}
