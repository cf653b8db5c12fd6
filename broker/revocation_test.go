package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// TestRevokeAtProvider deletes keys with revocation at the provider: an
// OpenAI key's service account is deleted; an Anthropic key is set
// inactive; a provider that fails is asked again until it confirms (the
// key left its pool at once); what cannot be revoked is refused and
// changes nothing.
func TestRevokeAtProvider(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	project, oldAccount := g.scopeWithOpenAI(t, ws)

	// OpenAI: the provider fails first; the answer says the revocation is
	// pending, the key no longer serves; the retry deletes it.
	g.openai.FailAdmin("DELETE", "/v1/organization/projects/", 503)
	rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("openai", "primary")})
	if err != nil {
		t.Fatal(err)
	}
	if rv.State != broker.RevocationPending || rv.Attempts != 1 || rv.LastError == "" {
		t.Fatalf("with the provider failing: %+v", rv)
	}
	if _, err := g.b.GetKey(ctx, scope.Key("openai", "primary")); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("the key is still in its pool while the provider fails: %v", err)
	}
	if n, err := g.b.RetryRevocations(ctx); err != nil || n != 0 {
		t.Fatalf("before its backoff, a retry did %d (%v)", n, err)
	}
	g.openai.FailAdmin("", "", 0)
	g.clock.Add(time.Hour)
	if n, err := g.restart(t).RetryRevocations(ctx); err != nil || n != 1 {
		t.Fatalf("the retry did %d (%v)", n, err)
	}
	if accounts := g.openai.ServiceAccounts(project); len(accounts) != 0 {
		t.Fatalf("the service account %s is still at the provider: %+v", oldAccount, accounts)
	}

	// A stale If-Match version: refused, nothing recorded or deleted.
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: "second", Credential: providers.APIKey(newKey(t, "openai")),
		ProviderKeyID: "svc_acct_unknown"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("openai", "second"), ExpectedVersion: 7}); !errors.Is(err, broker.ErrPreconditionFailed) {
		t.Fatalf("a stale version: %v", err)
	}
	if _, err := g.b.GetKey(ctx, scope.Key("openai", "second")); err != nil {
		t.Fatalf("a refused revocation deleted the key: %v", err)
	}
	if n, err := g.b.RetryRevocations(ctx); err != nil || n != 0 {
		t.Fatalf("a refused revocation was recorded: %d %v", n, err)
	}

	// Anthropic: set inactive with the Admin API.
	adminKey := "sk-ant-admin01-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, adminKey)
	usedKeysMu.Unlock()
	g.anthropic.AddAdminKey(adminKey)
	key := newKey(t, "anthropic")
	g.anthropic.AddKey("apikey_01abc", "prod", key)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic"), KeyID: "claude", Credential: providers.APIKey(key),
		ProviderKeyID: "apikey_01abc"}); err != nil {
		t.Fatal(err)
	}
	// Without the admin credential: refused, nothing deleted.
	if _, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("anthropic", "claude")}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("without an admin credential: %v", err)
	}
	if _, err := g.b.GetKey(ctx, scope.Key("anthropic", "claude")); err != nil {
		t.Fatalf("a refused revocation deleted the key: %v", err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindAnthropicAdmin, map[string]string{providers.FieldAdminKey: adminKey})}); err != nil {
		t.Fatal(err)
	}
	rv, err = g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("anthropic", "claude")})
	if err != nil || rv.State != broker.RevocationDone || rv.Action != "deactivated" {
		t.Fatalf("revoke at Anthropic: %+v %v", rv, err)
	}
	if st := g.anthropic.Status("apikey_01abc"); st != "inactive" {
		t.Fatalf("the key is %q at Anthropic", st)
	}

	// Providers without an admin API, and keys of unknown provider id:
	// refused, nothing deleted.
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("mistral"), KeyID: "m", Credential: providers.APIKey(newKey(t, "mistral"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("mistral", "m")}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("revoking a Mistral key at the provider: %v", err)
	}
}

