package providers

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Derived is a short-lived credential minted from a long-lived one: an STS
// session from an AWS key pair, an Entra access token from a client
// secret, a Google access token from a service account. Its Credential
// has the kind of the long-lived one and the fields the caller needs to
// call the provider (never the long-lived secret); ExpiresAt is when the
// provider stops taking it.
//
// A zero ExpiresAt says the Deriver minted nothing: the credential it
// returns (an Azure or Bedrock API key) is handed out as it is, and kept
// until the key changes.
type Derived struct {
	Credential Credential
	ExpiresAt  time.Time
}

// MintEnv is what a Deriver may use: the HTTP client to reach the token
// services, and where they are (Endpoints, by name: "sts", "entra",
// "google_token"; a missing name means the service's public address).
type MintEnv struct {
	HTTP      *http.Client
	Endpoints map[string]string
}

// Endpoint is the configured address of the token service name, or def.
func (e MintEnv) Endpoint(name, def string) string {
	if u := e.Endpoints[name]; u != "" {
		return u
	}
	return def
}

// Deriver mints a short-lived credential from c (a credential of the
// provider's kind, validated). It is called on a cache miss, at most once
// at a time per key (the broker's singleflight), and by a key check (the
// check's Authorize then gets the minted credential, as the proxy's
// does); its errors never carry a field's value. An error that wraps
// ErrMintRefused says the token service refused the credential (a key
// check's verdict is then refused); any other, that it could not be asked
// or answered otherwise (unreachable).
type Deriver func(ctx context.Context, env MintEnv, c Credential) (Derived, error)

// ErrMintRefused: the token service refused the long-lived credential (a
// wrong secret, an unknown client, a role it may not assume).
var ErrMintRefused = errors.New("the token service refused the credential")

// FieldType is how a credential field is written in the API.
type FieldType string

const (
	// FieldString is a JSON string (the default).
	FieldString FieldType = ""
	// FieldMap is a JSON object of strings (Azure's deployments, model →
	// deployment name; Bedrock's modelMap). In a Credential and in Vault
	// its value is that object as canonical JSON (keys sorted, no spaces).
	FieldMap FieldType = "map"
)
