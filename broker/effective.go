package broker

import (
	"context"
)

// EffectiveSource says where a workspace's calls for one provider get
// their key now, and why.
type EffectiveSource struct {
	Provider string
	// Scope serves the calls: ScopeWorkspace, ScopeOrganization,
	// ScopeHosted, or "" when no key may serve (the calls fail with
	// no_key). ScopeID names the organization.
	Scope   ScopeKind
	ScopeID string
	// UsableKeys is how many keys of that scope may serve (active; keys
	// limited to some models count too).
	UsableKeys int
	// Reason says why an earlier scope does not serve, or why none does
	// (the reasons of Resolve).
	Reason string
	// First are the keys that serve first: the active keys of the lowest
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
// from this replica's memory, as resolve does.
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
	var out []EffectiveSource
	for _, p := range b.providers.All() {
		src := EffectiveSource{Provider: p.ID}
		n, out1 := b.usable(WorkspaceScope(workspace).Pool(p.ID))
		reason := ReasonNoWorkspaceKey
		if out1 != poolEmpty {
			reason = ReasonWorkspaceKeysUnavailable
		}
		switch {
		case n > 0:
			src.Scope, src.ScopeID, src.UsableKeys = ScopeWorkspace, workspace, n
			out = append(out, b.withFirst(ctx, src, WorkspaceScope(workspace).Pool(p.ID)))
			continue
		case settings.Organization != "" && settings.Inherit:
			org := OrganizationScope(settings.Organization)
			n, out2 := b.usable(org.Pool(p.ID))
			if n > 0 {
				src.Scope, src.ScopeID, src.UsableKeys, src.Reason = ScopeOrganization, org.ID, n, reason
				out = append(out, b.withFirst(ctx, src, org.Pool(p.ID)))
				continue
			}
			reason = ReasonNoOrganizationKey
			if out2 != poolEmpty {
				reason = ReasonOrganizationKeysUnavailable
			}
		}
		if !settings.HostedFallback {
			src.Reason = ReasonHostedFallbackOff
			out = append(out, src)
			continue
		}
		n, out3 := b.usable(HostedScope().Pool(p.ID))
		switch {
		case n > 0:
			src.Scope, src.UsableKeys, src.Reason = ScopeHosted, n, reason
			src = b.withFirst(ctx, src, HostedScope().Pool(p.ID))
		case out3 == poolEmpty:
			src.Reason = ReasonNoHostedKey
		default:
			src.Reason = ReasonHostedKeysUnavailable
		}
		out = append(out, src)
	}
	return out, nil
}

// withFirst adds the pool's first keys to src, named from PostgreSQL. A
// name that cannot be read is left out: the id still says which key.
func (b *Broker) withFirst(ctx context.Context, src EffectiveSource, pr PoolRef) EffectiveSource {
	p, _ := b.pools.get(pr)
	if p == nil {
		return src
	}
	best := -1
	for _, m := range p.members {
		if !m.disabled && (best < 0 || m.priority < best) {
			best = m.priority
		}
	}
	for _, m := range p.members {
		if m.disabled || m.priority != best {
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

// usable counts the active keys of a pool as this replica knows it.
func (b *Broker) usable(pr PoolRef) (int, poolOutcome) {
	p, _ := b.pools.get(pr)
	if p == nil {
		return 0, poolEmpty
	}
	n := 0
	for _, m := range p.members {
		if !m.disabled {
			n++
		}
	}
	if n == 0 {
		return 0, poolUnavailable
	}
	return n, poolServed
}
