package handlers

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
)

// listScopes answers the workspaces and organizations the caller may open:
// an operator's are every one keybroker knows of (with keys or settings),
// an admin's or reader's those its token lists. Filtered by q (part of the
// id) and kind, sorted by kind then id, paginated.
func (s *server) listScopes(c *gin.Context) {
	p, _ := principalOf(c)
	if p.Role == auth.RoleResolver {
		s.authorize(c, auth.ActionReadKeys, broker.Scope{}, "")
		return
	}
	kind, query := broker.ScopeKind(c.Query("kind")), c.Query("q")
	limit, ok := s.pageLimit(c, 50, 200)
	if !ok {
		return
	}
	var after broker.Scope
	if cur := c.Query("cursor"); cur != "" {
		k, id, ok := strings.Cut(cur, "/")
		if !ok {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "cursor must be a previous page's nextCursor"})
			return
		}
		after = broker.Scope{Kind: broker.ScopeKind(k), ID: id}
	}
	var scopes []broker.Scope
	if p.Role == auth.RoleOperator {
		var err error
		if scopes, err = s.keys.ListScopes(c.Request.Context(), kind, query, after, limit+1); err != nil {
			renderError(c, s.log, domainError(err))
			return
		}
	} else {
		if kind != "" && kind != broker.ScopeWorkspace && kind != broker.ScopeOrganization {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "kind must be workspace or organization"})
			return
		}
		for _, ws := range p.Workspaces {
			scopes = append(scopes, broker.WorkspaceScope(ws))
		}
		for _, org := range p.Organizations {
			scopes = append(scopes, broker.OrganizationScope(org))
		}
		slices.SortFunc(scopes, func(a, b broker.Scope) int {
			return strings.Compare(string(a.Kind)+"/"+a.ID, string(b.Kind)+"/"+b.ID)
		})
		scopes = slices.DeleteFunc(scopes, func(sc broker.Scope) bool {
			return (kind != "" && sc.Kind != kind) || !strings.Contains(sc.ID, query) ||
				(after.Kind != "" && string(sc.Kind)+"/"+sc.ID <= string(after.Kind)+"/"+after.ID)
		})
		scopes = scopes[:min(len(scopes), limit+1)]
	}
	out := client.ScopeList{Scopes: make([]client.ScopeInfo, 0, min(len(scopes), limit))}
	for i, sc := range scopes {
		if i == limit {
			prev := scopes[i-1]
			out.NextCursor = string(prev.Kind) + "/" + prev.ID
			break
		}
		out.Scopes = append(out.Scopes, client.ScopeInfo{Kind: string(sc.Kind), ID: sc.ID})
	}
	c.JSON(http.StatusOK, out)
}