// TestAdminCredentialIsNeverResolved: a resolve of an admin provider is
// refused, whatever the pool holds.
func TestAdminCredentialIsNeverResolved(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	g.scopeWithOpenAI(t, g.workspc)
	_, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: g.workspc, Provider: "openai-admin"})
	if !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("resolving the admin credential: %v", err)
	}
}

// TestScheduledRotation: a scope's rotateAfter rotates its keys once they
// are older, where the admin API can (OpenAI), and not the others.
func TestScheduledRotation(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	project, _ := g.scopeWithOpenAI(t, ws)
	g.clock.Set(time.Now()) // the keys' creation is on PostgreSQL's clock
	if _, err := g.b.SetLifecycleSettings(ctx, alice, scope, 30*time.Minute); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("a rotateAfter of 30 minutes: %v", err)
	}
	if _, err := g.b.SetLifecycleSettings(ctx, alice, scope, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if s, err := g.b.LifecycleSettings(ctx, scope); err != nil || s.RotateAfter != 90*24*time.Hour {
		t.Fatalf("settings %+v %v", s, err)
	}
	if n, err := g.b.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("a new key was rotated: %d %v", n, err)
	}
	// The keys' creation is on PostgreSQL's clock; the schedule on the
	// broker's, which is moved past it.
	g.clock.Set(time.Now().Add(91 * 24 * time.Hour))
	if n, err := g.b.RotateDue(ctx); err != nil || n != 1 {
		t.Fatalf("91 days on, %d rotations started (%v)", n, err)
	}
	if accounts := g.openai.ServiceAccounts(project); len(accounts) != 2 {
		t.Fatalf("the project holds %d accounts", len(accounts))
	}
	rots, err := g.b.Rotations(ctx, scope.Key("openai", "primary"))
	if err != nil || len(rots) != 1 || rots[0].Trigger != broker.TriggerSchedule {
		t.Fatalf("rotations %+v %v", rots, err)
	}
}

// TestExpiryLearnedFromTheProvider: Anthropic's Admin API says when a key
// expires; keybroker records it (the key turns expiring, then is not
// served and the hosted key serves with fallbackReason "expired").
func TestExpiryLearnedFromTheProvider(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	scope := broker.WorkspaceScope(g.workspc)
	adminKey := "sk-ant-admin01-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, adminKey)
	usedKeysMu.Unlock()
	g.anthropic.AddAdminKey(adminKey)
	key := newKey(t, "anthropic")
	g.anthropic.AddKey("apikey_02xyz", "prod", key)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic"), KeyID: "claude", Credential: providers.APIKey(key),
		ProviderKeyID: "apikey_02xyz"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindAnthropicAdmin, map[string]string{providers.FieldAdminKey: adminKey})}); err != nil {
		t.Fatal(err)
	}
	g.setHosted(t, "anthropic", newKey(t, "anthropic"))
	if n, err := g.b.LearnExpiries(ctx); err != nil || n != 0 {
		t.Fatalf("a key without an expiry at the provider: %d %v", n, err)
	}
	g.clock.Add(25 * time.Hour) // a key's expiry is asked at most daily
	expires := g.clock.Now().Add(3 * 24 * time.Hour).Truncate(time.Second)
	g.anthropic.SetExpiry("apikey_02xyz", expires)
	if n, err := g.b.LearnExpiries(ctx); err != nil || n != 1 {
		t.Fatalf("learn: %d %v", n, err)
	}
	g.clock.Add(25 * time.Hour)
	if n, _ := g.b.LearnExpiries(ctx); n != 0 {
		t.Fatal("the same expiry was recorded twice")
	}
	m, err := g.b.GetKey(ctx, scope.Key("anthropic", "claude"))
	if err != nil || !m.ExpiresAt.Equal(expires) || m.Expiry != broker.ExpiryExpiring {
		t.Fatalf("after learning: %v %q (%v)", m.ExpiresAt, m.Expiry, err)
	}
	g.clock.Set(expires.Add(time.Second))
	r, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: g.workspc, Provider: "anthropic"})
	if err != nil || r.ScopeKind != broker.ScopeHosted || r.FallbackReason != broker.ReasonExpired {
		t.Fatalf("past the learned expiry: %+v %v", r, err)
	}
}

