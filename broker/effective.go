package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/keybroker/keybroker/vault"
)

// EffectiveSource says where a workspace's calls for one provider get
// their key now, and why.
type EffectiveSource struct {
	Provider string
	// Scope serves the calls: ScopeWorkspace, ScopeHosted, or "" when no
	// key may serve (the calls fail with no_key).
	Scope ScopeKind
	// UsableKeys is how many keys of that scope may serve (v1 pools hold
	// one).
	UsableKeys int
	// Reason says why an earlier scope does not serve, or why none does
	// (no_workspace_key, hosted_fallback_off, no_hosted_key).
	Reason string
}

// Effective answers, per provider, which scope serves the workspace's
// calls now: its own key, the platform's hosted key (billed), or none. It
// reads the metadata and the settings from PostgreSQL and the hosted keys'
// metadata from Vault (the writer may read metadata, never a key).
func (b *Broker) Effective(ctx context.Context, workspace string) ([]EffectiveSource, error) {
	if err := b.canManage(); err != nil {
		return nil, err
	}
	settings, err := b.GetSettings(ctx, workspace)
	if err != nil {
		return nil, err
	}
	recs, err := b.store.ListKeys(ctx, workspace)
	if err != nil {
		return nil, fromStore(err)
	}
	own := make(map[string]bool, len(recs))
	for _, r := range recs {
		own[r.Provider] = true
	}
	var out []EffectiveSource
	for _, p := range b.providers.All() {
		src := EffectiveSource{Provider: p.ID}
		switch {
		case own[p.ID]:
			src.Scope, src.UsableKeys = ScopeWorkspace, 1
		case !settings.HostedFallback:
			src.Reason = ReasonHostedFallbackOff
		default:
			md, err := b.writer.Metadata(ctx, HostedKey(p.ID).VaultPath())
			if err != nil && !errors.Is(err, vault.ErrNotFound) {
				return nil, fmt.Errorf("effective sources of %s: %w", workspace, fromVault(err))
			}
			if cur, ok := md.Current(); err == nil && ok && cur.Alive() {
				src.Scope, src.UsableKeys, src.Reason = ScopeHosted, 1, ReasonNoWorkspaceKey
			} else {
				src.Reason = ReasonNoHostedKey
			}
		}
		out = append(out, src)
	}
	return out, nil
}
