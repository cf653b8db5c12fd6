package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// LayoutReport says what MigrateLayout did.
type LayoutReport struct {
	// Moved names the keys moved from the v1 layout.
	Moved []string
	// Skipped: "key: reason" for keys left where they were.
	Skipped []string
}

// ActionMigrateLayout records a key moved from the v1 layout.
const ActionMigrateLayout = "key.migrate_layout"

// migrationPlaceholder stands in, at the new path, for a version that the
// v1 path no longer serves (deleted, destroyed or pruned): it is written
// and soft-deleted at once, so the version numbers (the ETags and the
// history admins know) stay the same. No resolve or rollback can read it.
const migrationPlaceholder = "keybroker-layout-migration-placeholder-not-a-key"

// MigrateLayout moves every key that keybroker v1 kept at
// <scope>/providers/<provider> (workspaces and hosted) to
// <scope>/providers/<provider>/keys/default: every version is copied in
// order with the reader identity and written with the writer (check-and-
// set at each version, so the version numbers stay), then the v1 secret
// is destroyed. Running it again moves what is left; a key that already
// has a secret at the new path is skipped and reported.
func (b *Broker) MigrateLayout(ctx context.Context, actor Actor) (LayoutReport, error) {
	var rep LayoutReport
	if err := b.canManage(); err != nil {
		return rep, err
	}
	if b.reader == nil {
		return rep, fmt.Errorf("migrate layout: %w: it copies the keys with the Vault reader identity", ErrNotConfigured)
	}
	var errs []error
	for _, scope := range b.vaultScopes(ctx, &errs) {
		if scope.Kind == ScopeOrganization {
			continue // v1 had no organizations
		}
		names, err := b.writer.List(ctx, scope.ProvidersDir())
		if err != nil {
			errs = append(errs, fmt.Errorf("migrate layout: list %s: %w", scope, fromVault(err)))
			continue
		}
		for _, name := range names {
			if strings.HasSuffix(name, "/") || !ids.Valid(name) {
				continue
			}
			ref := scope.Key(name, DefaultKeyID)
			skipped, err := b.migrateKey(ctx, actor, ref)
			switch {
			case err != nil:
				errs = append(errs, err)
			case skipped != "":
				rep.Skipped = append(rep.Skipped, ref.String()+": "+skipped)
			default:
				rep.Moved = append(rep.Moved, ref.String())
			}
		}
	}
	return rep, errors.Join(errs...)
}

func (b *Broker) migrateKey(ctx context.Context, actor Actor, ref KeyRef) (skipped string, err error) {
	legacy, path := ref.LegacyVaultPath(), ref.VaultPath()
	if _, err := b.writer.Metadata(ctx, path); err == nil {
		return "a secret exists at both " + legacy + " and " + path + "; keybroker serves " + path +
			": remove " + legacy + " once you have checked it", nil
	} else if !errors.Is(err, vault.ErrNotFound) {
		return "", fmt.Errorf("migrate %s: %w", ref, fromVault(err))
	}
	md, err := b.writer.Metadata(ctx, legacy)
	if err != nil {
		return "", fmt.Errorf("migrate %s: %w", ref, fromVault(err))
	}
	live := make(map[int]bool, len(md.Versions))
	for _, v := range md.Versions {
		live[v.Version] = v.Alive()
	}
	for v := 1; v <= md.CurrentVersion; v++ {
		// v1 kept api_key credentials only; the secret's fields are
		// copied as they are.
		data := map[string]string{providers.VaultFieldAPIKey: migrationPlaceholder}
		if live[v] {
			s, err := b.reader.GetVersion(ctx, legacy, v)
			if err != nil {
				return "", fmt.Errorf("migrate %s: read version %d: %w", ref, v, fromVault(err))
			}
			data = s.Data
		}
		if _, err := b.writer.Put(ctx, path, data, v-1); err != nil {
			return "", fmt.Errorf("migrate %s: write version %d: %w", ref, v, fromVault(err))
		}
		if !live[v] {
			if err := b.writer.DeleteVersion(ctx, path, v); err != nil {
				return "", fmt.Errorf("migrate %s: delete placeholder version %d: %w", ref, v, fromVault(err))
			}
		}
	}
	if err := b.writer.Destroy(ctx, legacy); err != nil {
		return "", fmt.Errorf("migrate %s: copied, but the v1 secret %s could not be removed (run again): %w", ref, legacy, fromVault(err))
	}
	b.evict(ref)
	ev := AuditEvent{ScopeKind: ref.ScopeKind, ScopeID: ref.ScopeID, Provider: ref.Provider, KeyID: ref.KeyID, Action: ActionMigrateLayout,
		Actor: actor.Subject, Outcome: OutcomeSuccess, Version: &md.CurrentVersion,
		Detail: fmt.Sprintf("moved from %s to %s with its %d versions", legacy, path, md.CurrentVersion)}
	if err := b.store.AppendAudit(ctx, ev); err != nil {
		b.log.Warn("could not record a key moved to the v2 layout in the audit trail", "key", ref.String(), "error", err)
	}
	b.log.InfoContext(ctx, "key moved to the v2 layout", "key", ref.String(), "versions", md.CurrentVersion)
	return "", nil
}
