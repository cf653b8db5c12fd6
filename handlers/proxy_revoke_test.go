package handlers_test

import (
	"net/http"
	"testing"

	"github.com/keybroker/keybroker/client"
)

// A proxy token ends one by one: the resolver token that minted it revokes
// it by presenting it, an operator by its id; from then on the proxy refuses
// it while its siblings keep working. Nobody else can end it, and a
// revocation cannot be repeated.
func TestProxyTokensAreRevokedOneByOne(t *testing.T) {
	provider := newStandIn(t)
	a := newProxyAPI(t, map[string]string{"openai": provider.srv.URL})
	a.addPoolKey("ws1", "openai", "a", openaiTestKey("revoke"), 0)
	mint := func() client.ProxyToken {
		return a.mintProxyToken("resolver", client.ProxyTokenRequest{Workspace: "ws1", Providers: []string{"openai"}, TTLSeconds: 600})
	}
	call := func(tok client.ProxyToken) int {
		resp, _ := a.proxyCall("POST", "/proxy/openai/v1/chat/completions", `{"model":"gpt-4o"}`, "Authorization", "Bearer "+tok.Token)
		return resp.StatusCode
	}
	first, second, third := mint(), mint(), mint()
	for _, tok := range []client.ProxyToken{first, second, third} {
		if got := call(tok); got != http.StatusOK {
			t.Fatalf("a fresh proxy token: %d", got)
		}
	}

	// Only its issuer may end it: another resolver token, an operator (it
	// holds no proxy-token key on an admin replica; here it is simply not
	// the issuer) and the proxy token itself get no revocation.
	for _, as := range []string{"resolver2", "operator", "admin", first.Token} {
		r := a.call(as, "POST", "/v1/proxy-tokens/revoke", client.RevokeProxyTokenRequest{Token: first.Token})
		if r.status == http.StatusNoContent {
			t.Fatalf("%.12s… revoked another's proxy token", as)
		}
	}
	if got := call(first); got != http.StatusOK {
		t.Fatalf("refused revocations ended the token: %d", got)
	}

	if r := a.call("resolver", "POST", "/v1/proxy-tokens/revoke", client.RevokeProxyTokenRequest{Token: first.Token}); r.status != http.StatusNoContent {
		t.Fatalf("the issuer's revocation: %d %s", r.status, r.body)
	}
	if got := call(first); got != http.StatusUnauthorized {
		t.Fatalf("a revoked proxy token: %d, want 401", got)
	}
	if got := call(second); got != http.StatusOK {
		t.Fatalf("its sibling stopped working: %d", got)
	}
	if r := a.call("resolver", "POST", "/v1/proxy-tokens/revoke", client.RevokeProxyTokenRequest{Token: first.Token}); r.status != http.StatusNotFound {
		t.Fatalf("a second revocation: %d %s", r.status, r.body)
	}

	// An operator ends one by the id the records of proxied calls show.
	for _, c := range []struct {
		as, id string
		want   int
	}{
		{"admin", second.ID, http.StatusForbidden},
		{"resolver", second.ID, http.StatusForbidden},
		{"operator", "ptk_NOTHEX", http.StatusBadRequest},
		{"operator", second.ID, http.StatusNoContent},
		{"operator", second.ID, http.StatusNotFound},
	} {
		if r := a.call(c.as, "DELETE", "/v1/proxy-tokens/"+c.id, nil); r.status != c.want {
			t.Fatalf("DELETE as %s of %s: %d %s, want %d", c.as, c.id, r.status, r.body, c.want)
		}
	}
	if got := call(second); got != http.StatusUnauthorized {
		t.Fatalf("a proxy token an operator revoked: %d, want 401", got)
	}
	if got := call(third); got != http.StatusOK {
		t.Fatalf("the third token stopped working: %d", got)
	}

	// Bad input changes nothing.
	for _, body := range []any{`{"token":`, `{"token":"kbp_x","extra":1}`, client.RevokeProxyTokenRequest{Token: "kbp_AAAA"}} {
		if r := a.call("resolver", "POST", "/v1/proxy-tokens/revoke", body); r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
			t.Fatalf("revoke with %v: %d %s", body, r.status, r.body)
		}
	}
	if got := call(third); got != http.StatusOK {
		t.Fatalf("bad revocations ended a token: %d", got)
	}
	// Each revocation is in the workspace's trail (the issuer's) or the
	// operator-wide one (by id), never with the token itself.
	var n int
	if err := a.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = 'proxy_token.revoke'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d revocation events (%v), want 2", n, err)
	}
}
