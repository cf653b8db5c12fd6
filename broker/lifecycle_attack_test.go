package broker_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/providers"
)

// The review revoked a leaked key of project B with the admin credential
// of project A (same organization, and another organization's): OpenAI
// answers 404 for an account of another project, which keybroker read as
// "deleted already". Now keybroker asks whether the admin credential
// governs the key before anything is recorded: refused, nothing deleted,
// the account lives; a 404 is "gone" only for a key located before. The
// same with Anthropic: a key of another organization.
func TestRevocationOfAKeyOfAnotherProjectIsNotReportedDone(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	g.scopeWithOpenAI(t, ws) // the admin credential of project A
	projectB := "proj_b_" + strings.ReplaceAll(ws, "-", "_")
	otherOrgProject := "proj_x_" + strings.ReplaceAll(ws, "-", "_")
	g.openai.AddAdminKey(g.adminKey, "org-test", projectB)
	g.openai.AddAdminKey("sk-admin-other-organization-"+testenv.RandomID(t), "org-other", otherOrgProject)
	for _, project := range []string{projectB, otherOrgProject} {
		leaked := newKey(t, "openai")
		account := g.openai.AddServiceAccount(project, "leaked", leaked)
		keyID := "leaked-" + project[5:6]
		if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: keyID, Credential: providers.APIKey(leaked),
			ProviderKeyID: account}); err != nil {
			t.Fatal(err)
		}
		rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("openai", keyID)})
		if !errors.Is(err, broker.ErrInvalidRequest) {
			t.Fatalf("a key of %s revoked with project A's admin credential: %+v %v", project, rv, err)
		}
		if !g.openai.Accepts(leaked) {
			t.Fatalf("the key of %s no longer works", project)
		}
		if _, err := g.b.GetKey(ctx, scope.Key("openai", keyID)); err != nil {
			t.Fatalf("a refused revocation deleted the key: %v", err)
		}
		if _, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: scope.Key("openai", keyID)}); !errors.Is(err, broker.ErrInvalidRequest) {
			t.Fatalf("a rotation of a key of %s: %v", project, err)
		}
	}

	// An admin credential naming a project of another organization, or
	// an admin key the provider refuses, is refused when it is added.
	for name, cred := range map[string]map[string]string{
		"another organization's project": {providers.FieldAdminKey: g.adminKey, providers.FieldProjectID: otherOrgProject},
		"an unknown admin key":           {providers.FieldAdminKey: "sk-admin-unknown-" + testenv.RandomID(t), providers.FieldProjectID: projectB},
	} {
		if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai-admin"), KeyID: "wrong",
			Credential: providers.New(providers.KindOpenAIAdmin, cred)}); !errors.Is(err, broker.ErrInvalidRequest) {
			t.Fatalf("an admin credential of %s: %v", name, err)
		}
		if _, err := g.b.GetKey(ctx, scope.Key("openai-admin", "wrong")); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("a refused admin credential was stored: %v", err)
		}
	}

	// A located key whose account is then deleted by hand: 404 is gone.
	key := newKey(t, "openai")
	project := "proj_" + strings.ReplaceAll(ws, "-", "_")
	account := g.openai.AddServiceAccount(project, "second", key)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: "second", Credential: providers.APIKey(key),
		ProviderKeyID: account}); err != nil {
		t.Fatal(err)
	}
	g.openai.FailAdmin("DELETE", "/v1/organization/projects/", 503)
	rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("openai", "second")})
	if err != nil || rv.State != broker.RevocationPending || !rv.Located {
		t.Fatalf("with the provider failing: %+v %v", rv, err)
	}
	g.openai.FailAdmin("", "", 0)

	// Anthropic: a key of another organization.
	adminKey := "sk-ant-admin01-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, adminKey)
	usedKeysMu.Unlock()
	g.anthropic.AddAdminKeyOf("org-a", adminKey)
	foreign := newKey(t, "anthropic")
	g.anthropic.AddKeyOf("org-b", "apikey_01foreign", "prod", foreign)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic"), KeyID: "claude", Credential: providers.APIKey(foreign),
		ProviderKeyID: "apikey_01foreign"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindAnthropicAdmin, map[string]string{providers.FieldAdminKey: adminKey})}); err != nil {
		t.Fatal(err)
	}
	if rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("anthropic", "claude")}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("an Anthropic key of another organization: %+v %v", rv, err)
	}
	if st := g.anthropic.Status("apikey_01foreign"); st != "active" {
		t.Fatalf("the key is %q", st)
	}
}

