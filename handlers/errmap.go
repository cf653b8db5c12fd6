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
		e.Status, e.Code, e.Message = http.StatusBadRequest, "invalid_id", "workspace, organization, provider and key ids must match "+ids.Rule
	case errors.Is(err, broker.ErrUnknownProvider):
		e.Status, e.Code, e.Message = http.StatusBadRequest, "unknown_provider", "this provider is not supported (see GET /v1/providers)"
	case errors.Is(err, broker.ErrInvalidKey):
		e.Status, e.Code, e.Message = http.StatusUnprocessableEntity, "key_rejected", broker.PublicReason(err)
	case errors.Is(err, broker.ErrVerificationFailed):
		e.Status, e.Code, e.Message = http.StatusUnprocessableEntity, "key_verification_failed", broker.PublicReason(err)
	case errors.Is(err, broker.ErrUnknownResolution):
		e.Status, e.Code, e.Message = http.StatusNotFound, "unknown_resolution",
			"no resolution of this token has this id in the last hour (ids are bound to the token that resolved)"
	case errors.Is(err, broker.ErrInvalidRequest):
		e.Status, e.Code, e.Message = http.StatusBadRequest, "invalid_request", broker.PublicReason(err)
	case errors.Is(err, broker.ErrKeysCoolingDown):
		// As the provider itself would answer: an SDK backs off and
		// retries a 429 with Retry-After (a 404 it does not retry).
		e.Status, e.Code, e.RetryAfter = http.StatusTooManyRequests, "keys_cooling_down", time.Second
		e.Message = "every key that could serve this call is cooling down after the provider rate limited it or failed; retry after Retry-After seconds"
		var cd *broker.CoolingDownError
		if errors.As(err, &cd) {
			e.Reason, e.RetryAfter = cd.Reason, max(cd.RetryAfter, time.Second)
			switch cd.Reason {
			case broker.ReasonWorkspaceKeysCoolingDown:
				e.Message = "the workspace's keys for this provider are cooling down (and nothing else may serve); retry after Retry-After seconds"
			case broker.ReasonOrganizationKeysCoolingDown:
				e.Message = "the organization's keys for this provider are cooling down (and nothing else may serve); retry after Retry-After seconds"
			case broker.ReasonHostedKeysCoolingDown:
				e.Message = "the platform's hosted keys for this provider are cooling down (and nothing else may serve); retry after Retry-After seconds"
			}
		}
	case errors.Is(err, broker.ErrMintFailed):
		e.Status, e.Code = http.StatusBadGateway, "credential_mint_failed"
		e.Message = "the provider's token service did not mint a short-lived credential from the key (the cause is in keybroker's log)"
	case errors.Is(err, broker.ErrMintBusy):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "credential_mint_busy", time.Second
		e.Message = "this keybroker is minting as many short-lived credentials as it may at once; retry after Retry-After seconds"
	case errors.Is(err, broker.ErrNoKey):
		e.Status, e.Code, e.Message = http.StatusNotFound, "no_key", "no key may serve: the workspace (and its organization) have no usable key for this provider and there is no hosted key"
		var nk *broker.NoKeyError
		if errors.As(err, &nk) {
			e.Reason = nk.Reason
			switch nk.Reason {
			case broker.ReasonHostedFallbackOff:
				e.Message = "the workspace (and its organization) have no usable key for this provider, and its settings turn the hosted fallback off"
			case broker.ReasonNoKeyAllowsModel:
				e.Message = "no key this workspace may use allows this model (keys limited to other models were skipped)"
			case broker.ReasonHostedKeysUnavailable:
				e.Message = "no usable key: the platform's hosted keys for this provider are all disabled"
			}
		}
	case errors.Is(err, broker.ErrPoolFull):
		e.Status, e.Code, e.Message = http.StatusConflict, "pool_full", "the pool holds the most keys it may (KEYBROKER_MAX_KEYS_PER_POOL): delete one first"
	case errors.Is(err, broker.ErrLegacyLayout):
		e.Status, e.Code, e.Message = http.StatusConflict, "legacy_layout",
			"this key is still stored where keybroker v1 kept it: an operator runs `keybroker vault migrate-layout` first"
	case errors.Is(err, broker.ErrKeyExists):
		e.Status, e.Code, e.Message = http.StatusConflict, "conflict", "the pool already has a key with this keyId: PUT rotates it"
	case errors.Is(err, broker.ErrNotFound):
		e.Status, e.Code, e.Message = http.StatusNotFound, "not_found", "no such key or version"
	case errors.Is(err, broker.ErrPreconditionFailed):
		e.Status, e.Code, e.Message = http.StatusPreconditionFailed, "precondition_failed", "the key's current version is not the one in If-Match"
	case errors.Is(err, broker.ErrRotationRunning):
		e.Status, e.Code, e.Message = http.StatusConflict, "rotation_running", "a rotation of this key at its provider is running (GET .../rotations)"
	case errors.Is(err, broker.ErrConflict):
		e.Status, e.Code, e.Message = http.StatusConflict, "conflict", "a concurrent write to this key won; read it and try again"
	case errors.Is(err, broker.ErrNotConfigured):
		e.Status, e.Code, e.Message = http.StatusNotImplemented, "not_available_in_mode",
			"this keybroker does not hold the Vault identity this needs (rollback, and rotation and revocation at the provider, read with the reader identity: use --mode=all)"
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrForbidden):
		return unavailable(err)
	default:
		e.Status, e.Code, e.Message = http.StatusInternalServerError, "internal_error", "internal error"
	}
	return e
}
