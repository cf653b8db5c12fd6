package assertion

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Assertion is a verified platform assertion: the platform, the person it
// acts for, and the roles it gives within the platform's registration.
type Assertion struct {
	// Platform is the registration's id.
	Platform string
	// Issuer and Subject identify the person at the platform.
	Issuer, Subject string
	// Name and Email are the person's, when given, without control
	// characters and bounded (128 and 254 bytes).
	Name, Email string
	// JTI is the assertion's id.
	JTI       string
	ExpiresAt time.Time
	// Workspaces and Organizations map ids to RoleAdmin or RoleReader;
	// nil when the assertion gives none.
	Workspaces, Organizations map[string]string
	// Dropped names the asserted scopes outside the registration
	// ("workspace:ws9", "organization:other"), sorted.
	Dropped []string
}

// MaxActorLen bounds Assertion.Actor.
const MaxActorLen = 512

// Actor names the platform and the person for the audit trail:
// "platform:<id>/<sub>", then " (Name <email>)", " (Name)" or " (<email>)"
// when given; without control characters and at most MaxActorLen bytes.
func (a Assertion) Actor() string {
	var b strings.Builder
	b.WriteString("platform:")
	b.WriteString(a.Platform)
	b.WriteByte('/')
	b.WriteString(clean(a.Subject, maxSubject))
	name, email := clean(a.Name, maxName), clean(a.Email, maxEmail)
	switch {
	case name != "" && email != "":
		b.WriteString(" (" + name + " <" + email + ">)")
	case name != "":
		b.WriteString(" (" + name + ")")
	case email != "":
		b.WriteString(" (<" + email + ">)")
	}
	return truncate(b.String(), MaxActorLen)
}

// hasControl says whether s has a control or format character (including
// bidirectional overrides) or is not UTF-8.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return true
		}
	}
	return false
}

// clean drops control and format characters and invalid UTF-8 from s,
// trims it, and bounds it to max bytes.
func clean(s string, max int) string {
	if !hasControl(s) {
		return truncate(strings.TrimSpace(s), max)
	}
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), max)
}

// truncate cuts s to at most max bytes on a rune boundary.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
