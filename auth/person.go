package auth

import (
	"maps"
	"slices"
	"strings"
	"unicode"
)

// Person is someone keybroker knows by their identity provider rather than
// by a token: a person signed in with OpenID Connect (a session), or a
// platform's user the platform vouches for (a signed assertion). The audit
// trail names them by issuer and subject, with the name or email when the
// provider gave one.
type Person struct {
	// Issuer and Subject identify the person (the ID token's iss and sub,
	// or the assertion's).
	Issuer, Subject string
	// Name and Email are for people reading the trail; optional.
	Name, Email string
	// Platform is the registration id of the platform acting for the
	// person ("" for a person signed in themself).
	Platform string
}

// maxActorText bounds each part of an actor's text in the trail.
const maxActorText = 200

// Actor is how the audit trail names the person: "person:ISSUER|SUBJECT",
// or "platform:ID/person:ISSUER|SUBJECT" for a platform's user, followed
// by " (NAME <EMAIL>)" when known. Control characters are dropped and
// each part is bounded, so no claim can forge a line or a second actor.
func (p Person) Actor() string {
	var b strings.Builder
	if p.Platform != "" {
		b.WriteString("platform:" + actorText(p.Platform) + "/")
	}
	b.WriteString("person:" + actorText(p.Issuer) + "|" + actorText(p.Subject))
	name, email := actorText(p.Name), actorText(p.Email)
	switch {
	case name != "" && email != "":
		b.WriteString(" (" + name + " <" + email + ">)")
	case name != "":
		b.WriteString(" (" + name + ")")
	case email != "":
		b.WriteString(" (<" + email + ">)")
	}
	return b.String()
}

// actorText is s without control, format (bidirectional overrides,
// zero-width) and line or paragraph separator characters, nor '<', '>',
// '(', ')' and '|' (which delimit an actor's parts), at most maxActorText
// runes.
func actorText(s string) string {
	out := make([]rune, 0, min(len(s), maxActorText))
	for _, r := range s {
		if len(out) == maxActorText {
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp) || strings.ContainsRune("<>()|", r) {
			continue
		}
		out = append(out, r)
	}
	return strings.TrimSpace(string(out))
}

// ScopedRoles are a person's roles, scope by scope: admin or reader of
// each workspace and organization, and whether they are an operator.
// Tokens have one role for all their scopes; a person's groups may make
// them an admin of one workspace and a reader of another.
type ScopedRoles struct {
	Operator      bool
	Workspaces    map[string]Role // RoleAdmin or RoleReader
	Organizations map[string]Role
	// From says where each role came from, when known (a session's
	// mapping): "operator", "workspace:ID" or "organization:ID" → the rule
	// and what it matched ("rules[1]: group kb-ws-ws1-admin").
	From map[string]string
}

// Empty says whether the roles grant nothing: such a person is refused.
func (r ScopedRoles) Empty() bool {
	return !r.Operator && len(r.Workspaces) == 0 && len(r.Organizations) == 0
}

// PersonPrincipal is the principal of person with roles, authenticated by
// the session or assertion id. Its Role is the broadest role it holds
// (operator, else admin of some scope, else reader), for logs and
// labels; its Workspaces and Organizations are every scope it reaches, in
// order; Allowed judges each scope by its own role.
func PersonPrincipal(id string, person Person, roles ScopedRoles) Principal {
	p := Principal{TokenID: id, Person: &person, Scoped: &roles,
		Workspaces: slices.Sorted(maps.Keys(roles.Workspaces)), Organizations: slices.Sorted(maps.Keys(roles.Organizations))}
	switch {
	case roles.Operator:
		p.Role = RoleOperator
	case slices.Contains(slices.Collect(maps.Values(roles.Workspaces)), RoleAdmin) ||
		slices.Contains(slices.Collect(maps.Values(roles.Organizations)), RoleAdmin):
		p.Role = RoleAdmin
	default:
		p.Role = RoleReader
	}
	return p
}
