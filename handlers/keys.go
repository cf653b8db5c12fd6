package handlers

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/providers"
)

func (s *server) actor(c *gin.Context) broker.Actor {
	p, _ := principalOf(c)
	st := stateOf(c)
	return broker.Actor{Subject: p.Subject(), RemoteAddr: clientAddr(c), RequestID: st.id, ClientRequestID: st.clientID}
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

func keyMetadata(m broker.KeyMeta) client.KeyMetadata {
	out := client.KeyMetadata{
		Scope: string(m.ScopeKind), ScopeID: m.ScopeID, Provider: m.Provider, KeyID: m.KeyID, Name: m.Name,
		Priority: m.Priority, State: m.State, Models: m.Models, MaskedKey: m.MaskedKey, Version: m.Version,
		Fingerprint: m.Fingerprint, CreatedAt: m.CreatedAt.UTC(), CreatedBy: m.CreatedBy,
		UpdatedAt: m.UpdatedAt.UTC(), UpdatedBy: m.UpdatedBy, Resolves: m.Resolves, LastUsedAt: m.LastUsedAt.UTC(), Idle: m.Idle,
	}
	if m.ScopeKind == broker.ScopeWorkspace {
		out.Workspace = m.ScopeID
	}
	if out.Models == nil {
		out.Models = []string{}
	}
	out.Kind, out.Fields, out.Masked = m.Kind, m.Fields, m.Masked
	out.Health, out.HealthReason = m.Health, m.HealthReason
	if !m.CooldownUntil.IsZero() {
		t := m.CooldownUntil.UTC()
		out.CooldownUntil = &t
	}
	if !m.HealthChangedAt.IsZero() {
		t := m.HealthChangedAt.UTC()
		out.HealthChangedAt = &t
	}
	if !m.ExpiresAt.IsZero() {
		t := m.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	out.Expiry, out.ProviderKeyID = m.Expiry, m.ProviderKeyID
	return out
}

// boolQuery reads an optional true/false query parameter.
func (s *server) boolQuery(c *gin.Context, name string) (bool, bool) {
	switch c.Query(name) {
	case "", "false":
		return false, true
	case "true":
		return true, true
	}
	renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: name + " must be true or false"})
	return false, false
}

func (s *server) listProviders(c *gin.Context) {
	all := s.keys.Providers().All()
	out := client.ProviderList{Providers: make([]client.Provider, 0, len(all))}
	for _, p := range append(all, s.keys.Providers().Admins()...) {
		fields := make([]client.CredentialField, len(p.Credential.Fields))
		for i, f := range p.Credential.Fields {
			fields[i] = client.CredentialField{Name: f.Name, Secret: f.Secret, Required: f.Required, Hint: f.Hint, Type: string(f.Type),
				Label: f.Label, Choice: f.Choice, File: f.File}
			if f.MapLabels != [2]string{} {
				fields[i].MapLabels = f.MapLabels[:]
			}
		}
		var choices *client.CredentialChoices
		if len(p.Credential.Choices) > 0 {
			choices = &client.CredentialChoices{Label: p.Credential.ChoicesLabel}
			for _, c := range p.Credential.Choices {
				choices.Options = append(choices.Options, client.CredentialChoice{ID: c.ID, Label: c.Label, Required: c.Required})
			}
		}
		entry := client.Provider{ID: p.ID, DisplayName: p.DisplayName, FormatHint: p.FormatHint(),
			Kind: p.Credential.Kind, Fields: fields, Choices: choices, AdminOf: p.AdminOf}
		if ka := p.KeyAdmin; ka != nil {
			if ka.Create != nil {
				entry.Rotation = "admin_api"
			}
			if ka.Revoke != nil {
				entry.Revocation = ka.Revokes
			}
		}
		if p.IsAdmin() {
			out.AdminProviders = append(out.AdminProviders, entry)
			continue
		}
		out.Providers = append(out.Providers, entry)
	}
	c.JSON(http.StatusOK, out)
}

