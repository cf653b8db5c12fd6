package auth

import (
	"time"

	"github.com/keybroker/keybroker/broker"
)

// TokenRecord is an API token as auth keeps it: its SHA-256 hash, never the
// token. Package store stores it (auth knows nothing of Postgres rows).
type TokenRecord struct {
	ID   string
	Hash []byte
	// Role is the token's Role.
	Role       string
	Workspaces []string
	// Organizations an admin or reader token reaches.
	Organizations []string
	Description   string
	CreatedBy     string
	CreatedAt     time.Time
	ExpiresAt     *time.Time
	RevokedAt     *time.Time
	// KeyID names the signing key of Signature, keybroker's HMAC over what
	// the record grants (rowMessage); a record without one was not written
	// by keybroker v3 and is refused.
	KeyID     string
	Signature []byte
}

// RevokedProxyToken is a proxy token ended before its expiry, as stored.
type RevokedProxyToken struct {
	TokenID   string
	Workspace string
	ExpiresAt time.Time
	RevokedBy string
}

// TokenScopes are the trails a token's events go to: one per workspace and
// organization it reaches, or the operator-wide trail (the zero Scope)
// when it reaches none.
func TokenScopes(workspaces, organizations []string) []broker.Scope {
	var out []broker.Scope
	for _, ws := range workspaces {
		out = append(out, broker.WorkspaceScope(ws))
	}
	for _, org := range organizations {
		out = append(out, broker.OrganizationScope(org))
	}
	if len(out) == 0 {
		out = []broker.Scope{{}}
	}
	return out
}
