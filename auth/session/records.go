package session

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keybroker/keybroker/ids"
)

// Via says where a session was opened, which sets its timeouts.
type Via string

const (
	// ViaPage: the page's sign-in, carried in its cookie.
	ViaPage Via = "page"
	// ViaCLI: `keybroker login`, kept in the user's config folder.
	ViaCLI Via = "cli"
)

// Person is who signed in, as the identity provider's ID token says: the
// issuer and subject name the person for good; name and email are for
// people to read (the audit trail, the page), and may be "".
type Person struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Name    string `json:"name,omitempty"`
	Email   string `json:"email,omitempty"`
}

// Bounds of a Person's fields (the table's CHECKs say the same; OpenID
// Connect bounds a subject to 255 ASCII characters).
const (
	MaxIssuerLen  = 512
	MaxSubjectLen = 255
	MaxNameLen    = 200
	MaxEmailLen   = 320
	// MaxReasonLen bounds an end's reason.
	MaxReasonLen = 200
	// MaxScopes bounds the workspaces and organizations of one session's
	// grants together.
	MaxScopes = 1000
	// MaxSourceLen bounds one "where it came from" entry, MaxSources their
	// number per grant.
	MaxSourceLen = 300
	MaxSources   = 20
)

// Role is what a person may do in a workspace or organization.
type Role string

const (
	// RoleAdmin manages the scope's keys.
	RoleAdmin Role = "admin"
	// RoleReader reads the scope's key metadata.
	RoleReader Role = "reader"
)

// Grant is a role in one scope and where it came from: the groups or
// claims of the ID token that the mapping turned into it (e.g.
// `group:kb-ws-acme-admin`), which `whoami` and the page show.
type Grant struct {
	Role Role     `json:"role"`
	From []string `json:"from,omitempty"`
}

// Grants are a person's roles as mapped at sign-in. They are signed with
// the row: a change by anyone but keybroker makes the session refused.
type Grants struct {
	// Operator makes the person an operator; OperatorFrom says why.
	Operator     bool     `json:"operator,omitempty"`
	OperatorFrom []string `json:"operatorFrom,omitempty"`
	// Workspaces and Organizations map a scope's id to the person's role
	// in it.
	Workspaces    map[string]Grant `json:"workspaces,omitempty"`
	Organizations map[string]Grant `json:"organizations,omitempty"`
}

// Empty says whether g grants nothing (a person with no role is refused
// at sign-in).
func (g Grants) Empty() bool {
	return !g.Operator && len(g.Workspaces) == 0 && len(g.Organizations) == 0
}

// Canonical is g's one encoding: what the store keeps as jsonb and what
// the signature covers (encoding/json writes map keys sorted, so equal
// grants encode alike whatever order they were built or stored in).
func (g Grants) Canonical() ([]byte, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return nil, fmt.Errorf("encode grants: %w", err)
	}
	return b, nil
}

// Validate says what is wrong with g, if anything.
func (g Grants) Validate() error {
	if g.Empty() {
		return fmt.Errorf("%w: no role: a person without one is not signed in", ErrInvalid)
	}
	if !g.Operator && len(g.OperatorFrom) > 0 {
		return fmt.Errorf("%w: operatorFrom without operator", ErrInvalid)
	}
	if err := validSources("operator", g.OperatorFrom); err != nil {
		return err
	}
	if len(g.Workspaces)+len(g.Organizations) > MaxScopes {
		return fmt.Errorf("%w: more than %d workspaces and organizations", ErrInvalid, MaxScopes)
	}
	for kind, m := range map[string]map[string]Grant{"workspace": g.Workspaces, "organization": g.Organizations} {
		for id, gr := range m {
			if !ids.Valid(id) {
				return fmt.Errorf("%w: %s", ErrInvalid, ids.Message(kind))
			}
			if gr.Role != RoleAdmin && gr.Role != RoleReader {
				return fmt.Errorf("%w: %s %s: role %q (admin, reader)", ErrInvalid, kind, id, gr.Role)
			}
			if err := validSources(kind+" "+id, gr.From); err != nil {
				return err
			}
		}
	}
	return nil
}

func validSources(what string, from []string) error {
	if len(from) > MaxSources {
		return fmt.Errorf("%w: %s: more than %d sources", ErrInvalid, what, MaxSources)
	}
	for _, f := range from {
		if err := validText(what+" source", f, 1, MaxSourceLen); err != nil {
			return err
		}
	}
	return nil
}

// validText checks a field that goes to PostgreSQL, logs and pages:
// valid UTF-8, no control characters, within its bounds (in characters).
func validText(what, s string, minLen, maxLen int) error {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	case n < minLen:
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case n > maxLen:
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, what, maxLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%w: %s contains a control character", ErrInvalid, what)
	}
	return nil
}

// Validate says what is wrong with p, if anything.
func (p Person) Validate() error {
	if err := validText("issuer", p.Issuer, 1, MaxIssuerLen); err != nil {
		return err
	}
	if err := validText("subject", p.Subject, 1, MaxSubjectLen); err != nil {
		return err
	}
	if err := validText("name", p.Name, 0, MaxNameLen); err != nil {
		return err
	}
	return validText("email", p.Email, 0, MaxEmailLen)
}

// Record is a session as the store keeps it: the SHA-256 of its token,
// never the token. Its String and LogValue show neither the hash nor the
// signature, and its JSON leaves them out.
type Record struct {
	ID     string `json:"id"`
	Hash   []byte `json:"-"`
	Person Person `json:"person"`
	// Grants are shared with the service's memory: callers must not
	// change them.
	Grants Grants `json:"grants"`
	Via    Via    `json:"via"`

	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	// IdleExpiresAt moves with use (a touch, at most once a minute);
	// ExpiresAt, the absolute end, never moves.
	IdleExpiresAt time.Time  `json:"idleExpiresAt"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	EndedAt       *time.Time `json:"endedAt,omitempty"`
	EndedReason   string     `json:"endedReason,omitempty"`

	// KeyID names the key of Signature, keybroker's HMAC over what the
	// row grants (rowMessage).
	KeyID     string `json:"-"`
	Signature []byte `json:"-"`
}

// Active says whether the session may be used at now.
func (r Record) Active(now time.Time) bool {
	return r.EndedAt == nil && now.Before(r.IdleExpiresAt) && now.Before(r.ExpiresAt)
}

// String names the session without its hash or signature.
func (r Record) String() string {
	state := "active"
	if r.EndedAt != nil {
		state = "ended (" + r.EndedReason + ")"
	}
	return fmt.Sprintf("session %s of %s at %s via %s, %s, expires %s", r.ID, r.Person.Subject, r.Person.Issuer, r.Via,
		state, r.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString is String: %#v shows no hash either.
func (r Record) GoString() string { return r.String() }

// LogValue is what slog writes of a session: no hash, no signature, and
// of the person only the issuer and subject.
func (r Record) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("id", r.ID), slog.String("issuer", r.Person.Issuer),
		slog.String("subject", r.Person.Subject), slog.String("via", string(r.Via)),
		slog.Time("expires_at", r.ExpiresAt)}
	if r.EndedAt != nil {
		attrs = append(attrs, slog.Time("ended_at", *r.EndedAt), slog.String("ended_reason", r.EndedReason))
	}
	return slog.GroupValue(attrs...)
}