// TestOpenAIRevokeTellsAWrongProjectFromAGoneAccount: at the provider
// level, a 404 on the delete is "gone" only when the admin credential's
// project is its organization's.
func TestOpenAIRevokeTellsAWrongProjectFromAGoneAccount(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	project, _ := g.scopeWithOpenAI(t, g.workspc)
	p, _ := providers.DefaultRegistry().Lookup("openai")
	env := providers.AdminEnv{BaseURL: g.openai.URL}
	wrong := providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: g.adminKey, providers.FieldProjectID: "proj_notmine"})
	_, err := p.KeyAdmin.Revoke(ctx, env, wrong, "svc_acct_999")
	var ae *providers.AdminError
	if !errors.As(err, &ae) || !ae.Refused() || ae.Code != providers.CodeProjectNotFound {
		t.Fatalf("a project of no organization of the admin key: %v", err)
	}
	right := providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: g.adminKey, providers.FieldProjectID: project})
	if rv, err := p.KeyAdmin.Revoke(ctx, env, right, "svc_acct_999"); err != nil || !rv.AlreadyGone {
		t.Fatalf("an account gone from the right project: %+v %v", rv, err)
	}
}

// The review wrote rotation and revocation rows with the admin pods'
// database role (the runtime role) to make keybroker delete a victim's
// service account: an inserted revocation, an inserted rotation at
// delete_old, a signed revocation's signature copied onto a forged row,
// and a running rotation pointed at the victim. None is acted on; the
// triggers refuse changing the ids of a signed row; the victim's account
// lives.
func TestLifecycleRowsWrittenWithADatabaseRoleAreNotActedOn(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	project, _ := g.scopeWithOpenAI(t, ws)
	victim := g.openai.AddServiceAccount(project, "victim", newKey(t, "openai"))
	alive := func(when string) {
		t.Helper()
		for _, sa := range g.openai.ServiceAccounts(project) {
			if sa.ID == victim {
				return
			}
		}
		t.Fatalf("%s: the victim's service account %s was deleted", when, victim)
	}
	runtime, err := pgx.Connect(ctx, testenv.RuntimeURL(t, g.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close(ctx)
	exec := func(sql string, args ...any) error {
		_, err := runtime.Exec(ctx, sql, args...)
		return err
	}

	// 1. An inserted revocation naming the victim.
	if err := exec(`INSERT INTO provider_revocations (id, scope, scope_id, provider, key_id, provider_key_id, admin_key_id, state,
		next_attempt_at, requested_by, located) VALUES (gen_random_uuid(), 'workspace', $1, 'openai', 'primary', $2, 'admin', 'pending',
		now() - interval '1 day', 'attacker', true)`, ws, victim); err != nil {
		t.Fatalf("the runtime role could not insert (the attack needs it): %v", err)
	}
	g.clock.Add(48 * time.Hour)
	if _, err := g.b.RetryRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	alive("an inserted revocation")

	// 2. A genuine revocation's signature copied onto a forged row.
	key := newKey(t, "openai")
	account := g.openai.AddServiceAccount(project, "genuine", key)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: "genuine", Credential: providers.APIKey(key),
		ProviderKeyID: account}); err != nil {
		t.Fatal(err)
	}
	g.openai.FailAdmin("DELETE", "/v1/organization/projects/", 503)
	rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("openai", "genuine")})
	if err != nil || rv.State != broker.RevocationPending {
		t.Fatalf("a genuine revocation: %+v %v", rv, err)
	}
	g.openai.FailAdmin("", "", 0)
	if err := exec(`INSERT INTO provider_revocations (id, scope, scope_id, provider, key_id, provider_key_id, admin_key_id, state,
		next_attempt_at, requested_by, located, sig_key_id, signature)
		SELECT gen_random_uuid(), scope, scope_id, provider, key_id, $2, admin_key_id, 'pending', next_attempt_at, requested_by, located,
			sig_key_id, signature FROM provider_revocations WHERE id = $1::uuid`, rv.ID, victim); err != nil {
		t.Fatal(err)
	}
	// Changing the genuine row's ids: refused by the trigger.
	if err := exec(`UPDATE provider_revocations SET provider_key_id = $2 WHERE id = $1::uuid`, rv.ID, victim); err == nil {
		t.Fatal("the runtime role changed the provider_key_id of a revocation")
	}
	g.clock.Add(48 * time.Hour)
	if n, err := g.b.RetryRevocations(ctx); err != nil || n != 1 {
		t.Fatalf("the genuine revocation: %d %v", n, err)
	}
	alive("a forged revocation with a copied signature")

	// 3. A running rotation pointed at the victim: the ids are frozen, and
	// a rotation row inserted at delete_old is not acted on.
	r, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: scope.Key("openai", "primary")})
	if err != nil || r.Step != broker.StepGrace {
		t.Fatalf("rotate: %+v %v", r, err)
	}
	for _, col := range []string{"old_provider_key_id", "account_name"} {
		if err := exec(`UPDATE key_rotations SET `+col+` = $2 WHERE id = $1::uuid`, r.ID, victim); err == nil {
			t.Fatalf("the runtime role changed %s of a running rotation", col)
		}
	}
	// new_provider_key_id may change (the create step records it): the
	// signature covers it.
	if err := exec(`UPDATE key_rotations SET new_provider_key_id = $2, step = 'rollback' WHERE id = $1::uuid`, r.ID, victim); err != nil {
		t.Fatal(err)
	}
	if err := exec(`INSERT INTO key_rotations (id, scope, scope_id, provider, key_id, new_key_id, admin_key_id, trigger, step, state,
		account_name, old_provider_key_id, grace_seconds, delete_after, started_by, started_at, updated_at)
		VALUES (gen_random_uuid(), 'workspace', $1, 'openai', 'nosuch', 'nosuch-r000000', 'admin', 'manual', 'delete_old', 'running',
		'victim', $2, 0, now() - interval '1 day', 'attacker', now() - interval '1 day', now() - interval '1 day')`, ws, victim); err != nil {
		t.Fatal(err)
	}
	g.clock.Add(48 * time.Hour)
	_, _ = g.restart(t).ResumeRotations(ctx)
	alive("rotation rows written with the runtime role")
	// Each refused row is in the scope's audit trail.
	evs, err := g.store.ListAudit(ctx, scope, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, ev := range evs {
		if ev.Outcome == broker.OutcomeError && strings.Contains(ev.Detail, "no valid signature") {
			refused++
		}
	}
	if refused < 3 {
		t.Fatalf("%d refusals of unsigned rows audited, want one per forged row (3 at least)", refused)
	}
	if _, err := g.b.GetKey(ctx, scope.Key("openai", r.NewKeyID)); err != nil {
		t.Fatalf("the forged rollback removed the rotation's new key: %v", err)
	}
}

