package rolemap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/keybroker/keybroker/ids"
)

// Bounds.
const (
	// MaxRules is the most rules a mapping file may hold.
	MaxRules = 1000
	// MaxClaimValues is the most values of a list claim (the groups claim
	// or any other) that Grants reads; the rest are ignored and the result
	// says so (Grants.Truncated).
	MaxClaimValues = 1000
	// MaxFileSize is the largest mapping file Parse and Load accept.
	MaxFileSize = 1 << 20
)

// DefaultGroupsClaim is the claim that holds the groups when the file does
// not name one.
const DefaultGroupsClaim = "groups"

// The roles a rule grants on a workspace or an organization (the values of
// package auth's roles of the same names).
const (
	RoleAdmin  = "admin"
	RoleReader = "reader"
)

// ErrInvalid is what every error of Parse about the content of a file
// matches with errors.Is; the error itself is a *ParseError.
var ErrInvalid = errors.New("invalid role mapping")

// ParseError is every problem found in a mapping file.
type ParseError struct {
	Problems []Problem
}

// Problem is one thing wrong with a mapping file.
type Problem struct {
	// Rule is the index of the rule it is in (rules[Rule], counted from
	// 0), or -1 for the file as a whole.
	Rule int
	// Message says where in the rule and what is wrong, e.g.
	// `rules[2] (group "kb-ws-{ws}-admin"): admin.workspace: ...`.
	Message string
}

// maxShown is how many problems the text of a ParseError spells out.
const maxShown = 10

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	b.WriteString(": ")
	for i, p := range e.Problems {
		if i == maxShown {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-maxShown)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// Is makes a *ParseError match ErrInvalid.
func (e *ParseError) Is(target error) bool { return target == ErrInvalid }

// Load reads and parses the mapping file at path.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("role mapping file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("role mapping file %s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("role mapping file %s: %w", path, err)
	}
	return m, nil
}

// Parse reads a mapping file (YAML, or JSON, which is YAML) and validates
// all of it. Its error, when the content is wrong, is a *ParseError that
// lists every problem.
func Parse(data []byte) (*Map, error) {
	fileProblem := func(format string, a ...any) error {
		return &ParseError{Problems: []Problem{{Rule: -1, Message: fmt.Sprintf(format, a...)}}}
	}
	if len(data) > MaxFileSize {
		return nil, fileProblem("the file is larger than %d bytes", MaxFileSize)
	}
	if secondDocument(data) {
		return nil, fileProblem("the file holds more than one YAML document (a second '---'); a mapping is one document")
	}
	// Strict: a key written twice in one mapping is refused. The YAML is
	// read without a Go type behind it so that nothing is coerced: a value
	// YAML reads as a number or a boolean (0123, on) where a string is
	// expected is refused below, not silently turned into "83" or "true".
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fileProblem("%s", strings.Join(strings.Fields(err.Error()), " "))
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fileProblem("%v", err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		if doc == nil {
			return nil, fileProblem("the file is empty; it needs rules")
		}
		return nil, fileProblem("the file must be a mapping (groupsClaim, rules), not %s", describe(doc))
	}
	p := &parser{}
	m := p.parse(top)
	if len(p.problems) > 0 {
		return nil, &ParseError{Problems: p.problems}
	}
	return m, nil
}

// secondDocument reports whether data holds a document marker ("---" or
// "...") after content and more content after it: the YAML library reads
// the first document only, and rules after the marker would be dropped
// without a word.
func secondDocument(data []byte) bool {
	content, ended := false, false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if isMarker(line, "---") || isMarker(line, "...") {
			if content {
				ended = true
			}
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || (!content && t[0] == '%') {
			continue
		}
		if ended {
			return true
		}
		content = true
	}
	return false
}

func isMarker(line, marker string) bool {
	return strings.HasPrefix(line, marker) && (len(line) == len(marker) || line[len(marker)] == ' ' || line[len(marker)] == '\t')
}

// The keys of the file and of a rule, in the order messages list them.
var (
	fileKeys  = []string{"groupsClaim", "rules"}
	ruleKeys  = []string{"issuer", "group", "claim", "value", "unverifiedEmail", "operator", "admin", "reader"}
	scopeKeys = []string{"workspace", "organization"}
)

type parser struct {
	problems []Problem
}

func (p *parser) add(rule int, format string, a ...any) {
	p.problems = append(p.problems, Problem{Rule: rule, Message: fmt.Sprintf(format, a...)})
}

