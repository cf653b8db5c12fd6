package rolemap_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth/rolemap"
)

// example is the file of the package's docs (docs/identity.md) in brief:
// each kind of rule once.
const example = `
# which claim holds the groups (default "groups")
groupsClaim: groups
rules:
  - group: kb-operators
    operator: true
  - group: "kb-ws-{ws}-admin"
    admin: {workspace: "{ws}"}
  - group: "kb-ws-{ws}-reader"
    reader: {workspace: "{ws}"}
  - group: "kb-org-{org}-reader"
    reader: {organization: "{org}"}
  - claim: email
    value: alice@example.com
    admin: {organization: acme}
  - claim: hd
    value: example.com
    reader: {workspace: ws1}
  - issuer: https://idp.example.com
    claim: roles
    value: "team-{ws}"
    admin: {workspace: "t-{ws}"}
`

func TestParseAcceptsTheExample(t *testing.T) {
	m, err := rolemap.Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if m.Rules() != 7 || m.GroupsClaim() != "groups" {
		t.Fatalf("rules %d, groups claim %q", m.Rules(), m.GroupsClaim())
	}
	m, err = rolemap.Parse([]byte("rules: [{group: a, operator: true}]"))
	if err != nil {
		t.Fatal(err)
	}
	if m.GroupsClaim() != rolemap.DefaultGroupsClaim {
		t.Fatalf("default groups claim: %q", m.GroupsClaim())
	}
	// JSON is YAML.
	if _, err := rolemap.Parse([]byte(`{"groupsClaim": "roles", "rules": [{"group": "a", "reader": {"organization": "o1"}}]}`)); err != nil {
		t.Fatal(err)
	}
}

// rule0 wraps one rule's YAML (a mapping's lines, indented by 4) in a file.
func rule0(lines ...string) string {
	return "rules:\n  - " + strings.Join(lines, "\n    ") + "\n"
}

