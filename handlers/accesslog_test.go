package handlers_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// TestAFloodOfRefusedRequestsWritesAFewAccessLines: over the real
// servers, 300 requests of a token over its rate and 300 with a wrong
// token from one address (refused once the address is over its failed
// authentications) write one 429 line each for the token and the address,
// not one per request.
func TestAFloodOfRefusedRequestsWritesAFewAccessLines(t *testing.T) {
	a := newAPI(t, handlers.ModeAll)
	var out testenv.SyncBuffer
	srv := httptest.NewServer(handlers.NewRouter(handlers.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Keys: a.ground.keys,
		Tokens: a.ground.tokens, AccessLogOutput: &out,
		Limiter: auth.NewLimiter(auth.RateLimits{PerToken: 0.001, PerTokenBurst: 1, FailedAuthPerAddr: 0.001, FailedAuthBurst: 1}, nil)}))
	t.Cleanup(srv.Close)
	const n = 300
	statuses := map[int]int{}
	var mu sync.Mutex
	// One flood after the other: the wrong token's blocks the address,
	// whose requests are then refused before any token is looked at.
	for _, token := range []string{a.tokens["resolver"], "kbt_" + strings.Repeat("x", 43)} {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n / 4 {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/providers", nil)
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					mu.Lock()
					statuses[resp.StatusCode]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	if statuses[http.StatusTooManyRequests] < 2*n-10 {
		t.Fatalf("answers %v: the limits did not refuse the flood", statuses)
	}
	logged := out.String()
	_, _ = logs.Write([]byte(logged)) // the leak check searches it too
	lines := strings.Count(logged, `"status":429`)
	if lines != 2 {
		t.Fatalf("%d access-log lines for %d refused requests, want 2 (one for the token, one for the address):\n%s",
			lines, statuses[http.StatusTooManyRequests], logged)
	}
	if !strings.Contains(logged, `"token_id":"`+a.ids["resolver"]+`"`) {
		t.Fatalf("the token's first refusal is not logged:\n%s", logged)
	}
	// The answers that were not refused are logged one by one as before.
	if got := strings.Count(logged, `"msg":"http request"`); got != 2+statuses[http.StatusOK]+statuses[http.StatusUnauthorized] {
		t.Fatalf("%d lines for %v", got, statuses)
	}
}
