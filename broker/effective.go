package broker

import (
	"context"
	"time"
)

// EffectiveSource says where a workspace's calls for one provider get
// their key now, and why.
type EffectiveSource struct {
	Provider string
	// Scope serves the calls: ScopeWorkspace, ScopeOrganization,
	// ScopeHosted, or "" when no key may serve now (the calls fail with
	// no_key, or with keys_cooling_down until CoolingDownUntil). ScopeID
	// names the organization.
	Scope   ScopeKind
	ScopeID string
	// UsableKeys is how many keys of that scope may serve now (active,
	// not failing, not cooling down; keys limited to some models count
	// too).
	UsableKeys int
	// Reason says why an earlier scope does not serve, or why none does
	// (the reasons of Resolve: a NoKeyError's, or a CoolingDownError's).
	Reason string
	// CoolingDownUntil, when no key serves now but some will once their
	// cooldown ends, is the earliest end (Reason is then one of the
	// Reason*KeysCoolingDown).
	CoolingDownUntil time.Time
	// First are the keys that serve first: the usable keys of the lowest
	// priority (more than one take turns), with their names.
	First []ServingKey
}

// ServingKey names a key that serves.
type ServingKey struct {
	KeyID string
	Name  string
}

// Effective answers, per provider, which scope serves the workspace's
// calls now: its own keys, its organization's, the platform's hosted keys
// (billed), or none. It reads the settings from PostgreSQL and the pools
// (with what is known of the keys' health, the workspace's own cooldowns
// of shared keys included) from this replica's memory, as resolve does,
// for a call whose model every key allows.
func (b *Broker) Effective(ctx context.Context, workspace string) ([]EffectiveSource, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	settings, err := b.GetSettings(ctx, workspace)
	if err != nil {
		return nil, err
	}
	if !b.PoolsLoaded() {
		return nil, ErrPoolsNotLoaded
	}
	now := b.now()
	cooled := b.cooldowns.of(workspace, "")
	var out []EffectiveSource
	for _, p := range b.providers.All() {
		src := EffectiveSource{Provider: p.ID}
		var cool coolingScopes
		ws := WorkspaceScope(workspace).Pool(p.ID)
		n, out1, until := b.usable(ws, nil, now)
		reason := ReasonNoWorkspaceKey
		if out1 != poolEmpty {
			reason = ReasonWorkspaceKeysUnavailable
		}
		cool.add(ScopeWorkspace, until)
		switch {
		case n > 0:
			src.Scope, src.ScopeID, src.UsableKeys = ScopeWorkspace, workspace, n
			out = append(out, b.withFirst(ctx, src, ws, nil, now))
			continue
		case settings.Organization != "" && settings.Inherit:
			org := OrganizationScope(settings.Organization).Pool(p.ID)
			n, out2, until := b.usable(org, cooled, now)
			if n > 0 {
				src.Scope, src.ScopeID, src.UsableKeys, src.Reason = ScopeOrganization, settings.Organization, n, reason
				out = append(out, b.withFirst(ctx, src, org, cooled, now))
				continue
			}
			cool.add(ScopeOrganization, until)
			reason = ReasonNoOrganizationKey
			if out2 != poolEmpty {
				reason = ReasonOrganizationKeysUnavailable
			}
		}
		if !settings.HostedFallback {
			src.Reason = ReasonHostedFallbackOff
			out = append(out, withCooling(src, cool))
			continue
		}
		hosted := HostedScope().Pool(p.ID)
		n, out3, until := b.usable(hosted, cooled, now)
		cool.add(ScopeHosted, until)
		switch {
		case n > 0:
			src.Scope, src.UsableKeys, src.Reason = ScopeHosted, n, reason
			src = b.withFirst(ctx, src, hosted, cooled, now)
		case out3 == poolEmpty:
			src.Reason = ReasonNoHostedKey
		default:
			src.Reason = ReasonHostedKeysUnavailable
		}
		out = append(out, withCooling(src, cool))
	}
	return out, nil
}

// withCooling gives a source that no key serves now the cooldown resolve
// would answer with, if a key of the chain is cooling down.
func withCooling(src EffectiveSource, c coolingScopes) EffectiveSource {
	if src.Scope == "" && c.until != 0 {
		src.Reason, src.CoolingDownUntil = coolingReason(c.scope), time.Unix(0, c.until).UTC()
	}
	return src
}

// servesNow says whether m may serve now (whatever the model): active,
// not failing, not cooling down for everyone or for the workspace
// (cooled). until is when its cooldown ends, if it is cooling down.
func servesNow(m *member, cooled map[KeyRef]int64, now time.Time) (ok bool, until int64) {
	if m.disabled || m.failing {
		return false, 0
	}
	until = m.cooldownUntil
	if cooled != nil {
		until = max(until, cooled[m.ref])
	}
	if until != 0 && now.UnixNano() < until {
		return false, until
	}
	return true, 0
}

// withFirst adds the pool's first keys to src, named from PostgreSQL. A
// name that cannot be read is left out: the id still says which key.
func (b *Broker) withFirst(ctx context.Context, src EffectiveSource, pr PoolRef, cooled map[KeyRef]int64, now time.Time) EffectiveSource {
	p, _ := b.pools.get(pr)
	if p == nil {
		return src
	}
	best := -1
	for i := range p.members {
		m := &p.members[i]
		if ok, _ := servesNow(m, cooled, now); ok && (best < 0 || m.priority < best) {
			best = m.priority
		}
	}
	for i := range p.members {
		m := &p.members[i]
		if ok, _ := servesNow(m, cooled, now); !ok || m.priority != best {
			continue
		}
		k := ServingKey{KeyID: m.ref.KeyID}
		if rec, err := b.store.GetKey(ctx, m.ref); err == nil {
			k.Name = rec.Name
		}
		src.First = append(src.First, k)
	}
	return src
}

// usable counts the keys of a pool that may serve now, as this replica
// knows it; when none may but some are cooling down, until is the
// earliest end of their cooldowns.
func (b *Broker) usable(pr PoolRef, cooled map[KeyRef]int64, now time.Time) (n int, out poolOutcome, until int64) {
	p, _ := b.pools.get(pr)
	if p == nil {
		return 0, poolEmpty, 0
	}
	for i := range p.members {
		ok, u := servesNow(&p.members[i], cooled, now)
		switch {
		case ok:
			n++
		case u != 0 && (until == 0 || u < until):
			until = u
		}
	}
	switch {
	case n > 0:
		return n, poolServed, 0
	case until != 0:
		return 0, poolCoolingDown, until
	}
	return 0, poolUnavailable, 0
}
