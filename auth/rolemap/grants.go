package rolemap

import (
	"fmt"
	"slices"
	"strings"
)

// Map is a parsed, validated mapping file. It is immutable and safe for
// concurrent use.
type Map struct {
	groupsClaim string
	rules       []rule
	claims      []claimIndex // by claim name
}

// scopeKind is what an admin or reader grant is on.
type scopeKind string

const (
	scopeWorkspace    scopeKind = "workspace"
	scopeOrganization scopeKind = "organization"
)

// rule is one compiled rule.
type rule struct {
	index           int
	issuer          string // "": any issuer
	claim           string // the claim it reads (the groups claim for a group rule)
	group           bool
	pat             pattern
	unverifiedEmail bool // claim email: match without email_verified: true

	operator bool
	role     string    // RoleAdmin or RoleReader, when not operator
	scope    scopeKind // when not operator
	target   pattern   // the scope's id: literal, or filled with the capture
}

// key identifies what the rule says, to refuse a rule written twice.
func (r *rule) key() string {
	return fmt.Sprintf("%q %q %t %q %t %t %q %q %q", r.issuer, r.claim, r.group, r.pat.String(), r.unverifiedEmail, r.operator, r.role, r.scope, r.target.String())
}

func (r *rule) where(i int) string {
	if r.group {
		return fmt.Sprintf("rules[%d] (group %q)", i, r.pat.String())
	}
	return fmt.Sprintf("rules[%d] (claim %q)", i, r.claim)
}

// claimIndex is the rules that read one claim: exact values by value, and
// patterns by their literal prefix, so that a value is compared with the
// patterns whose prefix it starts with only (a look-up per distinct prefix
// length, not a comparison per pattern).
type claimIndex struct {
	name       string
	exact      map[string][]int // value -> indexes in Map.rules
	byPrefix   map[string][]int // a pattern's prefix -> indexes in Map.rules
	prefixLens []int            // the distinct lengths of the keys of byPrefix, ascending
}

// index builds m.claims from m.rules.
func (m *Map) index() {
	byName := map[string]*claimIndex{}
	for ri := range m.rules {
		r := &m.rules[ri]
		c := byName[r.claim]
		if c == nil {
			c = &claimIndex{name: r.claim, exact: map[string][]int{}, byPrefix: map[string][]int{}}
			byName[r.claim] = c
		}
		if r.pat.placeholder == "" {
			c.exact[r.pat.prefix] = append(c.exact[r.pat.prefix], ri)
		} else {
			c.byPrefix[r.pat.prefix] = append(c.byPrefix[r.pat.prefix], ri)
			if !slices.Contains(c.prefixLens, len(r.pat.prefix)) {
				c.prefixLens = append(c.prefixLens, len(r.pat.prefix))
			}
		}
	}
	for _, c := range byName {
		slices.Sort(c.prefixLens)
		m.claims = append(m.claims, *c)
	}
	slices.SortFunc(m.claims, func(a, b claimIndex) int { return strings.Compare(a.name, b.name) })
}

// GroupsClaim is the claim the mapping reads groups from (the scope or the
// claim to ask the identity provider for).
func (m *Map) GroupsClaim() string { return m.groupsClaim }

// Rules is the number of rules.
func (m *Map) Rules() int { return len(m.rules) }

// Source is where a role came from: the rule and what of the claims it
// matched.
type Source struct {
	// Rule is the rule's index in the file (rules[Rule], counted from 0).
	Rule int `json:"rule"`
	// Matched is what the rule matched, e.g. "group kb-ws-ws1-admin" or
	// "claim email = alice@example.com".
	Matched string `json:"matched"`
}

// String says it for people, e.g. "rules[2]: group kb-ws-ws1-admin".
func (s Source) String() string { return fmt.Sprintf("rules[%d]: %s", s.Rule, s.Matched) }

// Grant is a role on one workspace or organization.
type Grant struct {
	Role string `json:"role"` // RoleAdmin or RoleReader
	From Source `json:"from"`
}

// Grants is what a mapping grants on a set of claims.
type Grants struct {
	// Operator is the source of the operator role, nil without it.
	Operator *Source `json:"operator,omitempty"`
	// Workspaces and Organizations map an id to the role on it; nil when
	// there is none.
	Workspaces    map[string]Grant `json:"workspaces,omitempty"`
	Organizations map[string]Grant `json:"organizations,omitempty"`
	// Truncated says a list claim held more than MaxClaimValues values and
	// only the first MaxClaimValues were read.
	Truncated bool `json:"truncated,omitempty"`
	// GroupsOverage says the claims hold no groups claim but name it as a
	// distributed claim (_claim_names): Entra ID does so instead of
	// sending the groups of a person in more than 200 of them. The groups
	// were not read; the person's group rules could not match.
	GroupsOverage bool `json:"groupsOverage,omitempty"`
}

