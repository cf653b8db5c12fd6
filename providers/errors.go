package providers

import (
	"errors"
	"fmt"
)

// ErrInvalidKey: a credential breaks its provider's format rule or field
// schema (422 to callers). The message says what is wrong, never a value.
var ErrInvalidKey = errors.New("key rejected")

// RefusalError is ErrInvalidKey with a reason that is safe to show to the
// caller: it names fields and rules, never a value.
type RefusalError struct {
	Reason string
}

func (e *RefusalError) Error() string { return ErrInvalidKey.Error() + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidKey) hold.
func (e *RefusalError) Unwrap() error { return ErrInvalidKey }

func refuse(format string, args ...any) error {
	return &RefusalError{Reason: fmt.Sprintf(format, args...)}
}

// PublicReason is the caller-safe reason of a refusal made here, or "".
func PublicReason(err error) string {
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}
