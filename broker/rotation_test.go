package broker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/cloudstub"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/providers"
)

// lifecycleGround is a broker (replica A, with the rotation hook) on real
// Vault and PostgreSQL whose provider checks and admin calls go to the
// OpenAI and Anthropic stand-ins, on a clock the test moves.
type lifecycleGround struct {
	*env
	openai    *cloudstub.OpenAI
	anthropic *cloudstub.Anthropic
	clock     *movingClock
	crashAt   atomic.Pointer[string]
	adminKey  string
}

func newLifecycleGround(t testing.TB) *lifecycleGround {
	t.Helper()
	g := &lifecycleGround{openai: cloudstub.NewOpenAI(t), anthropic: cloudstub.NewAnthropic(t),
		clock: newMovingClock(time.Date(2027, 6, 1, 9, 0, 0, 0, time.UTC))}
	g.adminKey = "sk-admin-" + newKey(t, "")[:32]
	usedKeysMu.Lock()
	usedKeys = append(usedKeys, g.adminKey) // the leak checks look for it too
	usedKeysMu.Unlock()
	checker, err := providers.NewChecker(providers.CheckerConfig{BaseURLs: providers.BaseURLs{
		"openai": g.openai.URL, "openai-admin": g.openai.URL, "anthropic": g.anthropic.URL, "anthropic-admin": g.anthropic.URL}})
	if err != nil {
		t.Fatal(err)
	}
	g.env = newEnv(t, func(c *broker.Config) {
		c.Checker, c.Now = checker, g.clock.Now
		c.LifecycleRows = auth.NewLifecycleSigner(kbtest.RowKeys().Admin)
		c.RotationHook = func(point string) bool {
			if p := g.crashAt.Load(); p != nil && *p == point {
				g.crashAt.Store(nil) // a crash happens once
				return true
			}
			return false
		}
	})
	// Every key the stand-ins made is checked for leaks (logs, the
	// database) with the test's own.
	t.Cleanup(func() {
		usedKeysMu.Lock()
		usedKeys = append(usedKeys, g.openai.Keys()...)
		usedKeysMu.Unlock()
	})
	return g
}

// restart is another replica without the hook: what runs after the crash.
func (g *lifecycleGround) restart(t testing.TB) *broker.Broker {
	return g.another(t, func(c *broker.Config) { c.RotationHook = nil })
}

// scopeWithOpenAI makes workspace ws hold the admin credential of a new
// project and a key "primary" (priority 5) that is a service account of
// that project; it returns the project and the old account's id.
func (g *lifecycleGround) scopeWithOpenAI(t testing.TB, ws string) (project, oldAccount string) {
	t.Helper()
	ctx := context.Background()
	project = "proj_" + strings.ReplaceAll(ws, "-", "_")
	g.openai.AddAdminKey(g.adminKey, "org-test", project)
	key := newKey(t, "openai")
	oldAccount = g.openai.AddServiceAccount(project, "original", key)
	pool := broker.WorkspaceScope(ws).Pool("openai")
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: pool, KeyID: "primary", Name: "Primary", Credential: providers.APIKey(key),
		Priority: ptr(5), ProviderKeyID: oldAccount}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.WorkspaceScope(ws).Pool("openai-admin"), KeyID: "admin",
		Credential: providers.New(providers.KindOpenAIAdmin, map[string]string{providers.FieldAdminKey: g.adminKey, providers.FieldProjectID: project})}); err != nil {
		t.Fatal(err)
	}
	return project, oldAccount
}

