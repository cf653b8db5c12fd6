// Package ids owns keybroker's one rule for the ids of workspaces,
// organizations, providers and keys: a lowercase letter or digit, then up to
// 62 lowercase letters, digits, '_' or '-'. Every layer checks ids with it
// (the broker, the HTTP handlers, the token service, the Terraform
// validators); the SQL CHECK constraints of the migrations spell the same
// Pattern, and a test of package store holds them to it.
package ids

import "regexp"

// Rule is the id rule as people read it, for error messages.
const Rule = "[a-z0-9][a-z0-9_-]{0,62}"

// Pattern is the anchored regular expression of Rule.
const Pattern = "^" + Rule + "$"

// Regexp is Pattern compiled, for validators that take one.
var Regexp = regexp.MustCompile(Pattern)

// MaxLen is the longest valid id.
const MaxLen = 63

// Valid reports whether s satisfies Rule. It does what Regexp does without
// the regexp engine: it is on the resolve path.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// Message says what an id named what must look like, e.g.
// Message("workspace") is "workspace id must match [a-z0-9][a-z0-9_-]{0,62}".
func Message(what string) string { return what + " id must match " + Rule }
