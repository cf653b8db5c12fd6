package providers

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Anthropic's Admin API: an organization's admin key (sk-ant-admin...).
// It cannot create API keys; it reads one (GET
// /v1/organizations/api_keys/{id}) and sets its status (POST with
// {"status": "inactive"}): revocation at the provider.

// KindAnthropicAdmin is the credential kind of Anthropic's Admin API.
const KindAnthropicAdmin = "anthropic_admin"

func init() {
	register(Provider{ID: "anthropic-admin", DisplayName: "Anthropic Admin API", AdminOf: "anthropic",
		Credential: Schema{Kind: KindAnthropicAdmin, Fields: []Field{
			{Name: FieldAdminKey, VaultField: "admin_key", Secret: true, Required: true, Label: "Admin key",
				Hint: `an organization admin key: starts with "sk-ant-admin", 20 to 256 characters`, rule: ptrRule(tokenRule(20, 256, "sk-ant-admin"))},
		}},
		Authorize: fieldHeader(FieldAdminKey, "X-Api-Key", ""),
		Check: CheckSpec{BaseURL: "https://api.anthropic.com", Path: "/v1/organizations/api_keys?limit=1",
			Headers: map[string]string{"anthropic-version": "2023-06-01"}},
		Dev: New(KindAnthropicAdmin, map[string]string{FieldAdminKey: "sk-ant-admin01-FAKE-dev-key-not-real"}),
	})
}

// anthropicKeyAdmin revokes Anthropic keys (it cannot create them).
var anthropicKeyAdmin = &KeyAdmin{Provider: "anthropic-admin", Revoke: anthropicRevoke, Revokes: "deactivate", Describe: anthropicDescribe, Locate: anthropicLocate,
	KeyIDPrefix: "apikey_"}

func anthropicAuth(admin Credential) func(*http.Request) {
	return func(r *http.Request) {
		r.Header.Set("X-Api-Key", admin.Field(FieldAdminKey))
		r.Header.Set("Anthropic-Version", "2023-06-01")
	}
}

// anthropicDescribe reads a key's status and expiry (expires_at: an RFC
// 3339 time, or null for a key that does not expire).
func anthropicDescribe(ctx context.Context, env AdminEnv, admin Credential, id string) (KeyInfo, error) {
	var k struct {
		Status    string     `json:"status"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if err := adminCall(ctx, env, "read the API key", http.MethodGet, "/v1/organizations/api_keys/"+url.PathEscape(id), nil, anthropicAuth(admin), &k); err != nil {
		return KeyInfo{}, err
	}
	out := KeyInfo{Status: k.Status}
	if k.ExpiresAt != nil {
		out.ExpiresAt = k.ExpiresAt.UTC()
	}
	return out, nil
}

// anthropicLocate reads the key of id with the admin key (404 for a key
// of another organization) and its partial_key_hint.
func anthropicLocate(ctx context.Context, env AdminEnv, admin Credential, id string) (string, error) {
	var k struct {
		Hint string `json:"partial_key_hint"`
	}
	err := adminCall(ctx, env, "read the API key", http.MethodGet, "/v1/organizations/api_keys/"+url.PathEscape(id), nil, anthropicAuth(admin), &k)
	return k.Hint, err
}

func anthropicRevoke(ctx context.Context, env AdminEnv, admin Credential, id string) (Revoked, error) {
	auth := anthropicAuth(admin)
	path := "/v1/organizations/api_keys/" + url.PathEscape(id)
	var cur struct {
		Status string `json:"status"`
	}
	err := adminCall(ctx, env, "read the API key", http.MethodGet, path, nil, auth, &cur)
	if isAdminNotFound(err) {
		return Revoked{Action: "deactivated", AlreadyGone: true}, nil
	}
	if err != nil {
		return Revoked{}, err
	}
	if cur.Status == "inactive" || cur.Status == "archived" {
		return Revoked{Action: "deactivated", AlreadyGone: true}, nil
	}
	var after struct {
		Status string `json:"status"`
	}
	if err := adminCall(ctx, env, "deactivate the API key", http.MethodPost, path, map[string]string{"status": "inactive"}, auth, &after); err != nil {
		return Revoked{}, err
	}
	if after.Status != "inactive" {
		return Revoked{}, &AdminError{Op: "deactivate the API key", Status: http.StatusOK, Code: "status_not_inactive"}
	}
	return Revoked{Action: "deactivated"}, nil
}