// assertRotated checks the end of a rotation of ws's "primary": done;
// the project holds exactly the new key's service account (no orphan, the
// old one deleted); the new key serves, at the old key's priority, and
// the provider takes it; the old key is gone from the pool.
func (g *lifecycleGround) assertRotated(t *testing.T, b *broker.Broker, ws, project, oldAccount string) {
	t.Helper()
	ctx := context.Background()
	old := broker.WorkspaceScope(ws).Key("openai", "primary")
	rots, err := b.Rotations(ctx, old)
	if err != nil || len(rots) != 1 || rots[0].State != broker.RotationDone {
		t.Fatalf("rotations %+v (%v)", rots, err)
	}
	r := rots[0]
	accounts := g.openai.ServiceAccounts(project)
	if len(accounts) != 1 || accounts[0].ID != r.NewProviderKeyID || accounts[0].ID == oldAccount {
		t.Fatalf("the project holds %+v; keybroker knows %s (the old one was %s)", accounts, r.NewProviderKeyID, oldAccount)
	}
	meta, err := b.GetKey(ctx, old.Owner().Key("openai", r.NewKeyID))
	if err != nil || meta.Priority != 5 || meta.Name != "Primary" || meta.State != broker.KeyActive || meta.ProviderKeyID != r.NewProviderKeyID {
		t.Fatalf("the new key %+v (%v)", meta, err)
	}
	if _, err := b.GetKey(ctx, old); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("the old key is still in the pool: %v", err)
	}
	res, err := b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"})
	if err != nil || res.KeyID != r.NewKeyID || !g.openai.Accepts(res.APIKey()) {
		t.Fatalf("resolve after the rotation: %v %v", res, err)
	}
}

// TestRotationAtTheProvider rotates an OpenAI key with the admin
// credential: a new service account is created, verified, put in the
// pool at the old key's priority; the old key is disabled, and deleted
// at the provider and from the pool once the grace period is over.
func TestRotationAtTheProvider(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	project, oldAccount := g.scopeWithOpenAI(t, ws)
	old := broker.WorkspaceScope(ws).Key("openai", "primary")
	r, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: old})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != broker.RotationRunning || r.Step != broker.StepGrace || !r.DeleteAfter.Equal(g.clock.Now().Add(time.Hour)) {
		t.Fatalf("after Rotate: %+v", r)
	}
	// In the grace period the new key serves and the old one is disabled,
	// but still alive at the provider (calls in flight finish).
	if res, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || res.KeyID != r.NewKeyID {
		t.Fatalf("in the grace period: %v %v", res, err)
	}
	if m, _ := g.b.GetKey(ctx, old); m.State != broker.KeyDisabled || len(g.openai.ServiceAccounts(project)) != 2 {
		t.Fatalf("in the grace period the old key is %q; the project has %d accounts", m.State, len(g.openai.ServiceAccounts(project)))
	}
	// A second rotation of the same key while one runs is refused.
	if _, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: old}); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("a second rotation while one runs: %v", err)
	}
	if n, err := g.b.ResumeRotations(ctx); err != nil || n != 0 {
		t.Fatalf("before the grace period ends, %d finished (%v)", n, err)
	}
	g.clock.Add(time.Hour + time.Second)
	if n, err := g.restart(t).ResumeRotations(ctx); err != nil || n != 1 {
		t.Fatalf("after the grace period, %d finished (%v)", n, err)
	}
	g.assertRotated(t, g.b, ws, project, oldAccount)
	// Each step is in the key's audit trail, recorded before it was taken.
	trail, err := g.b.QueryAudit(ctx, broker.AuditQuery{Scope: ptr(broker.WorkspaceScope(ws)), Limit: 50, Action: broker.ActionRotation})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, ev := range slices.Backward(trail) {
		steps = append(steps, ev.Detail)
	}
	for _, want := range []string{"started", "step verify", "step store", "step disable_old", "step grace", "step delete_old", "step done"} {
		if !slices.ContainsFunc(steps, func(d string) bool { return strings.Contains(d, want) }) {
			t.Fatalf("the trail lacks %q: %q", want, steps)
		}
	}
}

