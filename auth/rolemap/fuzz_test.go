package rolemap_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/keybroker/keybroker/auth/rolemap"
	"github.com/keybroker/keybroker/ids"
)

// fuzzClaims are claims every fuzzed mapping is asked about.
var fuzzClaims = []string{
	`{}`,
	`{"groups": ["kb-operators", "kb-ws-ws1-admin", "kb-ws-../x-admin", "kb-org-acme-reader", "", "{ws}", "kb-ws-{ws}-admin"]}`,
	`{"groups": "kb-operators", "email": "alice@example.com", "email_verified": true, "hd": "example.com", "iss": "https://idp.example.com"}`,
	`{"groups": [1, null, {"a": "b"}, ["kb-operators"]], "roles": "team-x", "email": 3}`,
}

// FuzzParse: Parse never panics, refuses only with a *ParseError that says
// something, and a map it accepts answers Grants without panicking, with
// valid ids and known roles, the same way twice.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		example,
		"",
		"rules: []",
		"rules: [{group: a, operator: true}]",
		"rules: [{group: 'kb-{ws}', admin: {workspace: '{ws}'}}]",
		"rules: [{group: '{ws}', reader: {workspace: 'x-{ws}'}}]",
		"rules: [{group: '{org}}', reader: {organization: '{org}'}}]",
		"rules: [{claim: email, value: '{ws}@x', unverifiedEmail: true, admin: {workspace: '{ws}'}}]",
		"groupsClaim: roles\nrules:\n  - {group: '{', operator: true}\n",
		"rules:\n  - group: a\n    group: a\n",
		"--- \nrules: [{group: a, operator: true}]\n...\n",
		"&a [*a]",
		"rules: &r [*r]",
		"{rules: [{group: a, admin: {workspace: ws1, organization: o}}]}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := rolemap.Parse(data)
		if err != nil {
			var pe *rolemap.ParseError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 || !errors.Is(err, rolemap.ErrInvalid) {
				t.Fatalf("Parse error %T %v", err, err)
			}
			for _, p := range pe.Problems {
				if p.Message == "" || p.Rule < -1 || p.Rule >= rolemap.MaxRules {
					t.Fatalf("problem %+v", p)
				}
			}
			return
		}
		for _, js := range fuzzClaims {
			var claims map[string]any
			if err := json.Unmarshal([]byte(js), &claims); err != nil {
				t.Fatal(err)
			}
			checkGrants(t, m, claims)
		}
	})
}

// FuzzGrants: Grants on any claims (any JSON) of a fixed mapping never
// panics, grants valid ids with known roles, and does not depend on the
// order of a list claim's values.
func FuzzGrants(f *testing.F) {
	m, err := rolemap.Parse([]byte(example))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range fuzzClaims {
		f.Add([]byte(seed))
	}
	f.Add([]byte(`{"groups": ["kb-ws-a-admin", "kb-ws-a-reader", "kb-ws-a-admin"], "_claim_names": {"groups": "s"}}`))
	f.Add([]byte(`{"_claim_names": {"groups": "s"}}`))
	f.Add([]byte(`{"iss": "https://idp.example.com", "roles": ["team-a", "team-", "team-A"]}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		var claims map[string]any
		if json.Unmarshal(js, &claims) != nil {
			return
		}
		g := checkGrants(t, m, claims)
		// The same values in reverse: the same grants (within the bound).
		reversed := map[string]any{}
		for k, v := range claims {
			if l, ok := v.([]any); ok && len(l) <= rolemap.MaxClaimValues {
				l = slices.Clone(l)
				slices.Reverse(l)
				v = l
			}
			reversed[k] = v
		}
		if r := m.Grants(reversed); !reflect.DeepEqual(r, g) {
			t.Fatalf("reversed lists:\n%s\nwant\n%s", show(r), show(g))
		}
	})
}

func checkGrants(t *testing.T, m *rolemap.Map, claims map[string]any) rolemap.Grants {
	t.Helper()
	g := m.Grants(claims)
	if again := m.Grants(claims); !reflect.DeepEqual(again, g) {
		t.Fatalf("Grants twice:\n%s\n%s", show(g), show(again))
	}
	if g.Operator != nil && (g.Operator.Rule < 0 || g.Operator.Rule >= m.Rules() || g.Operator.Matched == "") {
		t.Fatalf("operator source %+v", *g.Operator)
	}
	for _, scope := range []map[string]rolemap.Grant{g.Workspaces, g.Organizations} {
		if scope != nil && len(scope) == 0 {
			t.Fatal("an empty, non-nil map")
		}
		for id, gr := range scope {
			if !ids.Valid(id) || (gr.Role != rolemap.RoleAdmin && gr.Role != rolemap.RoleReader) || gr.From.Rule < 0 || gr.From.Rule >= m.Rules() || gr.From.Matched == "" {
				t.Fatalf("grant %q: %+v", id, gr)
			}
		}
	}
	if g.Empty() != (g.Operator == nil && len(g.Workspaces) == 0 && len(g.Organizations) == 0) {
		t.Fatal("Empty")
	}
	return g
}
