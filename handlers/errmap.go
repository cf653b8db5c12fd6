package handlers

import (
	"errors"
	"net/http"
	"time"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/ids"
)

func unavailable(cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "a dependency of keybroker is unavailable; retry later", RetryAfter: 5 * time.Second, Cause: cause}
}

// domainError maps an error of package broker onto the API's. Messages of
// 4xx answers come from the broker's input checks, which name ids and rules
// and never a key; 5xx answers carry a fixed message, the cause is logged.
func domainError(err error) *Error {
	e := &Error{Cause: err}
	switch {
	case errors.Is(err, broker.ErrInvalidID):
		e.Status, e.Code, e.Message = http.StatusBadRequest, "invalid_id", "workspace and provider ids must match "+ids.Rule
	case errors.Is(err, broker.ErrUnknownProvider):
		e.Status, e.Code, e.Message = http.StatusBadRequest, "unknown_provider", "this provider is not supported (see GET /v1/providers)"
	case errors.Is(err, broker.ErrInvalidKey):
		e.Status, e.Code, e.Message = http.StatusUnprocessableEntity, "key_rejected", broker.PublicReason(err)
	case errors.Is(err, broker.ErrInvalidRequest):
		e.Status, e.Code, e.Message = http.StatusBadRequest, "invalid_request", broker.PublicReason(err)
	case errors.Is(err, broker.ErrNoKey):
		e.Status, e.Code, e.Message = http.StatusNotFound, "no_key", "the workspace has no key for this provider and there is no hosted key"
		var nk *broker.NoKeyError
		if errors.As(err, &nk) {
			e.Reason = nk.Reason
			if nk.Reason == broker.ReasonHostedFallbackOff {
				e.Message = "the workspace has no key for this provider, and its settings turn the hosted fallback off"
			}
		}
	case errors.Is(err, broker.ErrNotFound):
		e.Status, e.Code, e.Message = http.StatusNotFound, "not_found", "no such key or version"
	case errors.Is(err, broker.ErrPreconditionFailed):
		e.Status, e.Code, e.Message = http.StatusPreconditionFailed, "precondition_failed", "the key's current version is not the one in If-Match"
	case errors.Is(err, broker.ErrConflict):
		e.Status, e.Code, e.Message = http.StatusConflict, "conflict", "a concurrent write to this key won; read it and try again"
	case errors.Is(err, broker.ErrNotConfigured):
		e.Status, e.Code, e.Message = http.StatusNotImplemented, "not_available_in_mode",
			"this keybroker does not hold the Vault identity this needs (rollback reads the old version with the reader identity: use --mode=all)"
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrForbidden):
		return unavailable(err)
	default:
		e.Status, e.Code, e.Message = http.StatusInternalServerError, "internal_error", "internal error"
	}
	return e
}