// whoami tells the caller what its token is: the admin page shows it.
func (s *server) whoami(c *gin.Context) {
	p, _ := principalOf(c)
	ws := p.Workspaces
	if ws == nil {
		ws = []string{}
	}
	orgs := p.Organizations
	if orgs == nil {
		orgs = []string{}
	}
	out := client.WhoAmI{TokenID: p.TokenID, Role: string(p.Role), Workspaces: ws, Organizations: orgs}
	if p.Person != nil {
		out.Person = &client.WhoAmIPerson{Issuer: p.Person.Issuer, Subject: p.Person.Subject, Name: p.Person.Name, Email: p.Person.Email,
			Platform: p.Person.Platform, Actor: p.Person.Actor()}
		out.ScopedRoles = &client.ScopedRoles{Operator: p.Scoped.Operator, Workspaces: map[string]string{}, Organizations: map[string]string{}}
		if len(p.Scoped.From) > 0 {
			out.ScopedRoles.From = p.Scoped.From
		}
		for id, r := range p.Scoped.Workspaces {
			out.ScopedRoles.Workspaces[id] = string(r)
		}
		for id, r := range p.Scoped.Organizations {
			out.ScopedRoles.Organizations[id] = string(r)
		}
	} else {
		out.Description = s.actorNames(c, p.Subject())[p.Subject()]
	}
	c.JSON(http.StatusOK, out)
}

// listKeys lists every key of a workspace (the v1 shorthand's list).
func (s *server) listKeys(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	keys, err := s.keys.ListKeys(c.Request.Context(), r.scope)
	s.renderKeys(c, keys, err)
}

// listPool lists a pool's keys, by priority.
func (s *server) listPool(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	keys, err := s.keys.ListPool(c.Request.Context(), r.pool())
	s.renderKeys(c, keys, err)
}

func (s *server) renderKeys(c *gin.Context, keys []broker.KeyMeta, err error) {
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.KeyList{Keys: make([]client.KeyMetadata, 0, len(keys))}
	actors := make([]string, len(keys))
	for i, k := range keys {
		actors[i] = k.UpdatedBy
	}
	names := s.actorNames(c, actors...)
	for _, k := range keys {
		m := keyMetadata(k)
		m.UpdatedByName = names[k.UpdatedBy]
		out.Keys = append(out.Keys, m)
	}
	c.JSON(http.StatusOK, out)
}

func (s *server) getKey(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	meta, err := s.keys.GetKey(c.Request.Context(), r.key())
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.Header("ETag", etag(meta.Version))
	out := keyMetadata(meta)
	out.UpdatedByName = s.actorNames(c, meta.UpdatedBy)[meta.UpdatedBy]
	c.JSON(http.StatusOK, out)
}

// addKey adds a key to a pool (POST .../keys).
func (s *server) addKey(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, query: "verify"})
	if !ok {
		return
	}
	pool, verify := r.pool(), r.flag
	var req struct {
		client.AddKeyRequest
		APIKey *string `json:"apiKey"` // present or not (see keyCredential)
	}
	if derr := decodeJSON(c, &req); derr != nil {
		renderError(c, s.log, derr)
		return
	}
	cred, derr := s.keyCredential(pool.Provider, req.APIKey, req.Credential)
	if derr != nil {
		renderError(c, s.log, derr)
		return
	}
	add := broker.AddKeyRequest{Actor: s.actor(c), Pool: pool, KeyID: req.KeyID,
		Credential: cred, Name: req.Name, Priority: req.Priority, State: req.State, Models: req.Models, Check: verify,
		ProviderKeyID: req.ProviderKeyID}
	if req.ExpiresAt != nil {
		add.ExpiresAt = *req.ExpiresAt
	}
	res, err := s.keys.AddKey(c.Request.Context(), add)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.Header("ETag", etag(res.Meta.Version))
	c.Header("Location", c.Request.URL.EscapedPath()+"/"+res.Meta.KeyID)
	c.JSON(http.StatusCreated, keyMetadata(res.Meta))
}

// keyCredential is the credential a write carries: {"apiKey": "..."}
// (api_key kinds, as ever) or {"credential": {"<field>": "...", ...}} of
// the provider's kind (a map field as an object of strings). Both (with a
// non-empty apiKey) or neither is 400, and so is a field of the wrong JSON
// type (malformed_json); the broker checks the rest (422).
func (s *server) keyCredential(provider string, apiKey *string, fields map[string]any) (providers.Credential, *Error) {
	switch {
	case fields != nil && apiKey != nil && *apiKey != "":
		return providers.Credential{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: `send the key as "apiKey" or as "credential", not both`}
	case fields != nil:
		schema := providers.Schema{Kind: providers.KindAPIKey}
		if p, ok := s.keys.Providers().Lookup(provider); ok {
			schema = p.Credential
		}
		cred, err := schema.FromWire(fields)
		if err != nil {
			var we *providers.WireError
			if errors.As(err, &we) {
				return providers.Credential{}, &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "credential field " + we.Reason}
			}
			return providers.Credential{}, domainError(err)
		}
		return cred, nil
	case apiKey != nil:
		return providers.APIKey(*apiKey), nil
	}
	return providers.Credential{}, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
		Message: `the body names no key: send "apiKey" (or "credential" with the provider's fields)`}
}