// Empty reports whether g grants no role at all (such a person is refused).
func (g Grants) Empty() bool {
	return g.Operator == nil && len(g.Workspaces) == 0 && len(g.Organizations) == 0
}

// Grants returns the roles the mapping grants on claims: the claims of a
// verified ID token or assertion, as encoding/json decodes them (a string, a
// list of strings: []any or []string). Values of other types, in a claim or
// in a list, are ignored.
func (m *Map) Grants(claims map[string]any) Grants {
	var g Grants
	c := callClaims{verifiedEmail: isTrue(claims["email_verified"])}
	c.issuer, _ = claims["iss"].(string)
	for ci := range m.claims {
		idx := &m.claims[ci]
		switch v := claims[idx.name].(type) {
		case string:
			m.matchValue(&g, &c, idx, v)
		case []any:
			if len(v) > MaxClaimValues {
				v, g.Truncated = v[:MaxClaimValues], true
			}
			for _, e := range v {
				if s, ok := e.(string); ok {
					m.matchValue(&g, &c, idx, s)
				}
			}
		case []string:
			if len(v) > MaxClaimValues {
				v, g.Truncated = v[:MaxClaimValues], true
			}
			for _, s := range v {
				m.matchValue(&g, &c, idx, s)
			}
		}
	}
	if _, present := claims[m.groupsClaim]; !present {
		if names, ok := claims["_claim_names"].(map[string]any); ok {
			_, g.GroupsOverage = names[m.groupsClaim]
		}
	}
	return g
}

// callClaims is what every rule's conditions read, taken once per call.
type callClaims struct {
	issuer        string
	verifiedEmail bool
}

// isTrue reads email_verified: a boolean, or the string "true" as some
// providers send it.
func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// matchValue applies every rule of idx that matches the value v.
func (m *Map) matchValue(g *Grants, c *callClaims, idx *claimIndex, v string) {
	for _, ri := range idx.exact[v] {
		m.apply(g, c, ri, "", v)
	}
	for _, n := range idx.prefixLens {
		if n >= len(v) {
			break // a pattern matches a value longer than its prefix only
		}
		for _, ri := range idx.byPrefix[v[:n]] {
			if capture, ok := m.rules[ri].pat.match(v); ok {
				m.apply(g, c, ri, capture, v)
			}
		}
	}
}

// apply adds what rules[ri] grants, having matched value v (and captured
// capture), to g, keeping the strongest grant per scope.
func (m *Map) apply(g *Grants, c *callClaims, ri int, capture, v string) {
	r := &m.rules[ri]
	if r.issuer != "" && r.issuer != c.issuer {
		return
	}
	if r.claim == "email" && !r.group && !r.unverifiedEmail && !c.verifiedEmail {
		return
	}
	var matched string
	if r.group {
		matched = "group " + v
	} else {
		matched = "claim " + r.claim + " = " + v
	}
	src := Source{Rule: r.index, Matched: matched}
	if r.operator {
		if g.Operator == nil || sourceBefore(src, *g.Operator) {
			g.Operator = &src
		}
		return
	}
	id, ok := r.target.fill(capture)
	if !ok {
		return
	}
	grants := &g.Workspaces
	if r.scope == scopeOrganization {
		grants = &g.Organizations
	}
	if *grants == nil {
		*grants = map[string]Grant{}
	}
	next := Grant{Role: r.role, From: src}
	if prev, ok := (*grants)[id]; !ok || stronger(next, prev) {
		(*grants)[id] = next
	}
}

// stronger reports whether a is kept over b for the same scope: admin over
// reader, then the earlier source. The order makes Grants independent of
// the order of the claims' values.
func stronger(a, b Grant) bool {
	if a.Role != b.Role {
		return a.Role == RoleAdmin
	}
	return sourceBefore(a.From, b.From)
}

// sourceBefore orders sources: the earlier rule, then the smaller matched
// value (one rule matching two values grants two different scopes, so this
// tie is for safety).
func sourceBefore(a, b Source) bool {
	if a.Rule != b.Rule {
		return a.Rule < b.Rule
	}
	return a.Matched < b.Matched
}
