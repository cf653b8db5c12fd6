package vault

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// How a call that Vault did not handle is retried within the client's
// timeout: jittered, doubling delays.
const (
	firstRetryDelay = 50 * time.Millisecond
	maxRetryDelay   = 500 * time.Millisecond
	// minAttempt is the least time left worth another attempt.
	minAttempt = 100 * time.Millisecond
)

// retryPolicy says which failures of an operation are tried again.
type retryPolicy int

const (
	// retryNever: health checks answer at once, whatever Vault says.
	retryNever retryPolicy = iota
	// retryUnhandled: only answers that prove the request was not
	// applied (no connection, a standby's redirect, a sealed or standby
	// node, no active node yet). For writes that are not idempotent: a
	// check-and-set write whose answer was lost must not be sent twice.
	retryUnhandled
	// retryUnavailable: any unavailability (also a timeout or a reset
	// mid-request, a 5xx): reads, deletes and logins, which may be repeated.
	retryUnavailable
)

func retryPolicyOf(op string) retryPolicy {
	switch op {
	case "sys_health", "sys_mounts":
		return retryNever
	case "kv_put":
		return retryUnhandled
	}
	return retryUnavailable
}

type retryKey struct{}

func withRetry(ctx context.Context, p retryPolicy) context.Context {
	return context.WithValue(ctx, retryKey{}, p)
}

func (p retryPolicy) retries(err error) bool {
	switch p {
	case retryUnhandled:
		return unhandled(err)
	case retryUnavailable:
		return unhandled(err) || (errors.Is(classify(err), ErrUnavailable) && statusOf(err) != http.StatusTooManyRequests)
	}
	return false
}

// unhandled reports whether err proves that Vault did not apply the
// request: the connection was refused, or a node answered that it is not
// the one to handle it (a standby's redirect, sealed, standby, or no
// active node known).
func unhandled(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	status := statusOf(err)
	switch {
	case status >= 300 && status < 400:
		return true // a standby's redirect to the active node
	case status == http.StatusServiceUnavailable || status == http.StatusInternalServerError:
		msg := strings.ToLower(err.Error())
		for _, s := range []string{"sealed", "standby", "node not active", "active cluster node not found", "no active node", "leadership"} {
			if strings.Contains(msg, s) {
				return true
			}
		}
	}
	return false
}
