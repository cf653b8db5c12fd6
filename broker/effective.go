package broker

import (
	"context"
	"fmt"
	"time"
)

// EffectiveSource says where a workspace's calls for one provider get
// their key now, and why.
type EffectiveSource struct {
	Provider string
	// ScopeKind serves the calls: ScopeWorkspace, ScopeOrganization,
	// ScopeHosted, or "" when no key may serve now (the calls fail with
	// no_key, or with keys_cooling_down until CoolingDownUntil). ScopeID
	// names the workspace or the organization ("" for hosted).
	ScopeKind ScopeKind
	ScopeID   string
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
// (billed), or none — what a resolve does now (the same walk, walkChain),
// for a call whose model every key allows and a caller with no cooldown of
// its own. It reads the settings from PostgreSQL and the pools (with what
// is known of the keys' health, the workspace's own cooldowns of shared
// keys included) from this replica's memory, as resolve does.
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
	stored := func(string) (Settings, bool) { return settings, true }
	var out []EffectiveSource
	for _, p := range b.providers.All() {
		var usable int // the keys that may serve in the pool asked last
		d, err := walkChain(workspace, p.ID, stored, func(pr PoolRef) (poolOutcome, int64, error) {
			n, out, until, err := b.usable(ctx, pr, cooled, now)
			usable = n
			return out, until, err
		})
		if err != nil {
			return nil, fmt.Errorf("effective source of %s for %s: %w", workspace, p.ID, err)
		}
		src := EffectiveSource{Provider: p.ID, ScopeKind: d.Pool.ScopeKind, ScopeID: d.Pool.ScopeID, Reason: d.Reason}
		if d.served() {
			src.UsableKeys = usable
			src = b.withFirst(ctx, src, d.Pool, cooled, now)
		}
		if d.CoolingUntil != 0 {
			src.CoolingDownUntil = time.Unix(0, d.CoolingUntil).UTC()
		}
		out = append(out, src)
	}
	return out, nil
}

// servesNow says whether m may serve now (whatever the model): active,
// not failing, not cooling down for everyone or for the workspace
// (cooled). until is when its cooldown ends, if it is cooling down.
func servesNow(m *member, cooled map[KeyRef]int64, now time.Time) (ok bool, until int64) {
	if m.disabled || m.failing || m.expiredAt(now.UnixNano()) {
		return false, 0
	}
	until = m.cooledUntil(cooled)
	if until != 0 && now.UnixNano() < until {
		return false, until
	}
	return true, 0
}

// withFirst adds the pool's first keys to src, named from PostgreSQL. A
// name that cannot be read is left out: the id still says which key.
func (b *Broker) withFirst(ctx context.Context, src EffectiveSource, pr PoolRef, cooled map[KeyRef]int64, now time.Time) EffectiveSource {
	p, err := b.poolOf(ctx, pr)
	if err != nil || p == nil {
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
func (b *Broker) usable(ctx context.Context, pr PoolRef, cooled map[KeyRef]int64, now time.Time) (n int, out poolOutcome, until int64, err error) {
	p, err := b.poolOf(ctx, pr)
	if err != nil {
		return 0, 0, 0, err
	}
	if p == nil {
		return 0, poolEmpty, 0, nil
	}
	expired := false
	for i := range p.members {
		m := &p.members[i]
		ok, u := servesNow(m, cooled, now)
		expired = expired || !m.disabled && !m.failing && m.expiredAt(now.UnixNano())
		switch {
		case ok:
			n++
		case u != 0 && (until == 0 || u < until):
			until = u
		}
	}
	switch {
	case n > 0:
		return n, poolServed, 0, nil
	case until != 0:
		return 0, poolCoolingDown, until, nil
	case expired:
		return 0, poolExpired, 0, nil
	}
	return 0, poolUnavailable, 0, nil
}

// poolOf is pr's pool (nil: it holds no key), read when this replica does
// not hold it.
func (b *Broker) poolOf(ctx context.Context, pr PoolRef) (*pool, error) {
	if b.pools == nil {
		return nil, nil
	}
	return b.pools.get(ctx, pr)
}