func (p *parser) parse(top map[string]any) *Map {
	for _, k := range sortedKeys(top) {
		if !slices.Contains(fileKeys, k) {
			p.add(-1, "unknown key %q (%s)", k, strings.Join(fileKeys, ", "))
		}
	}
	m := &Map{groupsClaim: DefaultGroupsClaim}
	if v, ok := top["groupsClaim"]; ok {
		s, isString := v.(string)
		switch {
		case !isString:
			p.add(-1, "groupsClaim: want a claim name (a string), got %s", describe(v))
		case s == "":
			p.add(-1, "groupsClaim: empty; leave it out for the default %q", DefaultGroupsClaim)
		default:
			m.groupsClaim = s
		}
	}
	raw, ok := top["rules"]
	if !ok {
		p.add(-1, "rules: missing; a mapping without rules grants nothing and refuses everyone")
		return m
	}
	list, ok := raw.([]any)
	switch {
	case !ok:
		p.add(-1, "rules: want a list of rules, got %s", describe(raw))
		return m
	case len(list) == 0:
		p.add(-1, "rules: empty; a mapping without rules grants nothing and refuses everyone")
		return m
	case len(list) > MaxRules:
		p.add(-1, "rules: %d rules; at most %d", len(list), MaxRules)
		return m
	}
	seen := make(map[string]int, len(list))
	for i, item := range list {
		r, ok := p.rule(i, item, m.groupsClaim)
		if !ok {
			continue
		}
		key := r.key()
		if first, dup := seen[key]; dup {
			p.add(i, "%s: the same rule as rules[%d]", r.where(i), first)
			continue
		}
		seen[key] = i
		m.rules = append(m.rules, r)
	}
	if len(p.problems) == 0 {
		m.index()
	}
	return m
}

// rule reads rules[i]. It reports every problem of the rule it finds.
func (p *parser) rule(i int, item any, groupsClaim string) (rule, bool) {
	obj, ok := item.(map[string]any)
	if !ok {
		p.add(i, "rules[%d]: want a mapping (group or claim, and the role it grants), got %s", i, describe(item))
		return rule{}, false
	}
	before := len(p.problems)
	r := rule{index: i}
	where := fmt.Sprintf("rules[%d]", i)

	// What the rule matches.
	if g, ok := obj["group"].(string); ok && g != "" {
		where = fmt.Sprintf("rules[%d] (group %q)", i, g)
	} else if c, ok := obj["claim"].(string); ok && c != "" {
		where = fmt.Sprintf("rules[%d] (claim %q)", i, c)
	}
	group, hasGroup := p.str(i, where, obj, "group")
	claim, hasClaim := p.str(i, where, obj, "claim")
	value, hasValue := p.str(i, where, obj, "value")
	selectorOK := len(p.problems) == before
	for _, k := range sortedKeys(obj) {
		if !slices.Contains(ruleKeys, k) {
			p.add(i, "%s: unknown key %q (%s)", where, k, strings.Join(ruleKeys, ", "))
		}
	}
	switch {
	case !selectorOK:
		// Already said.
	case hasGroup && hasClaim:
		p.add(i, "%s: give group or claim, not both (a group is a value of the groups claim %q)", where, groupsClaim)
	case hasGroup && hasValue:
		p.add(i, "%s: value goes with claim; a group rule names the group alone", where)
	case hasGroup:
		r.group, r.claim = true, groupsClaim
		r.pat = p.pattern(i, where, "group", group)
	case hasClaim && claim == groupsClaim:
		p.add(i, "%s: %q is the groups claim; write group: <name> instead", where, claim)
	case hasClaim && !hasValue:
		p.add(i, "%s: a claim rule needs a value (exact, or a pattern with {ws} or {org})", where)
	case hasClaim:
		r.claim = claim
		r.pat = p.pattern(i, where, "value", value)
	case hasValue:
		p.add(i, "%s: value needs the claim it is a value of (claim: <name>)", where)
	default:
		p.add(i, "%s: says nothing to match; give group: <name>, or claim: <name> and value: <value>", where)
	}
	if issuer, ok := p.str(i, where, obj, "issuer"); ok {
		r.issuer = issuer
	}
	if v, ok := obj["unverifiedEmail"]; ok {
		b, isBool := v.(bool)
		switch {
		case !isBool:
			p.add(i, "%s: unverifiedEmail: want true or false, got %s", where, describe(v))
		case !hasClaim || claim != "email":
			p.add(i, "%s: unverifiedEmail applies to claim: email only", where)
		default:
			r.unverifiedEmail = b
		}
	}

	// What it grants.
	var granted []string
	for _, k := range []string{"operator", "admin", "reader"} {
		if _, ok := obj[k]; ok {
			granted = append(granted, k)
		}
	}
	switch len(granted) {
	case 0:
		p.add(i, "%s: grants no role; give one of operator: true, admin: {workspace|organization: <id>} or reader: {workspace|organization: <id>}", where)
	case 1:
		p.grant(i, where, &r, granted[0], obj[granted[0]])
	default:
		p.add(i, "%s: grants %s; a rule grants exactly one role (write one rule per role)", where, strings.Join(granted, " and "))
	}
	if len(p.problems) > before {
		return rule{}, false
	}
	// Placeholders: what the pattern captures, the grant uses, and the
	// other way round.
	if c := r.pat.placeholder; c != "" && r.target.placeholder != c {
		if r.operator {
			p.add(i, "%s: captures {%s} but operator: true grants no workspace or organization to put it in", where, c)
		} else {
			p.add(i, "%s: captures {%s} but the grant (%s.%s %q) does not use it", where, c, r.role, r.scope, r.target.String())
		}
	}
	if u := r.target.placeholder; u != "" && r.pat.placeholder != u {
		p.add(i, "%s: %s.%s %q uses {%s}, which the %s does not capture", where, r.role, r.scope, r.target.String(), u, matchedWhat(r))
	}
	return r, len(p.problems) == before
}

