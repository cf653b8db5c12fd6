package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
)

// LifecycleService is what the key lifecycle routes need of the domain
// (package broker): rotation and revocation at the provider, schedules,
// usage (docs/lifecycle.md).
type LifecycleService interface {
	Rotate(ctx context.Context, req broker.RotateRequest) (broker.Rotation, error)
	Rotations(ctx context.Context, ref broker.KeyRef) ([]broker.Rotation, error)
	RevokeKey(ctx context.Context, req broker.DeleteKeyRequest) (broker.Revocation, error)
	LifecycleSettings(ctx context.Context, scope broker.Scope) (broker.LifecycleSettings, error)
	SetLifecycleSettings(ctx context.Context, actor broker.Actor, scope broker.Scope, rotateAfter time.Duration) (broker.LifecycleSettings, error)
	KeyUsage(ctx context.Context, ref broker.KeyRef, since time.Time) (broker.KeyUsageReport, error)
}

var _ LifecycleService = (*broker.Broker)(nil)

// lifecycle is the key service's lifecycle side, when it has one.
// openLifecycle opens a lifecycle request: the caller and scope checked as
// open does, then the lifecycle service (501 when this server has none).
func (s *server) openLifecycle(c *gin.Context, o opening) (scopeRequest, LifecycleService, bool) {
	r, ok := s.open(c, o)
	if !ok {
		return scopeRequest{}, nil, false
	}
	l, ok := s.lifecycle(c)
	return r, l, ok
}

func (s *server) lifecycle(c *gin.Context) (LifecycleService, bool) {
	l, ok := s.keys.(LifecycleService)
	if !ok {
		renderError(c, s.log, &Error{Status: http.StatusNotImplemented, Code: "not_implemented", Message: "this server does not manage the key lifecycle"})
	}
	return l, ok
}

func rotationJSON(r broker.Rotation) client.Rotation {
	out := client.Rotation{ID: r.ID, Scope: string(r.Ref.ScopeKind), ScopeID: r.Ref.ScopeID, Provider: r.Ref.Provider, KeyID: r.Ref.KeyID,
		NewKeyID: r.NewKeyID, AdminKeyID: r.AdminKeyID, Trigger: r.Trigger, Step: r.Step, State: r.State, NewProviderKeyID: r.NewProviderKeyID,
		OldProviderKeyID: r.OldProviderKeyID, GraceSeconds: int64(r.Grace / time.Second), Error: r.Error, StartedBy: r.StartedBy,
		StartedAt: r.StartedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if !r.DeleteAfter.IsZero() {
		t := r.DeleteAfter.UTC()
		out.DeleteAfter = &t
	}
	return out
}

// rotateKey rotates a key at its provider (POST .../rotate).
func (s *server) rotateKey(c *gin.Context) {
	var req client.RotateRequest
	r, ok := s.open(c, opening{action: auth.ActionManageKeys})
	if !ok {
		return
	}
	if c.Request.ContentLength != 0 { // the body is optional
		if derr := decodeJSON(c, &req); derr != nil {
			renderError(c, s.log, derr)
			return
		}
	}
	l, ok := s.lifecycle(c)
	if !ok {
		return
	}
	var grace time.Duration
	if req.GraceSeconds != nil {
		if *req.GraceSeconds < 0 || *req.GraceSeconds > 7*24*3600 {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "graceSeconds must be from 0 to 604800"})
			return
		}
		grace = time.Duration(*req.GraceSeconds) * time.Second
		if grace == 0 {
			grace = time.Nanosecond // 0 asks for no grace period, not the default
		}
	}
	rot, err := l.Rotate(c.Request.Context(), broker.RotateRequest{Actor: s.actor(c), Ref: r.key(), Grace: grace})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, rotationJSON(rot))
}

