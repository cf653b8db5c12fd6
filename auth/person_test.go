package auth_test

import (
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
)

func TestAPersonsRolesAreJudgedScopeByScope(t *testing.T) {
	alice := auth.Person{Issuer: "https://idp.example.com", Subject: "00u1", Name: "Alice Smith", Email: "alice@example.com"}
	p := auth.PersonPrincipal("ses_0123456789abcdef", alice, auth.ScopedRoles{
		Workspaces:    map[string]auth.Role{"ws1": auth.RoleAdmin, "ws2": auth.RoleReader},
		Organizations: map[string]auth.Role{"acme": auth.RoleReader},
	})
	if p.Role != auth.RoleAdmin || strings.Join(p.Workspaces, ",") != "ws1,ws2" || strings.Join(p.Organizations, ",") != "acme" {
		t.Fatalf("principal %+v", p)
	}
	ws1, ws2, ws3, acme := broker.WorkspaceScope("ws1"), broker.WorkspaceScope("ws2"), broker.WorkspaceScope("ws3"), broker.OrganizationScope("acme")
	for _, tc := range []struct {
		action auth.Action
		scope  broker.Scope
		want   bool
	}{
		{auth.ActionReadKeys, ws1, true},
		{auth.ActionManageKeys, ws1, true},
		{auth.ActionReadKeys, ws2, true},
		{auth.ActionManageKeys, ws2, false}, // a reader there, though an admin elsewhere
		{auth.ActionReadKeys, ws3, false},
		{auth.ActionManageKeys, ws3, false},
		{auth.ActionReadKeys, acme, true},
		{auth.ActionManageKeys, acme, false},
		{auth.ActionResolve, ws1, false}, // a person never obtains a key
		{auth.ActionManageKeys, broker.HostedScope(), false},
		{auth.ActionManageTokens, broker.Scope{}, false},
		{auth.ActionGlobalAudit, broker.Scope{}, false},
		{auth.ActionListProviders, broker.Scope{}, true},
	} {
		if got := p.Allowed(tc.action, tc.scope); got != tc.want {
			t.Errorf("action %d on %v: %v, want %v", tc.action, tc.scope, got, tc.want)
		}
	}
	op := auth.PersonPrincipal("ses_1", alice, auth.ScopedRoles{Operator: true})
	if op.Role != auth.RoleOperator || !op.Allowed(auth.ActionManageKeys, broker.HostedScope()) || op.Allowed(auth.ActionResolve, ws1) {
		t.Fatalf("an operator person: %+v", op)
	}
	reader := auth.PersonPrincipal("ses_2", alice, auth.ScopedRoles{Workspaces: map[string]auth.Role{"ws1": auth.RoleReader}})
	if reader.Role != auth.RoleReader || reader.Allowed(auth.ActionManageKeys, ws1) || !reader.Allowed(auth.ActionReadKeys, ws1) {
		t.Fatalf("a reader person: %+v", reader)
	}
	if !(auth.ScopedRoles{}).Empty() || (auth.ScopedRoles{Operator: true}).Empty() {
		t.Fatal("Empty")
	}
}

func TestTheTrailNamesThePersonAndNoClaimForgesIt(t *testing.T) {
	for _, tc := range []struct {
		person auth.Person
		want   string
	}{
		{auth.Person{Issuer: "https://idp.example.com", Subject: "00u1", Name: "Alice Smith", Email: "alice@example.com"},
			"person:https://idp.example.com|00u1 (Alice Smith <alice@example.com>)"},
		{auth.Person{Issuer: "https://idp.example.com", Subject: "00u1"}, "person:https://idp.example.com|00u1"},
		{auth.Person{Issuer: "https://idp.example.com", Subject: "00u1", Email: "a@example.com"}, "person:https://idp.example.com|00u1 (<a@example.com>)"},
		{auth.Person{Issuer: "https://platform.example.com", Subject: "user-42", Name: "Bob", Platform: "acme-platform"},
			"platform:acme-platform/person:https://platform.example.com|user-42 (Bob)"},
		// Claims that try to end the line, close the parenthesis or name
		// another actor lose those characters.
		{auth.Person{Issuer: "https://idp.example.com", Subject: "x|y\nperson:evil", Name: "Eve) (Mallory <m@x>", Email: "e@x\r\n"},
			"person:https://idp.example.com|xyperson:evil (Eve Mallory m@x <e@x>)"},
		// Line and paragraph separators and bidirectional overrides are
		// dropped too.
		{auth.Person{Issuer: "https://idp.example.com", Subject: "s", Name: "Bob\u2028platform:x\u2029\u202enimda\u200b"},
			"person:https://idp.example.com|s (Bobplatform:xnimda)"},
	} {
		if got := tc.person.Actor(); got != tc.want {
			t.Errorf("Actor() = %q, want %q", got, tc.want)
		}
	}
	long := auth.Person{Issuer: "https://idp.example.com", Subject: strings.Repeat("s", 5000), Name: strings.Repeat("n", 5000)}
	if got := long.Actor(); len(got) > 500 {
		t.Errorf("a long claim makes an actor of %d bytes", len(got))
	}
	p := auth.PersonPrincipal("ses_1", auth.Person{Issuer: "https://idp.example.com", Subject: "00u1"}, auth.ScopedRoles{Operator: true})
	if p.Subject() != "person:https://idp.example.com|00u1" || (auth.Principal{TokenID: "tok_1"}).Subject() != "token:tok_1" {
		t.Fatalf("subjects %q", p.Subject())
	}
}
