package providers

import (
	"fmt"
	"strconv"
	"strings"
)

// keyRule is a key's format: loose enough to take every real key
// (providers change their formats), strict enough to catch a pasted
// sentence, a stray space or another provider's key.
type keyRule struct {
	prefixes       []string // the key starts with one of these (none: any)
	notPrefixes    []string // ...and not with one of these (another provider's)
	minLen, maxLen int
	allowed        func(byte) bool // every character after the prefix
	allowedText    string          // allowed, in words, for error messages
	// shape, when set, checks the whole key (a UUID) and says what is
	// wrong.
	shape func(string) string
}

// tokenRule is the common rule of keys made of letters, digits, '-' and
// '_', starting with prefix (none: any).
func tokenRule(minLen, maxLen int, prefix ...string) keyRule {
	return keyRule{prefixes: prefix, minLen: minLen, maxLen: maxLen, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}
}

// check checks key; what names it in messages ("OpenAI key"). The error
// describes what is wrong without quoting the key.
func (r *keyRule) check(what, key string) error {
	reject := func(format string, args ...any) error {
		return refuse("%s %s", what, fmt.Sprintf(format, args...))
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
			quoted := make([]string, len(r.prefixes))
			for i, pre := range r.prefixes {
				quoted[i] = strconv.Quote(pre)
			}
			return reject("must start with %s", strings.Join(quoted, " or "))
		}
	}
	for _, not := range r.notPrefixes {
		if strings.HasPrefix(key, not) {
			return reject("starts with %q, which is another provider's key", not)
		}
	}
	for i := 0; i < len(body); i++ {
		if !r.allowed(body[i]) {
			return reject("may contain only %s (character %d is not one)", r.allowedText, len(key)-len(body)+i+1)
		}
	}
	if r.shape != nil {
		if why := r.shape(key); why != "" {
			return reject("%s", why)
		}
	}
	return nil
}

// uuidShape checks the 8-4-4-4-12 groups of a UUID.
func uuidShape(key string) string {
	for i := 0; i < len(key); i++ {
		dash := i == 8 || i == 13 || i == 18 || i == 23
		if dash != (key[i] == '-') {
			return "is not a UUID (hexadecimal digits in groups of 8-4-4-4-12)"
		}
	}
	return ""
}

// oneDot checks an id.secret key: one '.', not at either end.
func oneDot(key string) string {
	i := strings.IndexByte(key, '.')
	if i <= 0 || i == len(key)-1 || strings.Count(key, ".") != 1 {
		return "must be two parts joined by one '.'"
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
func isAlnumOrDot(c byte) bool { return isAlnum(c) || c == '.' }
func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
func isHexOrDash(c byte) bool {
	return isHexDigit(c) || c == '-'
}
func isTokenChar(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }
