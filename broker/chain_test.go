package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// TestEffectiveSaysWhatResolveDoes walks a workspace's chain (its own
// key, its organization's, a hosted key) through cooldowns, a failing key
// and the settings, and checks at each step that Effective names the
// scope and the reason Resolve answers with: the scope that serves and the
// fallback reason, or no scope and the reason of the NoKeyError or of the
// CoolingDownError (with the same end).
func TestEffectiveSaysWhatResolveDoes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	ws, org := e.workspc, "org-"+testenv.RandomID(t)
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, Organization: &org, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	addKey(t, e, broker.WorkspaceScope(ws).Pool("openai"), "main", 10, "")
	addKey(t, e, broker.OrganizationScope(org).Pool("openai"), "shared", 10, "")
	e.setHosted(t, "openai", newKey(t, "openai"))

	// agree checks that resolve and Effective say scope and reason.
	agree := func(when string, scope broker.ScopeKind, reason string) {
		t.Helper()
		var got struct {
			scope  broker.ScopeKind
			reason string
			until  time.Time
		}
		r, err := e.b.Resolve(ctx, broker.ResolveRequest{Workspace: ws, Provider: "openai", Caller: caller})
		var nk *broker.NoKeyError
		var cd *broker.CoolingDownError
		switch {
		case err == nil:
			got.scope, got.reason = r.ScopeKind, r.FallbackReason
		case errors.As(err, &nk):
			got.reason = nk.Reason
		case errors.As(err, &cd):
			got.reason, got.until = cd.Reason, time.Now().Add(cd.RetryAfter)
		default:
			t.Fatalf("%s: resolve: %v", when, err)
		}
		if got.scope != scope || got.reason != reason {
			t.Fatalf("%s: resolve gives scope %q reason %q (%v), want %q %q", when, got.scope, got.reason, err, scope, reason)
		}
		srcs, err := e.b.Effective(ctx, ws)
		if err != nil {
			t.Fatalf("%s: effective: %v", when, err)
		}
		for _, s := range srcs {
			if s.Provider != "openai" {
				continue
			}
			if s.ScopeKind != scope || s.Reason != reason || (s.ScopeKind == "") == (s.UsableKeys > 0) {
				t.Fatalf("%s: effective says %+v; resolve gives scope %q reason %q", when, s, scope, reason)
			}
			// Resolve's Retry-After is the same end, in whole seconds
			// rounded up.
			if d := got.until.Sub(s.CoolingDownUntil); got.until.IsZero() != s.CoolingDownUntil.IsZero() || d < 0 || d > 2*time.Second {
				t.Fatalf("%s: effective: cooling down until %v; resolve: retry at about %v", when, s.CoolingDownUntil, got.until)
			}
			return
		}
		t.Fatalf("%s: effective names no openai source: %+v", when, srcs)
	}
	report := func(r broker.Resolution, outcome string, retryAfter time.Duration) {
		t.Helper()
		if _, err := e.b.Report(ctx, broker.ReportRequest{Caller: caller, ResolutionID: r.ResolutionID, Outcome: outcome, RetryAfter: retryAfter}); err != nil {
			t.Fatalf("report %s: %v", outcome, err)
		}
	}

	agree("every key healthy", broker.ScopeWorkspace, "")
	own := resolveAs(t, e.b, ws)
	report(own, broker.OutcomeRateLimited, 300*time.Second)
	agree("the workspace's only key cooling down", broker.ScopeOrganization, broker.ReasonWorkspaceKeysUnavailable)
	shared := resolveAs(t, e.b, ws)
	report(shared, broker.OutcomeRateLimited, 200*time.Second) // for this workspace alone
	agree("the organization's key cooling down for the workspace", broker.ScopeHosted, broker.ReasonOrganizationKeysUnavailable)
	hosted := resolveAs(t, e.b, ws)
	report(hosted, broker.OutcomeRateLimited, 100*time.Second)
	agree("every key cooling down", "", broker.ReasonHostedKeysCoolingDown)
	report(hosted, broker.OutcomeOK, 0)
	agree("the hosted key back", broker.ScopeHosted, broker.ReasonOrganizationKeysUnavailable)
	report(own, broker.OutcomeUnauthorized, 0)
	agree("the workspace's only key failing", broker.ScopeHosted, broker.ReasonOrganizationKeysUnavailable)
	off := false
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, HostedFallback: &off}); err != nil {
		t.Fatal(err)
	}
	agree("the hosted fallback off", "", broker.ReasonOrganizationKeysCoolingDown)
	report(shared, broker.OutcomeOK, 0)
	agree("the organization's key back", broker.ScopeOrganization, broker.ReasonWorkspaceKeysUnavailable)
	none := ""
	if _, err := e.b.PutSettings(ctx, broker.SettingsRequest{Actor: alice, Workspace: ws, Organization: &none, MayLink: true}); err != nil {
		t.Fatal(err)
	}
	agree("unlinked, the fallback off", "", broker.ReasonHostedFallbackOff)
}
