package devenv

import (
	"regexp"
	"strings"
	"sync"
)

var (
	registeredMu sync.Mutex
	registered   []string
)

// RegisterSecret makes Redact hide s, a secret with no recognisable form
// (a dev server's root token, say).
func RegisterSecret(s string) {
	if len(s) < 8 {
		return
	}
	registeredMu.Lock()
	registered = append(registered, s)
	registeredMu.Unlock()
}

// secretPatterns match the secrets the dev servers and the tests handle:
// keybroker bearer and proxy tokens, the signing keyrings, Vault tokens (the dev root token included: it
// has the "hvs." form too), passwords in connection URLs, and AppRole
// secret ids where they are named.
var secretPatterns = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`kbt_[A-Za-z0-9_-]{8,}`), "kbt_[redacted]"},
	{regexp.MustCompile(`kbp_[A-Za-z0-9_-]{8,}`), "kbp_[redacted]"},
	{regexp.MustCompile(`hv[sbr]\.[A-Za-z0-9_.-]{8,}`), "hvs.[redacted]"},
	{regexp.MustCompile(`(://[^:/@\s]+:)[^@/\s]+@`), "${1}[redacted]@"},
	{regexp.MustCompile(`(?i)(secret[_-]?id["=: ]+)[0-9a-f-]{36}`), "${1}[redacted]"},
	{regexp.MustCompile(`(?i)(password["=: ]+)[^\s"&]+`), "${1}[redacted]"},
	{regexp.MustCompile(`((?:VAULT_TOKEN|KEYBROKER_TOKEN|KEYBROKER_RESOLVER_TOKEN|KEYBROKER_FINGERPRINT_PEPPER|KEYBROKER_ADMIN_TOKEN_KEYS|KEYBROKER_RESOLVER_KEYS)=)\S+`), "${1}[redacted]"},
}

// Redact replaces every secret it recognises in s.
func Redact(s string) string {
	registeredMu.Lock()
	for _, r := range registered {
		s = strings.ReplaceAll(s, r, "[redacted]")
	}
	registeredMu.Unlock()
	for _, p := range secretPatterns {
		s = p.re.ReplaceAllString(s, p.with)
	}
	return s
}