// credentialFields are the fields of a resolve answer's credential (not
// an api_key one, whose key is apiKey): a map field of the provider's
// schema as an object of strings, every other as a string.
func (s *server) credentialFields(provider string, c providers.Credential) map[string]any {
	fields := c.Reveal()
	out := make(map[string]any, len(fields))
	p, _ := s.keys.Providers().Lookup(provider)
	for name, v := range fields {
		out[name] = v
		if p == nil {
			continue
		}
		if f, ok := p.Credential.Field(name); ok && f.Type == providers.FieldMap {
			if m, ok := providers.ParseMap(v); ok {
				out[name] = m
			}
		}
	}
	return out
}

func (s *server) putKey(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, ifMatch: true, query: "verify"})
	if !ok {
		return
	}
	ref, expected, verify := r.key(), r.expected, r.flag
	var req struct {
		client.PutKeyRequest
		APIKey *string `json:"apiKey"` // present or not (see keyCredential)
	}
	if derr := decodeJSON(c, &req); derr != nil {
		renderError(c, s.log, derr)
		return
	}
	cred, derr := s.keyCredential(ref.Provider, req.APIKey, req.Credential)
	if derr != nil {
		renderError(c, s.log, derr)
		return
	}
	res, err := s.keys.PutKey(c.Request.Context(), broker.PutKeyRequest{
		Actor: s.actor(c), Ref: ref, Credential: cred, ExpectedVersion: expected, Check: verify})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	c.Header("ETag", etag(res.Meta.Version))
	c.JSON(status, keyMetadata(res.Meta))
}

// patchKey changes a key's settings in its pool, never the key.
func (s *server) patchKey(c *gin.Context) {
	var req client.UpdateKeyRequest
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, body: &req})
	if !ok {
		return
	}
	if req.Name == nil && req.Priority == nil && req.State == nil && req.Models == nil && req.ExpiresAt == nil && req.ProviderKeyID == nil {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: "name, priority, state, models, expiresAt or providerKeyId: send at least one"})
		return
	}
	upd := broker.UpdateKeyRequest{Actor: s.actor(c), Ref: r.key(),
		Name: req.Name, Priority: req.Priority, State: req.State, Models: req.Models, ProviderKeyID: req.ProviderKeyID}
	if req.ExpiresAt != nil {
		var t time.Time
		if *req.ExpiresAt != "" {
			var err error
			if t, err = time.Parse(time.RFC3339, *req.ExpiresAt); err != nil {
				renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request",
					Message: `expiresAt must be an RFC 3339 time (e.g. "2027-01-31T00:00:00Z"), or "" to remove the expiry`})
				return
			}
		}
		upd.ExpiresAt = &t
	}
	meta, err := s.keys.UpdateKey(c.Request.Context(), upd)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.Header("ETag", etag(meta.Version))
	c.JSON(http.StatusOK, keyMetadata(meta))
}

func (s *server) deleteKey(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, ifMatch: true, query: "destroy"})
	if !ok {
		return
	}
	revoke, ok := s.boolQuery(c, "revokeAtProvider")
	if !ok {
		return
	}
	if revoke {
		s.revokeKey(c, r)
		return
	}
	if err := s.keys.DeleteKey(c.Request.Context(), broker.DeleteKeyRequest{
		Actor: s.actor(c), Ref: r.key(), ExpectedVersion: r.expected, Destroy: r.flag}); err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *server) listVersions(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys})
	if !ok {
		return
	}
	vs, err := s.keys.Versions(c.Request.Context(), r.key())
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.VersionList{Versions: make([]client.KeyVersion, 0, len(vs))}
	authors := make([]string, len(vs))
	for i, v := range vs {
		authors[i] = v.Origin.Actor
	}
	names := s.actorNames(c, authors...)
	for _, v := range vs {
		kv := client.KeyVersion{Version: v.Version, CreatedAt: v.CreatedAt.UTC(), Destroyed: v.Destroyed, Current: v.Current,
			CreatedBy: v.Origin.Actor, CreatedByName: names[v.Origin.Actor], MaskedKey: v.Origin.MaskedKey}
		if !v.DeletedAt.IsZero() {
			d := v.DeletedAt.UTC()
			kv.DeletedAt = &d
		}
		out.Versions = append(out.Versions, kv)
	}
	c.JSON(http.StatusOK, out)
}

