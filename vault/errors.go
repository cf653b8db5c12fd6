package vault

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

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
	// ErrNoValueField: a secret is there but lacks a string field its
	// credential requires (written around keybroker under another name).
	// It is also ErrNotFound: there is no key to serve. The error is a
	// *NoValueFieldError, which names the fields the secret has.
	ErrNoValueField = errors.New("vault: the secret lacks a field of its credential")
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
	case status >= 300 && status < 400:
		// A standby's redirect keybroker does not follow: the active node
		// is elsewhere (or being elected).
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

// NoValueFieldError is ErrNoValueField with the names (never the values)
// of the fields the secret has, so that a key written under another name
// can be found and fixed.
type NoValueFieldError struct {
	Field  string   // the field that is missing
	Fields []string // the fields there are: quoted, sorted
}

func (e *NoValueFieldError) Error() string {
	fields := "no fields"
	if len(e.Fields) > 0 {
		fields = "fields: " + strings.Join(e.Fields, ", ")
	}
	return fmt.Sprintf("field %q is missing or not a string (%s)", e.Field, fields)
}

// Is makes errors.Is hold for ErrNoValueField and ErrNotFound.
func (e *NoValueFieldError) Is(target error) bool {
	return target == ErrNoValueField || target == ErrNotFound
}

// FieldNames says which fields a secret without its credential's field
// has ("no fields" when none), or "" when err is not a NoValueFieldError.
func FieldNames(err error) string {
	var nf *NoValueFieldError
	if !errors.As(err, &nf) {
		return ""
	}
	if len(nf.Fields) == 0 {
		return "no fields"
	}
	return strings.Join(nf.Fields, ", ")
}