func TestParseRefusesWithAMessagePerProblem(t *testing.T) {
	const ws = "workspace id must match [a-z0-9][a-z0-9_-]{0,62}"
	tooMany := "rules:\n" + strings.Repeat("  - {group: a, operator: true}\n", rolemap.MaxRules+1)
	for _, tc := range []struct {
		name string
		yaml string
		want []string // every problem, in order; rules[i] prefixes name the rule
		rule []int    // the Rule of each problem
	}{
		// The file.
		{"empty", "# nothing\n", []string{"the file is empty; it needs rules"}, []int{-1}},
		{"a list", "- group: a\n", []string{"the file must be a mapping (groupsClaim, rules), not a list"}, []int{-1}},
		{"unknown key", "rule:\n  - {group: a, operator: true}\n",
			[]string{`unknown key "rule" (groupsClaim, rules)`, "rules: missing; a mapping without rules grants nothing and refuses everyone"}, []int{-1, -1}},
		{"groupsClaim a number", "groupsClaim: 3\nrules: [{group: a, operator: true}]\n",
			[]string{"groupsClaim: want a claim name (a string), got the number 3"}, []int{-1}},
		{"groupsClaim empty", "groupsClaim: ''\nrules: [{group: a, operator: true}]\n",
			[]string{`groupsClaim: empty; leave it out for the default "groups"`}, []int{-1}},
		{"no rules", "rules: []\n", []string{"rules: empty; a mapping without rules grants nothing and refuses everyone"}, []int{-1}},
		{"rules a mapping", "rules: {group: a}\n", []string{"rules: want a list of rules, got a mapping"}, []int{-1}},
		{"too many rules", tooMany, []string{"rules: 1001 rules; at most 1000"}, []int{-1}},
		{"YAML syntax, with its line", "rules:\n\t- group: a\n", []string{"yaml: line 2: found character that cannot start any token"}, []int{-1}},
		{"a key twice", rule0("group: a", "group: b", "operator: true"),
			[]string{`yaml: unmarshal errors: line 3: key "group" already set in map`}, []int{-1}},
		{"a second document", rule0("group: a", "operator: true") + "---\n" + rule0("group: b", "operator: true"),
			[]string{"the file holds more than one YAML document (a second '---'); a mapping is one document"}, []int{-1}},
		{"too large", "# " + strings.Repeat("x", rolemap.MaxFileSize) + "\n", []string{"the file is larger than 1048576 bytes"}, []int{-1}},

		// What a rule matches.
		{"a rule not a mapping", "rules: [kb-operators]\n",
			[]string{`rules[0]: want a mapping (group or claim, and the role it grants), got the string "kb-operators"`}, []int{0}},
		{"unknown rule key", rule0("grop: a", "operator: true"),
			[]string{
				`rules[0]: unknown key "grop" (issuer, group, claim, value, unverifiedEmail, operator, admin, reader)`,
				"rules[0]: says nothing to match; give group: <name>, or claim: <name> and value: <value>",
			}, []int{0, 0}},
		{"group and claim", rule0("group: a", "claim: email", "operator: true"),
			[]string{`rules[0] (group "a"): give group or claim, not both (a group is a value of the groups claim "groups")`}, []int{0}},
		{"group and value", rule0("group: a", "value: b", "operator: true"),
			[]string{`rules[0] (group "a"): value goes with claim; a group rule names the group alone`}, []int{0}},
		{"claim without value", rule0("claim: email", "operator: true"),
			[]string{`rules[0] (claim "email"): a claim rule needs a value (exact, or a pattern with {ws} or {org})`}, []int{0}},
		{"value without claim", rule0("value: a", "operator: true"),
			[]string{"rules[0]: value needs the claim it is a value of (claim: <name>)"}, []int{0}},
		{"claim is the groups claim", "groupsClaim: roles\n" + rule0("claim: roles", "value: a", "operator: true"),
			[]string{`rules[0] (claim "roles"): "roles" is the groups claim; write group: <name> instead`}, []int{0}},
		{"nothing to match", rule0("operator: true"),
			[]string{"rules[0]: says nothing to match; give group: <name>, or claim: <name> and value: <value>"}, []int{0}},
		{"a number for a group", rule0("group: 0123", "operator: true"),
			[]string{"rules[0]: group: want a string, got the number 83 (quote it: YAML reads unquoted 0123, 1e3, yes or on as a number or a boolean)"}, []int{0}},
		{"a boolean for a value", rule0("claim: dept", "value: on", "operator: true"),
			[]string{`rules[0] (claim "dept"): value: want a string, got the boolean true (quote it: YAML reads unquoted 0123, 1e3, yes or on as a number or a boolean)`}, []int{0}},
		{"an empty group", rule0("group: ''", "operator: true"), []string{"rules[0]: group: empty"}, []int{0}},
		{"an empty issuer", rule0("group: a", "issuer: ''", "operator: true"), []string{`rules[0] (group "a"): issuer: empty`}, []int{0}},
		{"a list for an issuer", rule0("group: a", "issuer: [x]", "operator: true"), []string{`rules[0] (group "a"): issuer: want a string, got a list`}, []int{0}},
		{"unverifiedEmail on another claim", rule0("claim: upn", "value: a@example.com", "unverifiedEmail: true", "operator: true"),
			[]string{`rules[0] (claim "upn"): unverifiedEmail applies to claim: email only`}, []int{0}},
		{"unverifiedEmail not a boolean", rule0("claim: email", "value: a@example.com", "unverifiedEmail: 'yes'", "operator: true"),
			[]string{`rules[0] (claim "email"): unverifiedEmail: want true or false, got the string "yes"`}, []int{0}},

		// Patterns.
		{"two placeholders", rule0("group: 'kb-{org}-{ws}-admin'", "admin: {workspace: '{ws}'}"),
			[]string{`rules[0] (group "kb-{org}-{ws}-admin"): group: "kb-{org}-{ws}-admin" has more than one placeholder; a rule grants one role on one scope, so a pattern captures at most one id`}, []int{0}},
		{"an unknown placeholder", rule0("group: 'kb-{team}-admin'", "operator: true"),
			[]string{`rules[0] (group "kb-{team}-admin"): group: "kb-{team}-admin" has the unknown placeholder {team} (placeholders: {ws}, {org})`}, []int{0}},
		{"an unclosed placeholder", rule0("group: 'kb-{ws-admin'", "operator: true"),
			[]string{`rules[0] (group "kb-{ws-admin"): group: "kb-{ws-admin" has a '{' that opens no placeholder (placeholders: {ws}, {org})`}, []int{0}},
		{"a stray brace", rule0("claim: dept", "value: 'a}b'", "operator: true"),
			[]string{`rules[0] (claim "dept"): value: "a}b" has a '}' that closes no placeholder (placeholders: {ws}, {org})`}, []int{0}},
		{"a capture the grant does not use", rule0("group: 'kb-ws-{ws}-admin'", "admin: {workspace: ws1}"),
			[]string{`rules[0] (group "kb-ws-{ws}-admin"): captures {ws} but the grant (admin.workspace "ws1") does not use it`}, []int{0}},
		{"a capture for an operator", rule0("group: 'kb-{ws}-ops'", "operator: true"),
			[]string{`rules[0] (group "kb-{ws}-ops"): captures {ws} but operator: true grants no workspace or organization to put it in`}, []int{0}},
		{"a grant of what is not captured", rule0("group: kb-admins", "admin: {workspace: '{ws}'}"),
			[]string{`rules[0] (group "kb-admins"): admin.workspace "{ws}" uses {ws}, which the group does not capture`}, []int{0}},
		{"a grant of another capture", rule0("claim: dept", "value: 'org-{org}'", "reader: {workspace: '{ws}'}"),
			[]string{
				`rules[0] (claim "dept"): captures {org} but the grant (reader.workspace "{ws}") does not use it`,
				`rules[0] (claim "dept"): reader.workspace "{ws}" uses {ws}, which the value does not capture`,
			}, []int{0, 0}},

		// What a rule grants.
		{"no role", rule0("group: a"),
			[]string{`rules[0] (group "a"): grants no role; give one of operator: true, admin: {workspace|organization: <id>} or reader: {workspace|organization: <id>}`}, []int{0}},
		{"two roles", rule0("group: a", "admin: {workspace: ws1}", "reader: {workspace: ws2}"),
			[]string{`rules[0] (group "a"): grants admin and reader; a rule grants exactly one role (write one rule per role)`}, []int{0}},
		{"operator false", rule0("group: a", "operator: false"),
			[]string{`rules[0] (group "a"): operator: false grants nothing; write operator: true or remove the rule`}, []int{0}},
		{"operator a string", rule0("group: a", "operator: 'true'"),
			[]string{`rules[0] (group "a"): operator: want true, got the string "true"`}, []int{0}},
		{"admin of a bare id", rule0("group: a", "admin: ws1"),
			[]string{`rules[0] (group "a"): admin: want {workspace: <id>} or {organization: <id>}, got the string "ws1"`}, []int{0}},
		{"admin of an unknown key", rule0("group: a", "admin: {workspaces: ws1}"),
			[]string{
				`rules[0] (group "a"): admin: unknown key "workspaces" (workspace, organization)`,
				`rules[0] (group "a"): admin: give the workspace or the organization it is admin of`,
			}, []int{0, 0}},
		{"reader of both", rule0("group: a", "reader: {workspace: ws1, organization: o1}"),
			[]string{`rules[0] (group "a"): reader: give workspace or organization, not both (write one rule per scope)`}, []int{0}},
		{"a bad literal id", rule0("group: a", "admin: {workspace: WS1}"),
			[]string{`rules[0] (group "a"): admin.workspace "WS1": ` + ws}, []int{0}},
		{"a number for an id", rule0("group: a", "reader: {organization: 42}"),
			[]string{`rules[0] (group "a"): reader.organization: want an id or a placeholder (a string), got the number 42`}, []int{0}},
		{"a template that makes no id", rule0("group: 'kb-{ws}'", "admin: {workspace: 'Team-{ws}'}"),
			[]string{`rules[0] (group "kb-{ws}"): admin.workspace "Team-{ws}": makes no valid id whatever it captures (` + ws + `, e.g. "Team-a")`}, []int{0}},
		{"a workspace capture for an organization", rule0("group: 'kb-{ws}'", "admin: {organization: '{ws}'}"),
			[]string{`rules[0] (group "kb-{ws}"): admin.organization "{ws}": {ws} captures a workspace id; use {org} for an organization`}, []int{0}},
		{"an organization capture for a workspace", rule0("group: 'kb-{org}'", "reader: {workspace: '{org}'}"),
			[]string{`rules[0] (group "kb-{org}"): reader.workspace "{org}": {org} captures an organization id; use {ws} for a workspace`}, []int{0}},
		{"a rule twice", "rules:\n  - {group: a, operator: true}\n  - {group: b, operator: true}\n  - {operator: true, group: a}\n",
			[]string{`rules[2] (group "a"): the same rule as rules[0]`}, []int{2}},

		// Every problem of every rule, each under its rule.
		{"several rules", "rules:\n  - {group: a}\n  - {group: b, operator: true}\n  - {claim: c, operator: true}\n",
			[]string{
				`rules[0] (group "a"): grants no role; give one of operator: true, admin: {workspace|organization: <id>} or reader: {workspace|organization: <id>}`,
				`rules[2] (claim "c"): a claim rule needs a value (exact, or a pattern with {ws} or {org})`,
			}, []int{0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := rolemap.Parse([]byte(tc.yaml))
			if m != nil || !errors.Is(err, rolemap.ErrInvalid) {
				t.Fatalf("Parse = %v, %v; want ErrInvalid", m, err)
			}
			var pe *rolemap.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T is no *ParseError", err)
			}
			var got []string
			var rules []int
			for _, p := range pe.Problems {
				got = append(got, p.Message)
				rules = append(rules, p.Rule)
			}
			if !slices.Equal(got, tc.want) || !slices.Equal(rules, tc.rule) {
				t.Fatalf("problems:\n%s\n%v\nwant:\n%s\n%v", strings.Join(got, "\n"), rules, strings.Join(tc.want, "\n"), tc.rule)
			}
			if want := "invalid role mapping: " + strings.Join(tc.want, "; "); err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
}

func TestParseErrorNamesTenProblemsAndCountsTheRest(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 13 {
		fmt.Fprintf(&b, "  - {group: g%d}\n", i)
	}
	_, err := rolemap.Parse([]byte(b.String()))
	var pe *rolemap.ParseError
	if !errors.As(err, &pe) || len(pe.Problems) != 13 {
		t.Fatalf("%v", err)
	}
	if s := err.Error(); strings.Count(s, "grants no role") != 10 || !strings.HasSuffix(s, "; and 3 more") || !strings.Contains(s, `rules[9] (group "g9")`) {
		t.Fatalf("error: %s", s)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(good, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := rolemap.Load(good)
	if err != nil || m.Rules() != 7 {
		t.Fatalf("Load: %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(rule0("group: a")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = rolemap.Load(bad)
	if !errors.Is(err, rolemap.ErrInvalid) || !strings.HasPrefix(err.Error(), "role mapping file "+bad+": invalid role mapping: rules[0] (group \"a\"): grants no role") {
		t.Fatalf("Load of a bad file: %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(example+"#"+strings.Repeat("x", rolemap.MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = rolemap.Load(big); !errors.Is(err, rolemap.ErrInvalid) || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Fatalf("Load of a large file: %v", err)
	}

	_, err = rolemap.Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, rolemap.ErrInvalid) || !strings.HasPrefix(err.Error(), "role mapping file: open "+dir) {
		t.Fatalf("Load of a missing file: %v", err)
	}
}
