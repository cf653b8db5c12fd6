package rolemap

import (
	"fmt"
	"strings"

	"github.com/keybroker/keybroker/ids"
)

// The placeholders a pattern may capture, and what the captured id fills.
const (
	placeholderWorkspace    = "ws"
	placeholderOrganization = "org"
)

// pattern is a value with at most one placeholder: prefix, then (when
// placeholder is set) one captured id, then suffix. A pattern without a
// placeholder is an exact value (prefix).
//
// One placeholder is all a rule can use (it grants one role on one scope,
// named by at most one captured id), and with one placeholder between two
// literal ends the capture is unambiguous: it is what lies between the
// prefix and the suffix.
type pattern struct {
	prefix, suffix string
	placeholder    string // "", placeholderWorkspace or placeholderOrganization
}

// parsePattern reads s: literal text with at most one {ws} or {org}. A brace
// that is not part of a placeholder is refused, so that a typo ({ws) or an
// unknown name ({team}) is not taken for literal text.
func parsePattern(s string) (pattern, error) {
	var p pattern
	rest := s
	var before strings.Builder
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			before.WriteString(rest)
			break
		}
		if rest[i] == '}' {
			return pattern{}, fmt.Errorf("%q has a '}' that closes no placeholder (placeholders: {ws}, {org})", s)
		}
		before.WriteString(rest[:i])
		j := strings.IndexAny(rest[i+1:], "{}")
		if j < 0 || rest[i+1+j] != '}' {
			return pattern{}, fmt.Errorf("%q has a '{' that opens no placeholder (placeholders: {ws}, {org})", s)
		}
		name := rest[i+1 : i+1+j]
		if name != placeholderWorkspace && name != placeholderOrganization {
			return pattern{}, fmt.Errorf("%q has the unknown placeholder {%s} (placeholders: {ws}, {org})", s, name)
		}
		if p.placeholder != "" {
			return pattern{}, fmt.Errorf("%q has more than one placeholder; a rule grants one role on one scope, so a pattern captures at most one id", s)
		}
		p.placeholder = name
		p.prefix = before.String()
		before.Reset()
		rest = rest[i+1+j+1:]
	}
	if p.placeholder == "" {
		p.prefix = before.String()
	} else {
		p.suffix = before.String()
	}
	return p, nil
}

// match reports whether v matches p and, for a pattern with a placeholder,
// the captured id. A capture that is not a valid id (ids.Valid) is no match:
// a group kb-ws-../x-admin grants nothing.
func (p *pattern) match(v string) (capture string, ok bool) {
	if p.placeholder == "" {
		return "", v == p.prefix
	}
	if len(v) <= len(p.prefix)+len(p.suffix) || !strings.HasPrefix(v, p.prefix) || !strings.HasSuffix(v, p.suffix) {
		return "", false
	}
	capture = v[len(p.prefix) : len(v)-len(p.suffix)]
	if !ids.Valid(capture) {
		return "", false
	}
	return capture, true
}

// fill returns the id p names once its placeholder is replaced by capture,
// and whether that id is valid.
func (p *pattern) fill(capture string) (string, bool) {
	if p.placeholder == "" {
		return p.prefix, ids.Valid(p.prefix)
	}
	id := p.prefix + capture + p.suffix
	return id, ids.Valid(id)
}

// String returns p as written.
func (p *pattern) String() string {
	if p.placeholder == "" {
		return p.prefix
	}
	return p.prefix + "{" + p.placeholder + "}" + p.suffix
}
