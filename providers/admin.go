package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Admin APIs (docs/lifecycle.md): where a provider's admin API can create,
// delete or deactivate its keys, a scope may hold an admin credential — a
// credential of an admin provider (openai-admin, anthropic-admin), which
// is never resolved and never served by the credential proxy — and
// keybroker rotates and revokes the provider's keys with it. The admin
// providers are in the registry (Lookup finds them, Admins lists them)
// but not among the providers keys are resolved for (All).

// KeyAdmin is what a provider's admin API can do with the provider's keys.
type KeyAdmin struct {
	// Provider is the admin provider whose credential, in the key's own
	// scope, authorizes the calls.
	Provider string
	// Create makes a new key named name (nil: keys cannot be created
	// through the admin API): the key, once, and its id at the provider.
	Create func(ctx context.Context, env AdminEnv, admin Credential, name string) (CreatedKey, error)
	// Find lists the ids of the keys named name: after a crash between a
	// Create and its record, the key made is found and deleted. Nil when
	// Create is.
	Find func(ctx context.Context, env AdminEnv, admin Credential, name string) ([]string, error)
	// Revoke ends the key of id at the provider (OpenAI: the service
	// account is deleted; Anthropic: the key is set inactive). A key the
	// provider no longer has is revoked already (nil error).
	Revoke func(ctx context.Context, env AdminEnv, admin Credential, id string) (Revoked, error)
	// Revokes says how Revoke ends a key: "delete" or "deactivate".
	Revokes string
	// Locate asks the provider whether the key of id is one the admin
	// credential governs (OpenAI: a service account of its project;
	// Anthropic: a key of its organization): nil when it is, an
	// *AdminError of status 404 (IsAdminNotFound) when it is not. A 404
	// of Revoke is "gone" only for a key located before: a key of
	// another project or organization is 404 too. Hint is the provider's
	// redacted form of the key ("sk-ant-api03-...abcd"; "" when it gives
	// none), compared with the stored key's mask.
	Locate func(ctx context.Context, env AdminEnv, admin Credential, id string) (hint string, err error)
	// CheckAdmin, when set, asks the provider whether an admin
	// credential can act where it says (OpenAI: its project is one its
	// admin key's organization owns): an *AdminError that is Refused
	// when it cannot. Run when the credential is added.
	CheckAdmin func(ctx context.Context, env AdminEnv, admin Credential) error
	// KeyIDPrefix is how the provider's ids of the keys it revokes begin
	// ("svc_acct_", "apikey_"): a providerKeyId otherwise is refused.
	KeyIDPrefix string
	// Describe reads what the provider says of the key of id (its
	// status, its expiry), where its admin API says (nil: it does not).
	Describe func(ctx context.Context, env AdminEnv, admin Credential, id string) (KeyInfo, error)
}

// KeyInfo is what a provider's admin API says of one of its keys.
type KeyInfo struct {
	// Status is the provider's word ("active", "inactive", "archived").
	Status string
	// ExpiresAt is when the provider ends the key; zero: never.
	ExpiresAt time.Time
}

// AdminEnv is where an admin API's calls go: the admin provider's base
// URL (BaseURLs overrides it) and the HTTP client (the checker's: a
// deadline, no redirects).
type AdminEnv struct {
	HTTP    *http.Client
	BaseURL string
}

// CreatedKey is a key an admin API made: its credential (shown once by
// the provider) and its id there. String and LogValue show no secret
// (Credential's).
type CreatedKey struct {
	ID         string
	Credential Credential
}

// Revoked says what the provider did: Action is "deleted" or
// "deactivated"; AlreadyGone when the provider no longer had the key.
type Revoked struct {
	Action      string
	AlreadyGone bool
}

// AdminError is an admin API's refusal or failure: the status and the
// provider's error code, never a key (a provider's message can quote
// one: it is not kept).
type AdminError struct {
	Op     string
	Status int
	Code   string
}

func (e *AdminError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: the admin API could not be reached", e.Op)
	}
	if e.Code != "" {
		return fmt.Sprintf("%s: the admin API answered %d (%s)", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: the admin API answered %d", e.Op, e.Status)
}

// Refused says whether the provider refused the admin credential (401,
// 403, or a project its organization does not own): retrying does not
// help until an admin fixes it.
func (e *AdminError) Refused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Code == CodeProjectNotFound
}

// ErrAdminUnsupported: the provider's admin API cannot do that.
var ErrAdminUnsupported = errors.New("the provider's admin API cannot do this")

// adminCall sends one admin API call and decodes its JSON answer into
// out (nil: none). A status of 300 or more is an *AdminError with the
// provider's error code (OpenAI's error.code or error.type, Anthropic's
// error.type). The body is bounded; the answer holds the new key once
// (Create), so it is read into out and nowhere else.
func adminCall(ctx context.Context, env AdminEnv, op, method, path string, body any, authorize func(*http.Request), out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(env.BaseURL, "/")+path, rd)
	if err != nil {
		return &AdminError{Op: op}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keybroker-key-lifecycle")
	authorize(req)
	hc := env.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &AdminError{Op: op}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &AdminError{Op: op, Status: resp.StatusCode}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code any    `json:"code"`
				Type string `json:"type"`
			} `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		code, _ := e.Error.Code.(string)
		if code == "" {
			code = e.Error.Type
		}
		if len(code) > 64 || strings.ContainsFunc(code, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) {
			code = "" // not a code: keep nothing of it
		}
		return &AdminError{Op: op, Status: resp.StatusCode, Code: code}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: the admin API's answer is not what keybroker expects", op)
	}
	return nil
}

// IsAdminNotFound says whether err is the admin API's 404.
func IsAdminNotFound(err error) bool { return isAdminNotFound(err) }

// isAdminNotFound says whether err is the admin API's 404.
func isAdminNotFound(err error) bool {
	var ae *AdminError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// fieldBearer sends the credential's field as a bearer token.
func fieldHeader(field, header, prefix string) Authorizer {
	return func(r *http.Request, c Credential) error {
		v := c.Field(field)
		if v == "" {
			return fmt.Errorf("a credential of kind %q has no %s to send", c.Kind(), field)
		}
		r.Header.Set(header, prefix+v)
		return nil
	}
}

// AdminEnv is where the calls of admin provider p's API go, with the
// checker's HTTP client (its deadline; no redirects followed).
func (c *Checker) AdminEnv(p *Provider) AdminEnv {
	return AdminEnv{HTTP: c.http, BaseURL: c.cfg.BaseURLs.Of(p)}
}