// The review made one tenant slow the single lifecycle runner for every
// other: a rotation whose admin credential the provider refuses was tried
// every pass forever, a rolled-back scheduled rotation started again every
// pass, and a scope's many due keys were all rotated in one pass. Now a
// failing step backs off (doubling) and the rotation ends failed after
// the last attempt; the schedule does not rotate a key again after its
// scheduled rotation rolled back until an admin acts; a pass does at most
// 3 rotations per scope.
func TestOneTenantCannotHoldTheLifecycleRunner(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	g.scopeWithOpenAI(t, ws)

	// 1. The admin credential refused at create: backoff, then failed.
	g.openai.FailAdmin("POST", "/v1/organization/projects/", 401)
	if _, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: scope.Key("openai", "primary")}); err == nil {
		t.Fatal("a rotation with a refused admin credential went through")
	}
	last := func() broker.Rotation {
		t.Helper()
		rots, err := g.b.Rotations(ctx, scope.Key("openai", "primary"))
		if err != nil || len(rots) == 0 {
			t.Fatalf("rotations %v %v", rots, err)
		}
		return rots[0]
	}
	if r := last(); r.Attempts != 1 || r.State != broker.RotationRunning {
		t.Fatalf("after the first failure: %+v", r)
	}
	g.clock.Add(broker.DefaultRotationClaim + time.Second)
	_, _ = g.b.ResumeRotations(ctx)
	if r := last(); r.Attempts != 2 {
		t.Fatalf("the claim over, the step was not tried again: %+v", r)
	}
	g.clock.Add(broker.DefaultRotationClaim + time.Second) // less than the doubled wait
	_, _ = g.b.ResumeRotations(ctx)
	if r := last(); r.Attempts != 2 {
		t.Fatalf("tried again before its backoff was over: attempt %d", r.Attempts)
	}
	for range 20 {
		g.clock.Add(time.Hour)
		_, _ = g.b.ResumeRotations(ctx)
	}
	if r := last(); r.State != broker.RotationFailed || r.Attempts != 8 || !strings.Contains(r.Error, "failed 8 times") {
		t.Fatalf("after many failures: %+v", r)
	}
	g.openai.FailAdmin("", "", 0)

	// 2. A scheduled rotation the provider's check rolls back is not
	// started again by the schedule.
	if _, err := g.b.SetLifecycleSettings(ctx, alice, scope, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	g.clock.Add(91 * 24 * time.Hour) // the keys' creation is on PostgreSQL's clock, before the test's
	g.openai.FailAdmin("GET", "/v1/models", 401)
	if n, err := g.b.RotateDue(ctx); n != 0 {
		t.Fatalf("a rotation the provider refused counted as started: %d (%v)", n, err)
	}
	if r := last(); r.Trigger != broker.TriggerSchedule || r.State != broker.RotationRolledBack {
		t.Fatalf("the scheduled rotation: %+v", r)
	}
	g.openai.FailAdmin("", "", 0)
	g.clock.Add(time.Hour)
	if _, err := g.b.RotateDue(ctx); err != nil {
		t.Fatal(err)
	}
	if r := last(); r.State != broker.RotationRolledBack {
		t.Fatalf("the schedule rotated the key again after a rollback: %+v", r)
	}

	// 3. At most 3 scheduled rotations per scope and pass.
	for i := range 4 {
		if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: "many-" + strconv.Itoa(i),
			Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
			t.Fatal(err)
		}
	}
	g.clock.Add(time.Hour)
	if n, err := g.b.RotateDue(ctx); err != nil || n != 3 {
		t.Fatalf("one pass started %d rotations in one scope (%v)", n, err)
	}
}

