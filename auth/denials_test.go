package auth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
)

// TestDenialsOfScopesATokenDoesNotReachStayOutOfThoseTrails: tokens
// knocking at other tenants' workspaces, organizations and the hosted
// keys write nothing in those trails; the operator-wide trail gets one
// row per token and route (then one counting the rest), naming the latest
// scope. A denial in a scope the token does reach stays in that scope's
// trail, where its tenant sees it.
func TestDenialsOfScopesATokenDoesNotReachStayOutOfThoseTrails(t *testing.T) {
	ctx := context.Background()
	st := newStoreOnly(t)
	s := auth.NewService(st, auth.Options{DenialInterval: time.Hour})
	const route = "PUT /v1/workspaces/:ws/keys/:provider"
	tokens := []auth.Principal{
		{TokenID: "tok_reader000000000a", Role: auth.RoleReader, Workspaces: []string{"ws1"}},
		{TokenID: "tok_admin0000000000b", Role: auth.RoleAdmin, Organizations: []string{"acme"}},
		{TokenID: "tok_resolver00000000c", Role: auth.RoleResolver, Workspaces: []string{"ws1"}},
		{TokenID: "tok_resolver00000000d", Role: auth.RoleResolver}, // every workspace, no tenant's trail
	}
	var others []broker.Scope
	for i := range 100 {
		others = append(others, broker.WorkspaceScope(fmt.Sprintf("victim-%d", i)))
	}
	others = append(others, broker.OrganizationScope("victim-org"), broker.HostedScope())
	for _, p := range tokens {
		for _, sc := range others {
			if err := s.RecordDenial(ctx, p, sc, "openai", route, "192.0.2.1", "r1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.FlushDenials(ctx); err != nil {
		t.Fatal(err)
	}
	for _, sc := range others {
		if evs, err := st.ListAudit(ctx, sc, 0, 10); err != nil || len(evs) != 0 {
			t.Fatalf("the trail of %s holds %d rows (%v): denials of tokens that do not reach it", sc, len(evs), err)
		}
	}
	global, err := st.ListAudit(ctx, broker.Scope{}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	// Per token: the first denial at once, then one row counting the
	// other 101, naming the last scope knocked at.
	if len(global) != 2*len(tokens) {
		t.Fatalf("the operator-wide trail holds %d rows, want %d: %+v", len(global), 2*len(tokens), global)
	}
	for _, p := range tokens {
		var first, rest int
		for _, ev := range global {
			if ev.Actor != p.Subject() {
				continue
			}
			if ev.Action != "access.denied" || ev.Outcome != "forbidden" || !strings.Contains(ev.Detail, "which the token does not reach") {
				t.Fatalf("row %+v", ev)
			}
			switch max(ev.Count, 1) {
			case 1:
				first++
				if !strings.Contains(ev.Detail, "workspace victim-0,") {
					t.Fatalf("the first row names %q, want workspace victim-0", ev.Detail)
				}
			case len(others) - 1:
				rest++
				if !strings.Contains(ev.Detail, "on the hosted keys") {
					t.Fatalf("the counting row names %q, want the latest scope (hosted)", ev.Detail)
				}
			}
		}
		if first != 1 || rest != 1 {
			t.Fatalf("%s: %d first rows and %d counting rows, want 1 and 1", p.TokenID, first, rest)
		}
	}

	// Scopes the token reaches keep their denials in their own trail.
	for _, c := range []struct {
		p  auth.Principal
		sc broker.Scope
	}{
		{tokens[0], broker.WorkspaceScope("ws1")},
		{tokens[1], broker.OrganizationScope("acme")},
		{tokens[2], broker.WorkspaceScope("ws1")},
		{auth.Principal{TokenID: "tok_operator0000000e", Role: auth.RoleOperator}, broker.WorkspaceScope("ws9")},
	} {
		if err := s.RecordDenial(ctx, c.p, c.sc, "openai", route, "192.0.2.1", "r2"); err != nil {
			t.Fatal(err)
		}
		evs, err := st.ListAudit(ctx, c.sc, 0, 10)
		if err != nil || len(evs) == 0 || evs[0].Actor != c.p.Subject() || strings.Contains(evs[0].Detail, "does not reach") {
			t.Fatalf("%s denied in %s, which it reaches: trail %+v %v", c.p.TokenID, c.sc, evs, err)
		}
	}
}