func matchedWhat(r rule) string {
	if r.group {
		return "group"
	}
	return "value"
}

// grant reads the role a rule grants (key is operator, admin or reader).
func (p *parser) grant(i int, where string, r *rule, key string, v any) {
	if key == "operator" {
		switch b, ok := v.(bool); {
		case !ok:
			p.add(i, "%s: operator: want true, got %s", where, describe(v))
		case !b:
			p.add(i, "%s: operator: false grants nothing; write operator: true or remove the rule", where)
		default:
			r.operator = true
		}
		return
	}
	r.role = key
	obj, ok := v.(map[string]any)
	if !ok {
		p.add(i, "%s: %s: want {workspace: <id>} or {organization: <id>}, got %s", where, key, describe(v))
		return
	}
	for _, k := range sortedKeys(obj) {
		if !slices.Contains(scopeKeys, k) {
			p.add(i, "%s: %s: unknown key %q (%s)", where, key, k, strings.Join(scopeKeys, ", "))
		}
	}
	_, ws := obj["workspace"]
	_, org := obj["organization"]
	switch {
	case ws && org:
		p.add(i, "%s: %s: give workspace or organization, not both (write one rule per scope)", where, key)
		return
	case ws:
		r.scope = scopeWorkspace
	case org:
		r.scope = scopeOrganization
	default:
		p.add(i, "%s: %s: give the workspace or the organization it is %s of", where, key, key)
		return
	}
	field := key + "." + string(r.scope)
	s, isString := obj[string(r.scope)].(string)
	if !isString {
		p.add(i, "%s: %s: want an id or a placeholder (a string), got %s", where, field, describe(obj[string(r.scope)]))
		return
	}
	t, err := parsePattern(s)
	if err != nil {
		p.add(i, "%s: %s: %v", where, field, err)
		return
	}
	want := placeholderWorkspace
	if r.scope == scopeOrganization {
		want = placeholderOrganization
	}
	if t.placeholder != "" && t.placeholder != want {
		hint := "{ws} captures a workspace id; use {org} for an organization"
		if t.placeholder == placeholderOrganization {
			hint = "{org} captures an organization id; use {ws} for a workspace"
		}
		p.add(i, "%s: %s %q: %s", where, field, s, hint)
		return
	}
	// A literal id must be valid; a template must be able to make one.
	if id, ok := t.fill("a"); !ok {
		if t.placeholder == "" {
			p.add(i, "%s: %s %q: %s", where, field, s, ids.Message(string(r.scope)))
		} else {
			p.add(i, "%s: %s %q: makes no valid id whatever it captures (%s, e.g. %q)", where, field, s, ids.Message(string(r.scope)), id)
		}
		return
	}
	r.target = t
}

// str reads the optional string at key: present and a non-empty string, or
// a problem.
func (p *parser) str(i int, where string, obj map[string]any, key string) (string, bool) {
	v, ok := obj[key]
	if !ok {
		return "", false
	}
	s, isString := v.(string)
	switch {
	case !isString:
		hint := ""
		switch v.(type) {
		case json.Number, bool:
			hint = " (quote it: YAML reads unquoted 0123, 1e3, yes or on as a number or a boolean)"
		}
		p.add(i, "%s: %s: want a string, got %s%s", where, key, describe(v), hint)
		return "", false
	case s == "":
		p.add(i, "%s: %s: empty", where, key)
		return "", false
	}
	return s, true
}

// pattern compiles the group or the value of rules[i].
func (p *parser) pattern(i int, where, field, s string) pattern {
	pat, err := parsePattern(s)
	if err != nil {
		p.add(i, "%s: %s: %v", where, field, err)
	}
	return pat
}

// describe names the type (and, for scalars, the value) of a decoded YAML
// value, for messages.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing (null)"
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