// The review read every admin credential with the execution pods' Vault
// identity (the reader): the admin providers' keys were under the paths
// its policy grants. Against the real Vault and the shipped policies: the
// reader is denied every admin provider's keys in every scope (and still
// reads a provider key); the writer reads the admin credentials and no
// other key; and a replica without the reader identity (mode admin)
// rotates and revokes at the provider.
func TestReaderIdentityCannotReadAdminCredentials(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	project, _ := g.scopeWithOpenAI(t, ws)
	writer, ok := g.cfg.Writer.(broker.KeyReader)
	if !ok {
		t.Fatal("the writer identity's KV reads nothing")
	}
	for _, ap := range providers.DefaultRegistry().Admins() {
		for _, scope := range []broker.Scope{broker.WorkspaceScope(ws), broker.OrganizationScope("org-" + testenv.RandomID(t)), broker.HostedScope()} {
			path := scope.Key(ap.ID, "admin-"+testenv.RandomID(t)).VaultPath()
			if _, err := g.rootKV.Put(ctx, path, map[string]string{"admin_key": "placeholder-not-a-key", "project_id": "proj_x"}, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := g.cfg.Reader.Get(ctx, path); err == nil {
				t.Fatalf("the reader identity read %s", path)
			}
			if _, err := writer.Get(ctx, path); err != nil {
				t.Fatalf("the writer identity cannot read %s: %v", path, err)
			}
		}
	}
	keyPath := broker.WorkspaceScope(ws).Key("openai", "primary").VaultPath()
	if _, err := g.cfg.Reader.Get(ctx, keyPath); err != nil {
		t.Fatalf("the reader no longer reads a provider key: %v", err)
	}
	if _, err := writer.Get(ctx, keyPath); err == nil {
		t.Fatal("the writer identity read a provider key")
	}

	// A replica of mode admin (no reader identity) rotates and revokes.
	admin := g.another(t, func(c *broker.Config) { c.Reader, c.RotationHook = nil, nil })
	r, err := admin.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: broker.WorkspaceScope(ws).Key("openai", "primary")})
	if err != nil || r.Step != broker.StepGrace {
		t.Fatalf("a rotation on a replica of mode admin: %+v %v", r, err)
	}
	rv, err := admin.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: broker.WorkspaceScope(ws).Key("openai", r.NewKeyID)})
	if err != nil || rv.State != broker.RevocationDone || rv.AlreadyGone {
		t.Fatalf("a revocation on a replica of mode admin: %+v %v", rv, err)
	}
	for _, sa := range g.openai.ServiceAccounts(project) {
		if sa.ID == r.NewProviderKeyID {
			t.Fatalf("the revoked account %s is still at the provider", sa.ID)
		}
	}
}

