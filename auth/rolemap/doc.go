// Package rolemap owns the role mapping: the file that says which claims of
// an identity (an OpenID Connect ID token's, or a platform assertion's) make a
// person keybroker's operator, or an admin or reader of which workspaces and
// organizations, and the decision it takes on a set of claims.
//
// Parse and Load read and validate a mapping file once, at start: every
// problem is reported with the rule it is in (rules[i], counted from 0, and
// what the rule matches), and a file with any problem is refused whole. The
// patterns of the rules are compiled then; Map.Grants only compares strings
// (a map look-up for exact values, a prefix and a suffix for patterns) and
// builds no regular expression.
//
// Map.Grants is deterministic and does not depend on the order of the values
// in a claim: admin beats reader for the same workspace or organization, and
// between equal grants the rule written first, then the smaller matched
// value, is the one reported as the source. Every grant carries its Source
// (the rule and what it matched) so that whoami and the page can say where a
// role came from. Claims that are neither a string nor a list of strings are
// ignored; list claims are read up to MaxClaimValues values.
//
// The reference of the file, with examples for common identity providers, is
// the section "The role mapping file" of docs/identity.md.
//
// Package rolemap knows nothing of tokens, sessions or HTTP: it neither
// verifies the claims it is given (the caller has verified the ID token or
// the assertion they come from) nor decides what a role may do (package auth
// does).
package rolemap
