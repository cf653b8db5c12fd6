package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/keybroker/keybroker/internal/devenv"
)

// WaitReady polls url (e.g. a keybroker's /readyz) until it answers 200,
// and fails the test with describe's text (the server's log, say) when it
// has not within within.
func WaitReady(t testing.TB, url string, within time.Duration, describe func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := devenv.WaitHTTP(ctx, url, nil, nil); err != nil {
		text := ""
		if describe != nil {
			text = describe()
		}
		t.Fatalf("testenv: %v\n%s", err, text)
	}
}