// The review's orphaned key: a rotation stalled before its store step
// shows its new key's id; a scope admin adds a key of that id, and the
// store step took "the key exists" for its own: the admin's key served in
// the rotated key's place and the account the rotation made was left at
// the provider with no key of keybroker's. Now the store step rolls back:
// the account is deleted, the other key is left as it is, the old key
// serves. And a replica recording over a rotation another replica
// advanced meanwhile is refused (ErrConflict).
func TestRotationStoreStepRefusesAKeyThatIsNotItsOwn(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	scope := broker.WorkspaceScope(ws)
	project, oldAccount := g.scopeWithOpenAI(t, ws)
	g.openai.FailAdmin("POST", "/v1/organization/projects/", 503)
	if _, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: scope.Key("openai", "primary")}); err == nil {
		t.Fatal("the rotation went through with the provider failing")
	}
	rots, err := g.b.Rotations(ctx, scope.Key("openai", "primary"))
	if err != nil || len(rots) != 1 {
		t.Fatalf("rotations %+v %v", rots, err)
	}
	r := rots[0]
	// Another replica's stale view of the rotation is refused.
	ev := broker.AuditEvent{ScopeKind: broker.ScopeWorkspace, ScopeID: ws, Provider: "openai", KeyID: "primary", Action: broker.ActionRotation,
		Actor: "stale", Outcome: broker.OutcomeSuccess, Detail: "stale"}
	if err := g.store.RecordRotation(ctx, r, broker.RotationFrom{Step: broker.StepVerify, ClaimedUntil: r.ClaimedUntil}, ev); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("a record over another step: %v", err)
	}
	if err := g.store.RecordRotation(ctx, r, broker.RotationFrom{Step: r.Step, ClaimedUntil: r.ClaimedUntil.Add(-time.Minute)}, ev); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("a record over another claim: %v", err)
	}

	squatter := newKey(t, "openai")
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: r.NewKeyID, Credential: providers.APIKey(squatter),
		Priority: ptr(1)}); err != nil {
		t.Fatal(err)
	}
	g.openai.FailAdmin("", "", 0)
	g.clock.Add(time.Hour)
	_, _ = g.restart(t).ResumeRotations(ctx)
	rots, err = g.b.Rotations(ctx, scope.Key("openai", "primary"))
	if err != nil || rots[0].State != broker.RotationRolledBack {
		t.Fatalf("the rotation over another key of its new key's id: %+v %v", rots, err)
	}
	if accounts := g.openai.ServiceAccounts(project); len(accounts) != 1 || accounts[0].ID != oldAccount {
		t.Fatalf("the project holds %+v: an orphaned account, or the old one deleted", accounts)
	}
	if m, err := g.b.GetKey(ctx, scope.Key("openai", "primary")); err != nil || m.State != broker.KeyActive {
		t.Fatalf("the old key: %+v %v", m, err)
	}
	if m, err := g.b.GetKey(ctx, scope.Key("openai", r.NewKeyID)); err != nil || m.ProviderKeyID != "" {
		t.Fatalf("the other key of that id was changed or removed: %+v %v", m, err)
	}
}

