package rolemap_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth/rolemap"
)

func mustParse(t testing.TB, yaml string) *rolemap.Map {
	t.Helper()
	m, err := rolemap.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// claimsOf decodes claims as a verifier hands them over (encoding/json).
func claimsOf(t testing.TB, js string) map[string]any {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func src(rule int, matched string) rolemap.Source {
	return rolemap.Source{Rule: rule, Matched: matched}
}

func admin(rule int, matched string) rolemap.Grant {
	return rolemap.Grant{Role: rolemap.RoleAdmin, From: src(rule, matched)}
}

func reader(rule int, matched string) rolemap.Grant {
	return rolemap.Grant{Role: rolemap.RoleReader, From: src(rule, matched)}
}

func TestGrants(t *testing.T) {
	m := mustParse(t, example+`
  - claim: email
    value: "{ws}-owner@example.com"
    reader: {workspace: "{ws}"}
  - claim: email
    value: bob@example.com
    unverifiedEmail: true
    reader: {organization: acme}
  - group: kb-ws-ws1-admin
    reader: {organization: o1}
`)
	op := src(0, "group kb-operators")
	for _, tc := range []struct {
		name   string
		claims string
		want   rolemap.Grants
	}{
		{"an exact group", `{"groups": ["kb-operators"]}`, rolemap.Grants{Operator: &op}},
		{"a pattern group", `{"groups": ["kb-ws-ws1-admin"]}`, rolemap.Grants{
			Workspaces:    map[string]rolemap.Grant{"ws1": admin(1, "group kb-ws-ws1-admin")},
			Organizations: map[string]rolemap.Grant{"o1": reader(9, "group kb-ws-ws1-admin")},
		}},
		{"an organization pattern", `{"groups": ["kb-org-acme-reader"]}`, rolemap.Grants{
			Organizations: map[string]rolemap.Grant{"acme": reader(3, "group kb-org-acme-reader")},
		}},
		{"the capture takes what lies between the literal ends", `{"groups": ["kb-ws-team-admin-admin"]}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{"team-admin": admin(1, "group kb-ws-team-admin-admin")},
		}},
		{"several rules", `{"groups": ["kb-operators", "kb-ws-a-admin", "kb-ws-b-reader", "unrelated"], "hd": "example.com"}`, rolemap.Grants{
			Operator: &op,
			Workspaces: map[string]rolemap.Grant{
				"a":   admin(1, "group kb-ws-a-admin"),
				"b":   reader(2, "group kb-ws-b-reader"),
				"ws1": reader(5, "claim hd = example.com"),
			},
		}},
		{"admin over reader, whichever comes first", `{"groups": ["kb-ws-ws1-reader", "kb-ws-ws1-admin"], "hd": "example.com"}`, rolemap.Grants{
			Workspaces:    map[string]rolemap.Grant{"ws1": admin(1, "group kb-ws-ws1-admin")},
			Organizations: map[string]rolemap.Grant{"o1": reader(9, "group kb-ws-ws1-admin")},
		}},
		{"the same role twice: the earlier rule", `{"groups": ["kb-ws-ws1-reader"], "hd": "example.com"}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{"ws1": reader(2, "group kb-ws-ws1-reader")},
		}},
		{"a value twice", `{"groups": ["kb-operators", "kb-operators"]}`, rolemap.Grants{Operator: &op}},
		{"a verified email", `{"email": "alice@example.com", "email_verified": true}`, rolemap.Grants{
			Organizations: map[string]rolemap.Grant{"acme": admin(4, "claim email = alice@example.com")},
		}},
		{"email_verified as a string", `{"email": "alice@example.com", "email_verified": "true"}`, rolemap.Grants{
			Organizations: map[string]rolemap.Grant{"acme": admin(4, "claim email = alice@example.com")},
		}},
		{"an email not said verified grants nothing", `{"email": "alice@example.com"}`, rolemap.Grants{}},
		{"an email said unverified grants nothing", `{"email": "alice@example.com", "email_verified": false}`, rolemap.Grants{}},
		{"unless the rule accepts it", `{"email": "bob@example.com", "email_verified": false}`, rolemap.Grants{
			Organizations: map[string]rolemap.Grant{"acme": reader(8, "claim email = bob@example.com")},
		}},
		{"a pattern in a claim", `{"email": "ws9-owner@example.com", "email_verified": true}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{"ws9": reader(7, "claim email = ws9-owner@example.com")},
		}},
		{"the issuer of the rule", `{"iss": "https://idp.example.com", "roles": ["team-x"]}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{"t-x": admin(6, "claim roles = team-x")},
		}},
		{"another issuer", `{"iss": "https://other.example.com", "roles": ["team-x"]}`, rolemap.Grants{}},
		{"no issuer", `{"roles": ["team-x"]}`, rolemap.Grants{}},
		{"a string claim", `{"groups": "kb-operators"}`, rolemap.Grants{Operator: &op}},
		{"a missing claim", `{"sub": "u1"}`, rolemap.Grants{}},
		{"no claims", `{}`, rolemap.Grants{}},
		{"a null claim (Vault's groups without a group)", `{"groups": null}`, rolemap.Grants{}},
		{"other types are ignored", `{"groups": [3, {"name": "kb-operators"}, ["kb-operators"], true, null, "kb-ws-ws2-reader"], "hd": 42, "email": {"v": "alice@example.com"}}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{"ws2": reader(2, "group kb-ws-ws2-reader")},
		}},
		{"a group is case-sensitive", `{"groups": ["KB-Operators", "KB-WS-ws1-ADMIN", "kb-ws-ws1-Admin"]}`, rolemap.Grants{}},
		{"captures that are no id grant nothing", `{"groups": [
			"kb-ws-../x-admin", "kb-ws--admin", "kb-ws-WS1-admin", "kb-ws-_x-admin", "kb-ws-a b-admin", "kb-ws-admin",
			"kb-ws-` + strings.Repeat("a", 64) + `-admin", "kb-org-é-reader", "kb-ws-a/b-reader"]}`, rolemap.Grants{}},
		{"the longest id", `{"groups": ["kb-ws-` + strings.Repeat("a", 63) + `-admin"]}`, rolemap.Grants{
			Workspaces: map[string]rolemap.Grant{strings.Repeat("a", 63): admin(1, "group kb-ws-"+strings.Repeat("a", 63)+"-admin")},
		}},
		{"a template that makes no id", `{"iss": "https://idp.example.com", "roles": ["team-` + strings.Repeat("a", 62) + `"]}`, rolemap.Grants{}},
		{"Entra ID's groups overage", `{"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/..."}}}`,
			rolemap.Grants{GroupsOverage: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Grants(claimsOf(t, tc.claims))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Grants:\n%s\nwant:\n%s", show(got), show(tc.want))
			}
			if got.Empty() != (tc.want.Operator == nil && tc.want.Workspaces == nil && tc.want.Organizations == nil) {
				t.Fatalf("Empty() = %t", got.Empty())
			}
		})
	}
}

func show(g rolemap.Grants) string {
	b, _ := json.MarshalIndent(g, "", "  ")
	return string(b)
}

func TestGrantsOfAnotherGroupsClaim(t *testing.T) {
	m := mustParse(t, "groupsClaim: roles\nrules:\n  - {group: kb.operator, operator: true}\n  - {claim: groups, value: kb-operators, reader: {workspace: ws1}}\n")
	g := m.Grants(map[string]any{"roles": []string{"kb.operator"}, "groups": []string{"kb-operators"}})
	if g.Operator == nil || *g.Operator != src(0, "group kb.operator") || !reflect.DeepEqual(g.Workspaces, map[string]rolemap.Grant{"ws1": reader(1, "claim groups = kb-operators")}) {
		t.Fatalf("Grants: %s", show(g))
	}
	if g := m.Grants(map[string]any{"groups": []string{"kb.operator"}}); !g.Empty() {
		t.Fatalf("a group of the other claim: %s", show(g))
	}
}

func TestGrantsReadsTheFirstValuesOfALongList(t *testing.T) {
	m := mustParse(t, "rules:\n  - {group: 'g-{ws}', reader: {workspace: '{ws}'}}\n  - {claim: roles, value: 'r-{ws}', admin: {workspace: '{ws}'}}\n")
	list := func(n int, prefix string) []any {
		var l []any
		for i := range n {
			l = append(l, fmt.Sprintf("%s-w%d", prefix, i))
		}
		return l
	}
	g := m.Grants(map[string]any{"groups": list(rolemap.MaxClaimValues, "g")})
	if g.Truncated || len(g.Workspaces) != rolemap.MaxClaimValues {
		t.Fatalf("at the bound: truncated %t, %d workspaces", g.Truncated, len(g.Workspaces))
	}
	g = m.Grants(map[string]any{"groups": list(rolemap.MaxClaimValues+1, "g")})
	if _, late := g.Workspaces[fmt.Sprintf("w%d", rolemap.MaxClaimValues)]; !g.Truncated || late || len(g.Workspaces) != rolemap.MaxClaimValues {
		t.Fatalf("beyond the bound: truncated %t, %d workspaces", g.Truncated, len(g.Workspaces))
	}
	// Any list claim, []string too.
	var roles []string
	for _, v := range list(rolemap.MaxClaimValues+5, "r") {
		roles = append(roles, v.(string))
	}
	g = m.Grants(map[string]any{"roles": roles})
	if !g.Truncated || len(g.Workspaces) != rolemap.MaxClaimValues {
		t.Fatalf("a long []string: truncated %t, %d workspaces", g.Truncated, len(g.Workspaces))
	}
}

// The grants depend on the claims' values, not on their order.
func TestGrantsIgnoresTheOrderOfValues(t *testing.T) {
	m := mustParse(t, example+`
  - {group: "all-{ws}", reader: {workspace: "{ws}"}}
  - {group: "ops-{ws}", admin: {workspace: "{ws}"}}
  - {group: "ops-{ws}", reader: {workspace: "{ws}"}}
  - {group: "kb-ws-{ws}-admin", reader: {workspace: "{ws}"}}
  - {group: "also-operators", operator: true}
`)
	groups := []any{"kb-operators", "also-operators", "kb-ws-a-admin", "kb-ws-a-reader", "all-a", "all-b", "ops-b", "kb-org-o-reader", "ops-c", "all-c", "x", 7}
	want := m.Grants(map[string]any{"groups": groups, "hd": "example.com"})
	if want.Operator == nil || *want.Operator != src(0, "group kb-operators") || len(want.Workspaces) != 4 || want.Workspaces["b"] != admin(8, "group ops-b") {
		t.Fatalf("Grants: %s", show(want))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		shuffled := slices.Clone(groups)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := m.Grants(map[string]any{"hd": "example.com", "groups": shuffled}); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v:\n%s\nwant\n%s", shuffled, show(got), show(want))
		}
	}
}

func TestSourceString(t *testing.T) {
	if s := src(2, "group kb-ws-ws1-admin").String(); s != "rules[2]: group kb-ws-ws1-admin" {
		t.Fatal(s)
	}
}

// benchmarkMap is a mapping of 50 rules of every kind: exact groups,
// patterns, claims.
func benchmarkMap(b *testing.B) *rolemap.Map {
	var y strings.Builder
	y.WriteString("rules:\n")
	for i := range 20 {
		fmt.Fprintf(&y, "  - {group: team-%d-admins, admin: {workspace: ws%d}}\n", i, i)
	}
	for i := range 10 {
		fmt.Fprintf(&y, "  - {group: 'kb-p%d-{ws}-admin', admin: {workspace: '{ws}'}}\n", i)
		fmt.Fprintf(&y, "  - {group: 'kb-p%d-{org}-reader', reader: {organization: '{org}'}}\n", i)
	}
	for i := range 9 {
		fmt.Fprintf(&y, "  - {claim: email, value: 'user%d@example.com', reader: {workspace: ws%d}}\n", i, i)
	}
	y.WriteString("  - {group: kb-operators, operator: true}\n")
	m := mustParse(b, y.String())
	if m.Rules() != 50 {
		b.Fatalf("%d rules", m.Rules())
	}
	return m
}

// BenchmarkGrants: 50 rules, 200 groups of which 10 match.
func BenchmarkGrants(b *testing.B) {
	m := benchmarkMap(b)
	groups := make([]any, 0, 200)
	for i := range 190 {
		groups = append(groups, fmt.Sprintf("org-directory-group-%03d", i))
	}
	for i := range 5 {
		groups = append(groups, fmt.Sprintf("team-%d-admins", i), fmt.Sprintf("kb-p%d-ws%d-admin", i, i))
	}
	claims := map[string]any{"iss": "https://idp.example.com", "sub": "u1", "email": "user1@example.com", "email_verified": true, "groups": groups}
	if g := m.Grants(claims); len(g.Workspaces) != 5 {
		b.Fatalf("Grants: %s", show(g))
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Grants(claims)
	}
}
