package vault

import (
	"errors"
	"net/http"

	"github.com/hashicorp/vault/api"
)

// Errors callers inspect with errors.Is. The *api.ResponseError, when there
// is one, stays in the chain for errors.As.
var (
	// ErrNotFound: no secret at the path, or its version is deleted or
	// destroyed. For a key, both mean "no key".
	ErrNotFound = errors.New("vault: secret not found")
	// ErrCASMismatch: a check-and-set write lost; the secret's current
	// version is not the one the write expected.
	ErrCASMismatch = errors.New("vault: check-and-set version mismatch")
	// ErrForbidden: Vault refused the token (after one re-login, for auth
	// methods that can log in again).
	ErrForbidden = errors.New("vault: permission denied")
	// ErrUnavailable: Vault could not be reached or could not answer: a
	// transport error, a deadline, a 5xx, a sealed or standby server, a 429.
	ErrUnavailable = errors.New("vault: unavailable")
	// ErrTokenInvalid: Vault answered but does not accept the client's token.
	ErrTokenInvalid = errors.New("vault token is not valid")
	// ErrNoValueField: a secret is there but has no string field
	// ValueField (written around keybroker under another name). It is also
	// ErrNotFound: there is no key to serve.
	ErrNoValueField = errors.New("vault: the secret has no " + ValueField + " field")
)

// classify adds the matching sentinel to err, keeping err in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, api.ErrSecretNotFound) {
		return errors.Join(ErrNotFound, err)
	}
	status := statusOf(err)
	switch {
	case status == http.StatusNotFound:
		return errors.Join(ErrNotFound, err)
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return errors.Join(ErrForbidden, err)
	case status == http.StatusTooManyRequests || status >= 500:
		return errors.Join(ErrUnavailable, err)
	case status == 0:
		// No HTTP answer at all: connection refused, reset, deadline.
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// statusOf returns the HTTP status of a Vault response error, or 0.
func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
