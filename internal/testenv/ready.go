package testenv

import (
	"net/http"
	"testing"
	"time"
)

// WaitReady polls url (e.g. a keybroker's /readyz) until it answers 200,
// and fails the test with describe's text (the server's log, say) when it
// has not within within.
func WaitReady(t testing.TB, url string, within time.Duration, describe func() string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	var lastErr error
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = &statusError{resp.StatusCode}
		}
		lastErr = err
		if time.Now().After(deadline) {
			text := ""
			if describe != nil {
				text = describe()
			}
			t.Fatalf("testenv: %s not ready within %v (%v)\n%s", url, within, lastErr, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "answered " + http.StatusText(e.status) }