// listRotations lists a key's rotations, newest first.
func (s *server) listRotations(c *gin.Context) {
	r, l, ok := s.openLifecycle(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	rots, err := l.Rotations(c.Request.Context(), r.key())
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.RotationList{Rotations: make([]client.Rotation, 0, len(rots))}
	for _, rot := range rots {
		out.Rotations = append(out.Rotations, rotationJSON(rot))
	}
	c.JSON(http.StatusOK, out)
}

// revokeKey deletes a key and revokes it at its provider (DELETE
// ...?revokeAtProvider=true).
func (s *server) revokeKey(c *gin.Context, r scopeRequest) {
	l, ok := s.lifecycle(c)
	if !ok {
		return
	}
	rv, err := l.RevokeKey(c.Request.Context(), broker.DeleteKeyRequest{Actor: s.actor(c), Ref: r.key(), ExpectedVersion: r.expected, Destroy: r.flag})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, client.Revocation{ID: rv.ID, Scope: string(rv.Ref.ScopeKind), ScopeID: rv.Ref.ScopeID, Provider: rv.Ref.Provider,
		KeyID: rv.Ref.KeyID, ProviderKeyID: rv.ProviderKeyID, AdminKeyID: rv.AdminKeyID, State: rv.State, Action: rv.Action,
		AlreadyGone: rv.AlreadyGone, Attempts: rv.Attempts, LastError: rv.LastError, NextAttemptAt: nextAttempt(rv)})
}

func nextAttempt(rv broker.Revocation) time.Time {
	if rv.State == broker.RevocationDone {
		return time.Time{}
	}
	return rv.NextAttempt.UTC()
}

func lifecycleJSON(ls broker.LifecycleSettings) client.LifecycleSettings {
	out := client.LifecycleSettings{RotateAfter: broker.FormatRotateAfter(ls.RotateAfter), UpdatedBy: ls.UpdatedBy}
	if !ls.UpdatedAt.IsZero() {
		t := ls.UpdatedAt.UTC()
		out.UpdatedAt = &t
	}
	return out
}

// getLifecycle answers a scope's lifecycle settings.
func (s *server) getLifecycle(c *gin.Context) {
	r, l, ok := s.openLifecycle(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	ls, err := l.LifecycleSettings(c.Request.Context(), r.scope)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, lifecycleJSON(ls))
}

// putLifecycle sets a scope's lifecycle settings.
func (s *server) putLifecycle(c *gin.Context) {
	var req struct {
		RotateAfter *string `json:"rotateAfter"`
	}
	r, l, ok := s.openLifecycle(c, opening{action: auth.ActionManageKeys, body: &req})
	if !ok {
		return
	}
	var d time.Duration
	if req.RotateAfter != nil {
		var err error
		if d, err = broker.ParseRotateAfter(*req.RotateAfter); err != nil {
			renderError(c, s.log, domainError(err))
			return
		}
	}
	ls, err := l.SetLifecycleSettings(c.Request.Context(), s.actor(c), r.scope, d)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, lifecycleJSON(ls))
}

// keyUsage answers where a key is used (GET .../usage?since=).
func (s *server) keyUsage(c *gin.Context) {
	r, l, ok := s.openLifecycle(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	since := time.Time{}
	if v := c.Query("since"); v != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			if d, derr := time.Parse(time.DateOnly, v); derr == nil {
				since = d
			} else {
				renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "since must be an RFC 3339 time or a date (2027-01-31)"})
				return
			}
		}
	}
	u, err := l.KeyUsage(c.Request.Context(), r.key(), since)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.KeyUsage{Since: u.Since.UTC(), Versions: make([]client.VersionUsage, 0, len(u.Versions))}
	for _, v := range u.Versions {
		vu := client.VersionUsage{Version: v.Version, Resolves: v.Resolves, ProxiedCalls: v.ProxiedCalls, Days: make([]client.DayUsage, 0, len(v.Days))}
		for _, d := range v.Days {
			vu.Days = append(vu.Days, client.DayUsage{Day: d.Day.UTC().Format(time.DateOnly), Caller: d.Caller, Resolves: d.Resolves,
				ProxiedCalls: d.ProxiedCalls})
		}
		out.Versions = append(out.Versions, vu)
	}
	c.JSON(http.StatusOK, out)
}