// TestRotationResumesAfterACrashAtEveryStep stops a rotation between
// every pair of steps — once a step is recorded and before it is taken,
// once it is taken and before the next is recorded — as a crash would (an
// in-process hook: the rotation returns at once, doing nothing more),
// then starts another replica, which resumes it: every rotation ends
// done, with exactly one service account at the provider, the one
// keybroker serves.
func TestRotationResumesAfterACrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	points := []string{"before:create", "after:create", "before:verify", "after:verify", "before:store", "after:store",
		"before:disable_old", "after:disable_old", "before:grace", "before:delete_old", "after:delete_old:provider", "after:delete_old", "before:done"}
	for i, point := range points {
		t.Run(point, func(t *testing.T) {
			ws := g.workspc + "-" + string(rune('a'+i))
			project, oldAccount := g.scopeWithOpenAI(t, ws)
			old := broker.WorkspaceScope(ws).Key("openai", "primary")
			g.crashAt.Store(&point)
			_, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: old})
			if err == nil {
				// The crash point is past the grace period: the lifecycle
				// runner of replica A meets it.
				g.clock.Add(time.Hour + time.Second)
				_, err = g.b.ResumeRotations(ctx)
			}
			if !broker.IsSimulatedCrash(err) {
				t.Fatalf("no crash at %s: %v", point, err)
			}
			// Replica A is dead; B starts, once A's claim has lapsed.
			b := g.restart(t)
			g.clock.Add(3 * time.Minute)
			if _, err := b.ResumeRotations(ctx); err != nil {
				t.Fatalf("resume: %v", err)
			}
			g.clock.Add(time.Hour + time.Second)
			if _, err := b.ResumeRotations(ctx); err != nil {
				t.Fatalf("resume after the grace period: %v", err)
			}
			g.assertRotated(t, b, ws, project, oldAccount)
		})
	}
}

// TestRotationRollsBackWhenTheProviderRefusesTheNewKey: a new key the
// provider does not accept is deleted there and never served; the old
// key serves as before.
func TestRotationRollsBackWhenTheProviderRefusesTheNewKey(t *testing.T) {
	ctx := context.Background()
	g := newLifecycleGround(t)
	ws := g.workspc
	project, oldAccount := g.scopeWithOpenAI(t, ws)
	old := broker.WorkspaceScope(ws).Key("openai", "primary")
	g.openai.FailAdmin("GET", "/v1/models", 401)
	_, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: old})
	if !errors.Is(err, broker.ErrVerificationFailed) {
		t.Fatalf("a new key the provider refuses: %v", err)
	}
	g.openai.FailAdmin("", "", 0)
	rots, _ := g.b.Rotations(ctx, old)
	if len(rots) != 1 || rots[0].State != broker.RotationRolledBack {
		t.Fatalf("rotations %+v", rots)
	}
	if accounts := g.openai.ServiceAccounts(project); len(accounts) != 1 || accounts[0].ID != oldAccount {
		t.Fatalf("after the rollback the project holds %+v", accounts)
	}
	if res, err := g.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai"}); err != nil || res.KeyID != "primary" {
		t.Fatalf("after the rollback: %v %v", res, err)
	}
	// Keys no admin API can create are refused at once.
	if _, err := g.b.AddKey(ctx, broker.AddKeyRequest{Actor: alice, Pool: broker.WorkspaceScope(ws).Pool("mistral"), KeyID: "m",
		Credential: providers.APIKey(newKey(t, "mistral"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: broker.WorkspaceScope(ws).Key("mistral", "m")}); !errors.Is(err, broker.ErrInvalidRequest) {
		t.Fatalf("rotating a Mistral key: %v", err)
	}
}

// BenchmarkRotation measures a rotation up to its grace period (create,
// verify, store, disable: ns/op) and its end after the grace period
// (delete at the provider and from the pool: delete-ns/op) against the
// OpenAI stand-in, on real Vault and PostgreSQL; each iteration rotates the
// key the last one made.
func BenchmarkRotation(b *testing.B) {
	ctx := context.Background()
	g := newLifecycleGround(b)
	ws := g.workspc
	g.scopeWithOpenAI(b, ws)
	ref := broker.WorkspaceScope(ws).Key("openai", "primary")
	var deleting time.Duration
	for b.Loop() {
		r, err := g.b.Rotate(ctx, broker.RotateRequest{Actor: alice, Ref: ref, Grace: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		g.clock.Add(2 * time.Second)
		start := time.Now()
		if n, err := g.b.ResumeRotations(ctx); err != nil || n != 1 {
			b.Fatalf("%d rotations finished (%v)", n, err)
		}
		deleting += time.Since(start)
		ref = ref.Owner().Key("openai", r.NewKeyID)
		b.StartTimer()
	}
	b.ReportMetric(float64(deleting.Nanoseconds())/float64(b.N), "delete-ns/op")
}
