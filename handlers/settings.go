package handlers

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
)

func settingsAnswer(s broker.Settings) client.Settings {
	out := client.Settings{Inherit: s.Inherit, HostedFallback: s.HostedFallback, UpdatedAt: s.UpdatedAt.UTC(), UpdatedBy: s.UpdatedBy}
	if s.Organization != "" {
		org := s.Organization
		out.Organization = &org
	}
	if s.UpdatedAt.IsZero() {
		out.UpdatedAt = s.UpdatedAt
	}
	return out
}

func (s *server) getSettings(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	set, err := s.keys.GetSettings(c.Request.Context(), r.scope.ID)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, settingsAnswer(set))
}

// putSettings: a workspace admin sets inherit and hostedFallback; linking
// the workspace to an organization (or unlinking it) is an operator's (the
// broker decides whether the request changes the link; auth whether the
// caller may).
func (s *server) putSettings(c *gin.Context) {
	var req client.SettingsRequest
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, body: &req})
	if !ok {
		return
	}
	ws, p := r.scope.ID, r.principal
	set, err := s.keys.PutSettings(c.Request.Context(), broker.SettingsRequest{Actor: s.actor(c), Workspace: ws,
		Organization: req.Organization, Inherit: req.Inherit, HostedFallback: req.HostedFallback,
		MayLink: p.Allowed(auth.ActionLinkOrganization, broker.WorkspaceScope(ws))})
	if errors.Is(err, broker.ErrLinkNotAllowed) {
		s.authorize(c, auth.ActionLinkOrganization, broker.WorkspaceScope(ws), "") // records the denial and answers 403
		return
	}
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, settingsAnswer(set))
}

// effective says per provider which scope serves the workspace's calls now.
func (s *server) effective(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	srcs, err := s.keys.Effective(c.Request.Context(), r.scope.ID)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.EffectiveSources{Providers: make([]client.EffectiveSource, 0, len(srcs))}
	for _, src := range srcs {
		e := client.EffectiveSource{Provider: src.Provider, ScopeID: src.ScopeID, UsableKeys: src.UsableKeys, Reason: src.Reason}
		for _, k := range src.First {
			e.First = append(e.First, client.ServingKey{KeyID: k.KeyID, Name: k.Name})
		}
		if src.ScopeKind != "" {
			scope := string(src.ScopeKind)
			e.Scope = &scope
		}
		out.Providers = append(out.Providers, e)
	}
	c.JSON(http.StatusOK, out)
}
