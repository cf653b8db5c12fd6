package devenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrExited: the process WaitHTTP waited for ended first.
var ErrExited = errors.New("the process exited")

// WaitHTTP polls url with GET until its status satisfies ok (nil: 200 OK),
// the channel exited is closed (ErrExited; nil: never), or ctx ends. It is
// the one readiness poll of the dev servers, the tests and the benchmark's
// child processes.
func WaitHTTP(ctx context.Context, url string, ok func(status int) bool, exited <-chan struct{}) error {
	return WaitHTTPWith(ctx, &http.Client{Timeout: 2 * time.Second}, url, ok, exited)
}

// WaitHTTPWith is WaitHTTP with the given client (TLS settings, client
// certificates).
func WaitHTTPWith(ctx context.Context, client *http.Client, url string, ok func(status int) bool, exited <-chan struct{}) error {
	if ok == nil {
		ok = func(status int) bool { return status == http.StatusOK }
	}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if ok(resp.StatusCode) {
				return nil
			}
			err = fmt.Errorf("answered %s", resp.Status)
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("wait for %s: %w", url, ErrExited)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (%v): %w", url, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