func (s *server) rollback(c *gin.Context) {
	var req client.RollbackRequest
	r, ok := s.open(c, opening{action: auth.ActionManageKeys, body: &req})
	if !ok {
		return
	}
	res, err := s.keys.Rollback(c.Request.Context(), broker.RollbackRequest{Actor: s.actor(c), Ref: r.key(), Version: req.Version})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.Header("ETag", etag(res.Meta.Version))
	c.JSON(http.StatusOK, keyMetadata(res.Meta))
}

// checkKey asks the key's provider whether it accepts the key.
func (s *server) checkKey(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys})
	if !ok {
		return
	}
	t, err := s.keys.CheckKey(c.Request.Context(), s.actor(c), r.key())
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, client.KeyCheckResult{Result: t.Verdict, Status: t.Status, Detail: t.Detail, Health: t.Health,
		CheckedAt: t.CheckedAt.UTC()})
}

// report takes what a provider answered to a call made with a resolved key.
func (s *server) report(c *gin.Context) {
	o, ok := s.open(c, opening{resolver: true})
	if !ok {
		return
	}
	p := o.principal
	if ok, wait := s.reports.AllowReport(p.TokenID); !ok {
		renderError(c, s.log, rateLimited(wait, "this token is over its rate of reports"))
		return
	}
	var req client.ReportRequest
	if derr := decodeJSON(c, &req); derr != nil {
		renderError(c, s.log, derr)
		return
	}
	st := stateOf(c)
	r, err := s.keys.Report(c.Request.Context(), broker.ReportRequest{Caller: p.TokenID, RemoteAddr: clientAddr(c), RequestID: st.id,
		ResolutionID: req.ResolutionID, Outcome: req.Outcome, RetryAfter: time.Duration(req.RetryAfterSeconds) * time.Second})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	c.JSON(http.StatusOK, client.ReportResult{Scope: string(r.Ref.ScopeKind), ScopeID: r.Ref.ScopeID, Provider: r.Ref.Provider,
		KeyID: r.Ref.KeyID, Health: r.Health, Changed: r.Changed})
}

// purge destroys every key of a workspace or organization (operators).
func (s *server) purge(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionPurgeWorkspace})
	if !ok {
		return
	}
	n, err := s.keys.PurgeScope(c.Request.Context(), s.actor(c), r.scope)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.PurgeResult{KeysDestroyed: n}
	if r.scope.Kind == broker.ScopeOrganization {
		out.Organization = r.scope.ID
	} else {
		out.Workspace = r.scope.ID
	}
	c.JSON(http.StatusOK, out)
}

// linkedWorkspaces lists the workspaces linked to an organization.
func (s *server) linkedWorkspaces(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	linked, err := s.keys.LinkedWorkspaces(c.Request.Context(), r.scope.ID)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	out := client.WorkspaceList{Workspaces: make([]client.LinkedWorkspace, 0, len(linked))}
	for _, l := range linked {
		out.Workspaces = append(out.Workspaces, client.LinkedWorkspace{Workspace: l.Workspace, Inherit: l.Settings.Inherit,
			HostedFallback: l.Settings.HostedFallback})
	}
	c.JSON(http.StatusOK, out)
}

const (
	defaultAuditLimit = 50
	maxAuditLimit     = 200
)

func (s *server) listAudit(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionManageKeys})
	if !ok {
		return
	}
	s.auditPage(c, &r.scope)
}

// listGlobalAudit is the operator's trail: every event, the operator-wide
// ones (tokens of no workspace) included.
func (s *server) listGlobalAudit(c *gin.Context) {
	if _, ok := s.open(c, opening{action: auth.ActionGlobalAudit}); !ok {
		return
	}
	s.auditPage(c, nil)
}

