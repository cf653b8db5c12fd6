package handlers

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// Error is an API error: the status and the code and message that are safe
// to show, plus the internal cause, which is only logged.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
	// Reason is a machine-readable detail of some codes (no_key: why no
	// scope could serve).
	Reason string
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

// renderError logs e once, with its cause, and writes the safe part.
func renderError(c *gin.Context, log *slog.Logger, e *Error) {
	attrs := []any{"status", e.Status, "code", e.Code, "path", c.FullPath()}
	if e.Cause != nil {
		attrs = append(attrs, "cause", e.Cause.Error())
	}
	if e.Status >= 500 {
		log.WarnContext(c.Request.Context(), "request failed", attrs...)
	} else {
		log.DebugContext(c.Request.Context(), "request refused", attrs...)
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int(e.RetryAfter.Round(time.Second)/time.Second)))
	}
	c.AbortWithStatusJSON(e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Reason: e.Reason}})
}