// The review's providerKeyId named no particular key: "." and ".." are
// path segments in the admin API's URL (they would name the project),
// and an id of another kind or another key was taken as is. Now they are
// refused at once, changing nothing; and where the provider shows a
// redacted form of the key (Anthropic's partial_key_hint), a revocation
// of a key whose form differs from the stored key's mask is refused.
func TestProviderKeyIDMustNameTheStoredKey(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	scope := broker.WorkspaceScope(g.workspc)
	for _, c := range []struct{ provider, id string }{{"openai", "."}, {"openai", ".."}, {"openai", "a/b"}, {"openai", "key_abc"},
		{"openai", "apikey_01abc"}, {"anthropic", "svc_acct_1"}, {"anthropic", ".."}} {
		if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool(c.provider), KeyID: "k", Credential: providers.APIKey(newKey(t, c.provider)),
			ProviderKeyID: c.id}); !errors.Is(err, broker.ErrInvalidRequest) {
			t.Fatalf("a %s key with providerKeyId %q: %v", c.provider, c.id, err)
		}
		if _, err := g.b.GetKey(ctx, scope.Key(c.provider, "k")); !errors.Is(err, broker.ErrNotFound) {
			t.Fatalf("a refused key was stored: %v", err)
		}
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("openai"), KeyID: "k", Credential: providers.APIKey(newKey(t, "openai"))}); err != nil {
		t.Fatal(err)
	}
	bad := ".."
	if _, err := g.b.UpdateKey(ctx, broker.UpdateKeyRequest{Actor: alice, Ref: scope.Key("openai", "k"), ProviderKeyID: &bad}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("an update to providerKeyId %q: %v", bad, err)
	}

	// Anthropic: the id names another key of the organization.
	adminKey := "sk-ant-admin01-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, adminKey)
	usedKeysMu.Unlock()
	g.anthropic.AddAdminKey(adminKey)
	other := newKey(t, "anthropic")
	g.anthropic.AddKey("apikey_01other", "someone else's", other)
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic"), KeyID: "claude", Credential: providers.APIKey(newKey(t, "anthropic")),
		ProviderKeyID: "apikey_01other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: scope.Pool("anthropic-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindAnthropicAdmin, map[string]string{providers.FieldAdminKey: adminKey})}); err != nil {
		t.Fatal(err)
	}
	if rv, err := g.b.RevokeKey(ctx, broker.DeleteKeyRequest{Actor: alice, Ref: scope.Key("anthropic", "claude")}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("revoking another key than the stored one: %+v %v", rv, err)
	}
	if st := g.anthropic.Status("apikey_01other"); st != "active" {
		t.Fatalf("the other key is %q", st)
	}
}
