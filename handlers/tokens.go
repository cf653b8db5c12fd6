package handlers

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/client"
)

// The token routes: operators list, create and revoke API tokens. A new
// token is in the creation's answer once; nothing else ever shows one.

func tokenInfo(r auth.TokenRecord, now time.Time) client.TokenInfo {
	out := client.TokenInfo{ID: r.ID, Role: r.Role, Workspaces: r.Workspaces, Organizations: r.Organizations,
		Description: r.Description, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(), State: "active"}
	if out.Workspaces == nil {
		out.Workspaces = []string{}
	}
	if out.Organizations == nil {
		out.Organizations = []string{}
	}
	if r.ExpiresAt != nil {
		t := r.ExpiresAt.UTC()
		out.ExpiresAt = &t
		if !now.Before(t) {
			out.State = "expired"
		}
	}
	if r.RevokedAt != nil {
		t := r.RevokedAt.UTC()
		out.RevokedAt, out.State = &t, "revoked"
	}
	return out
}

func (s *server) listTokens(c *gin.Context) {
	if _, ok := s.open(c, opening{action: auth.ActionManageTokens}); !ok {
		return
	}
	recs, err := s.tokens.List(c.Request.Context())
	if err != nil {
		renderError(c, s.log, unavailable(err))
		return
	}
	now := time.Now()
	out := client.TokenList{Tokens: make([]client.TokenInfo, 0, len(recs))}
	for _, r := range recs {
		out.Tokens = append(out.Tokens, tokenInfo(r, now))
	}
	c.JSON(http.StatusOK, out)
}

// maxTokenTTL bounds the ttlSeconds of a token created over the API.
const maxTokenTTL = 366 * 24 * time.Hour

func (s *server) createToken(c *gin.Context) {
	var req client.CreateTokenRequest
	r, ok := s.open(c, opening{action: auth.ActionManageTokens, body: &req})
	if !ok {
		return
	}
	if req.TTLSeconds < 0 || time.Duration(req.TTLSeconds)*time.Second > maxTokenTTL {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "ttlSeconds must be from 0 (the default lifetime) to 31622400 (366 days)"})
		return
	}
	if len(req.Description) > 200 {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "description must be at most 200 characters"})
		return
	}
	token, rec, err := s.tokens.Create(c.Request.Context(), auth.CreateRequest{Role: auth.Role(req.Role), Workspaces: req.Workspaces,
		Organizations: req.Organizations, TTL: time.Duration(req.TTLSeconds) * time.Second, NoExpiry: req.NoExpiry,
		Description: req.Description, CreatedBy: r.principal.Subject(), RemoteAddr: clientAddr(c), RequestID: requestIDOf(c), Via: auth.ViaAPI})
	switch {
	case errors.Is(err, auth.ErrCannotMint):
		renderError(c, s.log, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()})
		return
	case errors.Is(err, auth.ErrInvalid):
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: err.Error()})
		return
	case err != nil:
		renderError(c, s.log, unavailable(err))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, client.CreatedToken{Token: token, TokenInfo: tokenInfo(rec, time.Now())})
}

func (s *server) revokeToken(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageTokens})
	if !ok {
		return
	}
	err := s.tokens.Revoke(c.Request.Context(), c.Param("id"), r.principal.Subject(), clientAddr(c), requestIDOf(c))
	switch {
	case errors.Is(err, auth.ErrNotFound):
		renderError(c, s.log, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such token, or it is revoked already"})
		return
	case err != nil:
		renderError(c, s.log, unavailable(err))
		return
	}
	c.Status(http.StatusNoContent)
}
