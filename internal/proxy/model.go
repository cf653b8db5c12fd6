package proxy

import (
	"encoding/json"
	"mime"
	"strings"
	"unicode/utf8"
)

// modelOf reads the model a call names: "model" in a JSON body (OpenAI,
// Anthropic, Mistral and the OpenAI-compatible APIs), or the path segment
// after /models/ (Google: /v1beta/models/gemini-2.0-flash:generateContent).
// "" when it names none, or the body was not kept.
func modelOf(provider, escapedPath, contentType string, body []byte) string {
	if provider == "google" {
		if _, rest, ok := strings.Cut(escapedPath, "/models/"); ok {
			m, _, _ := strings.Cut(rest, ":")
			m, _, _ = strings.Cut(m, "/")
			return m
		}
	}
	if len(body) == 0 {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return ""
	}
	return topLevelString(body, "model")
}

// topLevelString is the string value of the member called name of the
// JSON object in body, read as the providers' own parsers read it: the
// name matched exactly once unescaped (encoding/json would also take
// "Model" or "MODEL", which a provider ignores), the last member of that
// name winning, and "" when that member is not a string or body is not
// one JSON object. It walks the top level once without decoding what it
// skips: a chat body's messages are most of its bytes, and decoding
// them cost a tenth of a proxied call's CPU.
func topLevelString(body []byte, name string) string {
	s := scanner{b: body}
	s.space()
	if !s.eat('{') {
		return ""
	}
	found := ""
	s.space()
	if s.eat('}') {
		return s.end(found)
	}
	for {
		s.space()
		isName, ok := s.nameIs(name)
		if !ok {
			return ""
		}
		s.space()
		if !s.eat(':') {
			return ""
		}
		s.space()
		switch {
		case isName && s.i < len(s.b) && s.b[s.i] == '"':
			if found, ok = s.str(); !ok {
				return ""
			}
		case isName:
			found = "" // a model that is not a string names none
			fallthrough
		default:
			if !s.skip() {
				return ""
			}
		}
		s.space()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return s.end(found)
		}
		return ""
	}
}

// scanner walks JSON bytes; every method leaves i past what it read.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end is found when only whitespace follows the object.
func (s *scanner) end(found string) string {
	s.space()
	if s.i != len(s.b) {
		return ""
	}
	return found
}

// rawString reads a string's bytes, quotes included; escaped says whether
// it holds a backslash. False when there is no well-formed string here.
func (s *scanner) rawString() (raw []byte, escaped, ok bool) {
	if !s.eat('"') {
		return nil, false, false
	}
	start := s.i - 1
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start:s.i], escaped, true
		case c == '\\':
			escaped = true
			s.i += 2
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

// nameIs reads a member's name and says whether it is name, without
// copying it unless it must be unescaped.
func (s *scanner) nameIs(name string) (is, ok bool) {
	raw, escaped, ok := s.rawString()
	if !ok {
		return false, false
	}
	if !escaped && utf8.Valid(raw) {
		return string(raw[1:len(raw)-1]) == name, true
	}
	v, ok := unquote(raw)
	return v == name, ok
}

// str reads a string and unescapes it.
func (s *scanner) str() (string, bool) {
	raw, escaped, ok := s.rawString()
	if !ok {
		return "", false
	}
	if !escaped && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	return unquote(raw)
}

// unquote reads a string with escapes (or bytes that are not UTF-8),
// rare in a name or a model, as a provider's parser would: through
// encoding/json, on those few bytes only.
func unquote(raw []byte) (string, bool) {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// skip steps over one value: a string, an object or an array (its
// strings minded, so that a bracket inside one is not counted), or a
// number or literal (up to the next delimiter; the provider's parser
// refuses a malformed one, and with it the call).
func (s *scanner) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, _, ok := s.rawString()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, _, ok := s.rawString(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start
		}
		s.i++
	}
	return false
}
