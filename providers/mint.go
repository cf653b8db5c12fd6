package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// MintError is a failed mint of a derived credential: which token service
// (Service: "google_token", "entra"), what it answered (Status, 0 when it
// did not answer; Code, its OAuth 2.0 error code such as invalid_grant or
// invalid_client), and whether it refused the long-lived credential
// (Refused) rather than failing. Its text carries neither the credential
// nor the token service's own description (which may quote an id).
type MintError struct {
	Service string
	Status  int
	Code    string
	Refused bool
	// Err is the transport failure when the service did not answer.
	Err error
}

func (e *MintError) Error() string {
	switch {
	case e.Status == 0 && e.Err != nil:
		return fmt.Sprintf("providers: the %s token service could not be reached: %v", e.Service, e.Err)
	case e.Refused:
		return fmt.Sprintf("providers: the %s token service refused the credential (answered %d %s)", e.Service, e.Status, e.Code)
	default:
		return fmt.Sprintf("providers: the %s token service failed (answered %d %s)", e.Service, e.Status, e.Code)
	}
}

func (e *MintError) Unwrap() error { return e.Err }

// Is makes a refusal match ErrMintRefused.
func (e *MintError) Is(target error) bool { return target == ErrMintRefused && e.Refused }

// mintContext is ctx carrying env's HTTP client for golang.org/x/oauth2.
func mintContext(ctx context.Context, env MintEnv) context.Context {
	if env.HTTP != nil {
		return context.WithValue(ctx, oauth2.HTTPClient, env.HTTP)
	}
	return ctx
}

// mintFailure turns an error of golang.org/x/oauth2 into a *MintError
// that quotes nothing the token service said but its status and error
// code (a word of RFC 6749's vocabulary, checked as one).
func mintFailure(service string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		// The transport's error names the URL and the network failure;
		// a context error stays one.
		return &MintError{Service: service, Err: transportCause(err)}
	}
	code := re.ErrorCode
	if code == "" {
		code = oauthErrorCode(re.Body)
	}
	if !isOAuthCode(code) {
		code = ""
	}
	// The token service's 400, 401 and 403 are about the credential (an
	// assertion it does not verify, a client or tenant it does not know,
	// a wrong secret): the key is refused. Other answers are its failures.
	s := re.Response.StatusCode
	refused := s == http.StatusBadRequest || s == http.StatusUnauthorized || s == http.StatusForbidden
	return &MintError{Service: service, Status: s, Code: code, Refused: refused}
}

// transportCause keeps a context error as it is and names any other
// failure in words (an error of the oauth2 package may quote the token
// service's answer).
func transportCause(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return context.Canceled
	}
	return errors.New(describe(err, 0))
}

// oauthErrorCode reads the "error" member of an OAuth 2.0 error answer.
func oauthErrorCode(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error
}

func isOAuthCode(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// expiry is a token's expiry, or a short one when the service gave none
// (a token without an expiry would be cached until the key changes).
func expiry(t *oauth2.Token) time.Time {
	if t.Expiry.IsZero() {
		return time.Now().Add(5 * time.Minute)
	}
	return t.Expiry
}
