package broker

import (
	"fmt"
	"sort"
	"strings"
)

// Provider is a model or tool provider whose API keys keybroker holds.
type Provider struct {
	// ID is the provider's id in paths and the API ("openai").
	ID string
	// DisplayName is for people ("OpenAI").
	DisplayName string
	// FormatHint tells an admin what a key looks like.
	FormatHint string

	rule keyRule
}

// keyRule is a provider's key format: loose enough to take every real key
// (providers change their formats), strict enough to catch a pasted
// sentence, a stray space or another provider's key.
type keyRule struct {
	prefixes       []string // the key starts with one of these (none: any)
	minLen, maxLen int
	allowed        func(byte) bool // every character after the prefix
	allowedText    string          // allowed, in words, for error messages
}

// defaultProviders is the registry. Adding a provider is one entry.
var defaultProviders = []Provider{
	{ID: "openai", DisplayName: "OpenAI", FormatHint: `starts with "sk-"`,
		rule: keyRule{prefixes: []string{"sk-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "anthropic", DisplayName: "Anthropic", FormatHint: `starts with "sk-ant-"`,
		rule: keyRule{prefixes: []string{"sk-ant-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "google", DisplayName: "Google AI (Gemini)", FormatHint: `starts with "AIza", 39 characters`,
		rule: keyRule{prefixes: []string{"AIza"}, minLen: 30, maxLen: 64, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "mistral", DisplayName: "Mistral AI", FormatHint: "32 letters and digits",
		rule: keyRule{minLen: 20, maxLen: 128, allowed: isAlnum, allowedText: "letters and digits"}},
	{ID: "exa", DisplayName: "Exa", FormatHint: "a UUID, 36 characters",
		rule: keyRule{minLen: 20, maxLen: 128, allowed: isAlnumOrDash, allowedText: "letters, digits and '-'"}},
}

// Registry is the set of supported providers.
type Registry struct {
	byID map[string]*Provider
	list []Provider
}

// DefaultRegistry returns the built-in providers.
func DefaultRegistry() *Registry { return NewRegistry(defaultProviders...) }

// NewRegistry builds a registry of the given providers.
func NewRegistry(providers ...Provider) *Registry {
	r := &Registry{byID: make(map[string]*Provider, len(providers))}
	r.list = append(r.list, providers...)
	sort.Slice(r.list, func(i, j int) bool { return r.list[i].ID < r.list[j].ID })
	for i := range r.list {
		r.byID[r.list[i].ID] = &r.list[i]
	}
	return r
}

// Lookup returns the provider with id.
func (r *Registry) Lookup(id string) (*Provider, bool) {
	p, ok := r.byID[id]
	return p, ok
}

// All returns every provider, sorted by id.
func (r *Registry) All() []Provider { return append([]Provider(nil), r.list...) }

// ValidateKey checks key against the provider's format rule. The error
// describes what is wrong without quoting the key.
func (p *Provider) ValidateKey(key string) error {
	reject := func(format string, args ...any) error {
		return refuse(ErrInvalidKey, "%s key %s", p.DisplayName, fmt.Sprintf(format, args...))
	}
	if key == "" {
		return reject("is empty")
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return reject("contains whitespace (at character %d); paste the key alone", i+1)
		case c < 0x20 || c == 0x7f:
			return reject("contains a control character (at character %d)", i+1)
		case c >= 0x80:
			return reject("contains a non-ASCII character (at character %d)", i+1)
		}
	}
	r := p.rule
	if len(key) < r.minLen || len(key) > r.maxLen {
		return reject("is %d characters long; expected %d to %d", len(key), r.minLen, r.maxLen)
	}
	body := key
	if len(r.prefixes) > 0 {
		matched := false
		for _, pre := range r.prefixes {
			if strings.HasPrefix(key, pre) {
				body, matched = key[len(pre):], true
				break
			}
		}
		if !matched {
			return reject("must start with %q", strings.Join(r.prefixes, `" or "`))
		}
	}
	for i := 0; i < len(body); i++ {
		if !r.allowed(body[i]) {
			return reject("may contain only %s (character %d is not one)", r.allowedText, len(key)-len(body)+i+1)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
func isAlnumOrDash(c byte) bool { return isAlnum(c) || c == '-' }
func isTokenChar(c byte) bool   { return isAlnum(c) || c == '-' || c == '_' }
