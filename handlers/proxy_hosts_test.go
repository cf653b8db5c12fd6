package handlers_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
)

// hostRouter is the network as the proxy sees it, for the clouds whose
// address is in the credential: a call to a host it knows goes to that
// host's stand-in, over plain HTTP on loopback, with the Host header the
// proxy addressed (and signed, for Bedrock) left as it was; a call to any
// other host fails. It keeps the hosts asked, in order.
type hostRouter struct {
	mu    sync.Mutex
	to    map[string]*url.URL
	asked []string
}

func newHostRouter(t *testing.T, hosts map[string]string) *hostRouter {
	t.Helper()
	h := &hostRouter{to: map[string]*url.URL{}}
	for host, target := range hosts {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		h.to[host] = u
	}
	return h
}

func (h *hostRouter) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	target, ok := h.to[r.URL.Hostname()]
	h.asked = append(h.asked, r.URL.Hostname())
	h.mu.Unlock()
	if !ok {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("no stand-in for host %s", r.URL.Hostname())
	}
	out := r.Clone(r.Context())
	if out.Host == "" {
		out.Host = r.URL.Host
	}
	out.URL.Scheme, out.URL.Host = target.Scheme, target.Host
	return http.DefaultTransport.RoundTrip(out)
}

// hosts are the hosts asked so far.
func (h *hostRouter) hosts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.asked)
}

// client is an HTTP client over the router (the token services').
func (h *hostRouter) client() *http.Client {
	return &http.Client{Transport: h, Timeout: 30 * time.Second}
}

// addCredentialKey adds a key of several fields to ws's pool of provider.
func (a *api) addCredentialKey(ws, provider, keyID string, priority int, cred map[string]any, models ...string) {
	a.t.Helper()
	if r := a.call("operator", "POST", "/v1/workspaces/"+ws+"/providers/"+provider+"/keys",
		client.AddKeyRequest{Credential: cred, KeyID: keyID, Priority: &priority, Models: models}); r.status != http.StatusCreated {
		a.t.Fatalf("add key %s: %d %s", keyID, r.status, r.body)
	}
}

// proxyCallsOf lists ws's proxied calls once n are recorded.
func (a *api) proxyCallsOf(ws string, n int) []client.ProxyCall {
	a.t.Helper()
	var page client.ProxyCallPage
	waitFor(a.t, fmt.Sprintf("%d proxied calls are listed", n), 5*time.Second, func() bool {
		r := a.call("reader", "GET", "/v1/workspaces/"+ws+"/proxy-calls", nil)
		page = client.ProxyCallPage{}
		r.decode(a.t, &page)
		return r.status == http.StatusOK && len(page.Calls) >= n
	})
	return page.Calls
}

// assertNothingHolds fails when any text holds any secret (or a line of
// one of 16 characters or more: a PEM key is checked line by line).
func assertNothingHolds(t *testing.T, what string, texts []string, secrets ...string) {
	t.Helper()
	for _, text := range texts {
		for _, s := range secrets {
			if s == "" {
				continue
			}
			for _, line := range append([]string{s}, strings.Split(s, "\n")...) {
				if len(line) >= 16 && strings.Contains(text, line) {
					t.Fatalf("%s holds a secret (%.6s...)", what, line)
				}
			}
		}
	}
}