// auditPage answers a page of a scope's trail (nil: the global one), with
// the optional filters action, outcome and actor.
func (s *server) auditPage(c *gin.Context, scope *broker.Scope) {
	limit, ok := s.pageLimit(c, defaultAuditLimit, maxAuditLimit)
	if !ok {
		return
	}
	before, ok := s.idCursor(c)
	if !ok {
		return
	}
	evs, err := s.keys.QueryAudit(c.Request.Context(), broker.AuditQuery{Scope: scope, Before: before, Limit: limit + 1,
		Action: c.Query("action"), Outcome: c.Query("outcome"), Actor: c.Query("actor")})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	page := client.AuditPage{Events: make([]client.AuditEvent, 0, min(len(evs), limit))}
	actors := make([]string, 0, len(evs))
	for _, ev := range evs {
		actors = append(actors, ev.Actor)
	}
	names := s.actorNames(c, actors...)
	for i, ev := range evs {
		if i == limit {
			page.NextCursor = strconv.FormatInt(evs[i-1].ID, 10)
			break
		}
		out := auditEvent(ev)
		out.ActorName = names[ev.Actor]
		page.Events = append(page.Events, out)
	}
	c.JSON(http.StatusOK, page)
}

func auditEvent(ev broker.AuditEvent) client.AuditEvent {
	out := client.AuditEvent{
		ID: strconv.FormatInt(ev.ID, 10), OccurredAt: ev.OccurredAt.UTC(), Scope: string(ev.ScopeKind), ScopeID: ev.ScopeID,
		Provider: ev.Provider, KeyID: ev.KeyID,
		Action: ev.Action, Actor: ev.Actor, RemoteAddr: ev.RemoteAddr, Outcome: ev.Outcome, Version: ev.Version,
		RequestID: ev.RequestID, ClientRequestID: ev.ClientRequestID, Detail: ev.Detail, Count: max(ev.Count, 1),
	}
	if ev.ScopeKind == broker.ScopeWorkspace {
		out.Workspace = ev.ScopeID
	}
	if ev.MaskedKey != nil {
		out.MaskedKey = *ev.MaskedKey
	}
	return out
}

// The resolve answer's header values, shared by every answer: net/http
// copies a header when it writes it, and nothing appends to these.
var (
	noStore         = []string{"no-store"}
	jsonContentType = []string{"application/json; charset=utf-8"}
)

func (s *server) resolve(c *gin.Context) {
	// Only a resolver may resolve; refuse the others before reading the
	// body, and a resolver limited to workspaces once the body names one.
	o, ok := s.open(c, opening{resolver: true})
	if !ok {
		return
	}
	var req client.ResolveRequest
	if derr := decodeResolveRequest(c, &req); derr != nil {
		renderError(c, s.log, derr)
		return
	}
	if !s.authorize(c, auth.ActionResolve, broker.WorkspaceScope(req.Workspace), req.Provider) {
		return
	}
	r, err := s.keys.Resolve(c.Request.Context(), broker.ResolveRequest{Workspace: req.Workspace, Provider: req.Provider, Model: req.Model,
		Caller: o.principal.TokenID})
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	// Encoded by hand into a pooled buffer and written once, with its
	// length: this is the hot path.
	buf := answerBuffers.Get().(*[]byte)
	answer := client.ResolveResponse{APIKey: r.APIKey(), Kind: r.Credential.Kind(), Source: string(r.Source), IsBYOK: r.IsBYOK, Version: r.Version,
		Scope: string(r.ScopeKind), KeyID: r.KeyID, Fingerprint: r.Fingerprint, ResolutionID: r.ResolutionID, FallbackReason: r.FallbackReason,
		TTLSeconds: s.ttlSeconds}
	if !r.KeyExpiresAt.IsZero() && answer.TTLSeconds > 0 {
		// A caching client keeps the answer no later than the key's expiry.
		left := int(time.Until(r.KeyExpiresAt) / time.Second)
		answer.TTLSeconds = max(1, min(answer.TTLSeconds, left))
	}
	if !r.KeyExpiresAt.IsZero() {
		answer.KeyExpiresAt = r.KeyExpiresAt.UTC()
	}
	if answer.Kind != providers.KindAPIKey {
		answer.Credential = s.credentialFields(req.Provider, r.Credential)
		if !r.ExpiresAt.IsZero() {
			answer.ExpiresAt = r.ExpiresAt.UTC()
		}
	}
	*buf = appendResolveAnswer((*buf)[:0], &answer)
	h := c.Writer.Header()
	h["Cache-Control"], h["Content-Type"] = noStore, jsonContentType
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(*buf)
	// The key is in the buffer: wipe it before the buffer is reused.
	clear(*buf)
	answerBuffers.Put(buf)
}