// The review's lifecycle pass undid an admin's changes: a provider's later
// expiry replaced the admin's earlier one, and a key the admin disabled
// while the pass ran was enabled again (the pass wrote every setting from
// its stale read). Now the earlier date wins and only expiresAt is
// written; the provider is asked at most daily per key.
func TestLearnedExpiryKeepsTheAdminsEarlierDateAndChanges(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	scope := broker.WorkspaceScope(g.workspc)
	adminKey := "sk-ant-admin01-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, adminKey)
	usedKeysMu.Unlock()
	g.anthropic.AddAdminKey(adminKey)
	key := newKey(t, "anthropic")
	g.anthropic.AddKey("apikey_03abc", "prod", key)
	adminDate := g.clock.Now().Add(2 * 24 * time.Hour).Truncate(time.Second)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic"), KeyID: "claude", Credential: providers.APIKey(key),
		ProviderKeyID: "apikey_03abc", ExpiresAt: adminDate}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindAnthropicAdmin, map[string]string{providers.FieldAdminKey: adminKey})}); err != nil {
		t.Fatal(err)
	}
	// The provider's date is later than the admin's: kept the admin's.
	g.anthropic.SetExpiry("apikey_03abc", adminDate.Add(30*24*time.Hour))
	if n, err := g.b.LearnExpiries(ctx); err != nil || n != 0 {
		t.Fatalf("a later provider date: %d %v", n, err)
	}
	if m, err := g.b.GetKey(ctx, scope.Key("anthropic", "claude")); err != nil || !m.ExpiresAt.Equal(adminDate) {
		t.Fatalf("the admin's expiry became %v (%v)", m.ExpiresAt, err)
	}
	// An earlier provider date is learned; a key the admin disabled in
	// the meantime stays disabled (the store writes expires_at alone).
	earlier := adminDate.Add(-24 * time.Hour)
	g.anthropic.SetExpiry("apikey_03abc", earlier)
	disabled := broker.KeyDisabled
	if _, err := g.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: scope.Key("anthropic", "claude"), State: &disabled}); err != nil {
		t.Fatal(err)
	}
	if n, err := g.b.LearnExpiries(ctx); err != nil || n != 0 {
		t.Fatalf("asked again within a day: %d %v", n, err)
	}
	g.clock.Add(25 * time.Hour)
	if n, err := g.b.LearnExpiries(ctx); err != nil || n != 1 {
		t.Fatalf("an earlier provider date: %d %v", n, err)
	}
	m, err := g.b.GetKey(ctx, scope.Key("anthropic", "claude"))
	if err != nil || !m.ExpiresAt.Equal(earlier) || m.State != broker.KeyDisabled {
		t.Fatalf("after learning: expires %v, state %s (%v)", m.ExpiresAt, m.State, err)
	}
	// A stale read cannot re-enable it: the store's write is conditioned
	// on the row as it is.
	st := g.store
	if changed, err := st.LearnExpiry(ctx, scope.Key("anthropic", "claude"), earlier.Add(time.Hour), broker.AuditEvent{Actor: "keybroker:provider",
		ScopeKind: broker.ScopeWorkspace, ScopeID: g.workspc, Provider: "anthropic", KeyID: "claude", Action: broker.ActionUpdate, Outcome: broker.OutcomeSuccess}); err != nil || changed {
		t.Fatalf("a later date through the store: %v %v", changed, err)
	}
}
