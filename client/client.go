package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config says where keybroker is and how to authenticate.
type Config struct {
	// Address of keybroker, e.g. https://keybroker.internal:8080. Required.
	Address string
	// Token is the bearer token. Required.
	Token string
	// HTTPClient carries the requests. Default: a client with Timeout and
	// the TLS settings below. Redirects are never followed, whatever its
	// CheckRedirect says: a redirect would re-send a key to another host.
	HTTPClient *http.Client
	// Timeout bounds each request when HTTPClient is nil. Default: 30s.
	Timeout time.Duration
	// CACertFile is a PEM file of CAs to trust for keybroker's
	// certificate. Default: the system pool.
	CACertFile string
	// ClientCertFile and ClientKeyFile are a client certificate for a
	// keybroker that requires mutual TLS.
	ClientCertFile, ClientKeyFile string
	// AllowInsecureHTTP allows an http:// address to a host that is not
	// loopback (the token, and keys, would cross the network in clear).
	// Refused without it.
	AllowInsecureHTTP bool
}

// ErrStreamEnded: the server closed a watch stream (reconnect and flush).
var ErrStreamEnded = errors.New("the server ended the stream")

// ErrRedirect is returned when keybroker (or something in its place)
// answers with a redirect: it is never followed.
var ErrRedirect = errors.New("keybroker: the server answered with a redirect, which is never followed (a redirect would re-send the token and any key to another host); check the address")

// Client is a typed client of keybroker's HTTP API (v1).
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("keybroker client: no address (set KEYBROKER_ADDR)")
	}
	if cfg.Token == "" {
		return nil, errors.New("keybroker client: no token (set KEYBROKER_TOKEN)")
	}
	u, err := url.Parse(strings.TrimRight(cfg.Address, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("keybroker client: address %q is not an http(s) URL", cfg.Address)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !cfg.AllowInsecureHTTP {
		return nil, fmt.Errorf("keybroker client: %s is plain http to a host that is not loopback: the token and keys would cross the network in clear; use https (or allow insecure http explicitly)", cfg.Address)
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		transport, err := tlsTransport(cfg)
		if err != nil {
			return nil, err
		}
		hc = http.Client{Transport: transport, Timeout: cfg.Timeout}
		if hc.Timeout <= 0 {
			hc.Timeout = 30 * time.Second
		}
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, token: cfg.Token, http: &hc}, nil
}

// tlsTransport is the default transport with the CA and client
// certificate of cfg.
func tlsTransport(cfg Config) (*http.Transport, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("keybroker client: read the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("keybroker client: %s holds no PEM certificate", cfg.CACertFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.ClientCertFile == "") != (cfg.ClientKeyFile == "") {
		return nil, errors.New("keybroker client: a client certificate needs both its certificate and its key file")
	}
	if cfg.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("keybroker client: load the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	transport.TLSClientConfig = tc
	return transport, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Error is an error answer of the API.
type Error struct {
	StatusCode int
	Code       string
	Message    string
	// Reason details some codes (no_key: why no scope could serve;
	// keys_cooling_down: which scope serves again first).
	Reason    string
	RequestID string
	// RetryAfter is the answer's Retry-After (429 keys_cooling_down: when
	// the first key that could serve does again; 429 and 503 otherwise:
	// when to try again); 0 when it sent none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("keybroker: %d %s: %s", e.StatusCode, e.Code, e.Message)
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// IsStatus reports whether err is an API error with the given status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == status
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, header http.Header, in, out any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("keybroker: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("keybroker: %s %s: %w", method, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keybroker: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return resp, fmt.Errorf("%s %s answered %d: %w", method, path, resp.StatusCode, ErrRedirect)
	}
	if resp.StatusCode >= 400 {
		return resp, apiError(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp, fmt.Errorf("keybroker: decode answer to %s %s: %w", method, path, err)
		}
	}
	return resp, nil
}

func ifMatch(version int) http.Header {
	if version <= 0 {
		return nil
	}
	return http.Header{"If-Match": {strconv.Quote(strconv.Itoa(version))}}
}

// WhoAmI returns the token's id, role and workspaces.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var out WhoAmI
	_, err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
	return out, err
}

// Providers lists the supported providers.
func (c *Client) Providers(ctx context.Context) ([]Provider, error) {
	var out ProviderList
	_, err := c.do(ctx, http.MethodGet, "/v1/providers", nil, nil, &out)
	return out.Providers, err
}

// ProviderCatalogue lists the supported providers and the admin APIs
// whose credentials a scope may hold (docs/lifecycle.md).
func (c *Client) ProviderCatalogue(ctx context.Context) (ProviderList, error) {
	var out ProviderList
	_, err := c.do(ctx, http.MethodGet, "/v1/providers", nil, nil, &out)
	return out, err
}

// ListKeys lists the metadata of a workspace's keys.
func (c *Client) ListKeys(ctx context.Context, workspace string) ([]KeyMetadata, error) {
	var out KeyList
	_, err := c.do(ctx, http.MethodGet, "/v1/workspaces/"+url.PathEscape(workspace)+"/keys", nil, nil, &out)
	return out.Keys, err
}

// PurgeWorkspace destroys every key of a workspace (operator only).
func (c *Client) PurgeWorkspace(ctx context.Context, workspace string) (PurgeResult, error) {
	var out PurgeResult
	_, err := c.do(ctx, http.MethodDelete, "/v1/workspaces/"+url.PathEscape(workspace), nil, nil, &out)
	return out, err
}

func (c *Client) auditPage(ctx context.Context, path, cursor string, limit int) (AuditPage, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out AuditPage
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// ProxyCalls returns one page of a workspace's calls through the
// credential proxy, newest first (reader or admin of the workspace, or an
// operator).
func (c *Client) ProxyCalls(ctx context.Context, workspace string, q ProxyCallQuery) (ProxyCallPage, error) {
	return c.proxyCallPage(ctx, "/v1/workspaces/"+url.PathEscape(workspace)+"/proxy-calls", q)
}

// AllProxyCalls returns one page of every workspace's calls through the
// credential proxy, newest first (operator only): the platform's billing
// export.
func (c *Client) AllProxyCalls(ctx context.Context, q ProxyCallQuery) (ProxyCallPage, error) {
	return c.proxyCallPage(ctx, "/v1/proxy-calls", q)
}

func (c *Client) proxyCallPage(ctx context.Context, path string, q ProxyCallQuery) (ProxyCallPage, error) {
	v := url.Values{}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Provider != "" {
		v.Set("provider", q.Provider)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out ProxyCallPage
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// Resolve returns the key to use for a call of workspace to provider that
// names no model: ResolveFor without a model.
func (c *Client) Resolve(ctx context.Context, workspace, provider string) (ResolveResponse, error) {
	return c.ResolveFor(ctx, ResolveRequest{Workspace: workspace, Provider: provider})
}

// Settings returns a workspace's settings.
func (c *Client) Settings(ctx context.Context, workspace string) (Settings, error) {
	var out Settings
	_, err := c.do(ctx, http.MethodGet, "/v1/workspaces/"+url.PathEscape(workspace)+"/settings", nil, nil, &out)
	return out, err
}

// PutSettings changes a workspace's settings (absent fields stay).
func (c *Client) PutSettings(ctx context.Context, workspace string, req SettingsRequest) (Settings, error) {
	var out Settings
	_, err := c.do(ctx, http.MethodPut, "/v1/workspaces/"+url.PathEscape(workspace)+"/settings", nil, req, &out)
	return out, err
}

// Effective says, per provider, where the workspace's calls get their key
// now: its own, the platform's hosted key (billed), or none.
func (c *Client) Effective(ctx context.Context, workspace string) ([]EffectiveSource, error) {
	var out EffectiveSources
	_, err := c.do(ctx, http.MethodGet, "/v1/workspaces/"+url.PathEscape(workspace)+"/effective", nil, nil, &out)
	return out.Providers, err
}

// Scope names whose pools a call is about: a workspace, an organization,
// or the platform's hosted keys.
type Scope struct {
	// Kind is "workspace", "organization" or "hosted".
	Kind string
	// ID is the workspace or organization id ("" for hosted).
	ID string
}

// Workspace is workspace ws's scope.
func Workspace(ws string) Scope { return Scope{Kind: "workspace", ID: ws} }

// Organization is organization org's scope.
func Organization(org string) Scope { return Scope{Kind: "organization", ID: org} }

// Hosted is the platform's hosted keys.
func Hosted() Scope { return Scope{Kind: "hosted"} }

// path is the scope's API path: /v1/workspaces/{ws}, /v1/organizations/{org}
// or /v1/hosted.
func (s Scope) path() string {
	switch s.Kind {
	case "organization":
		return "/v1/organizations/" + url.PathEscape(s.ID)
	case "hosted":
		return "/v1/hosted"
	}
	return "/v1/workspaces/" + url.PathEscape(s.ID)
}

func (s Scope) String() string {
	if s.Kind == "hosted" {
		return "hosted"
	}
	return s.Kind + " " + s.ID
}

// KeyRef names one key: a scope's key KeyID for Provider.
type KeyRef struct {
	Scope    Scope
	Provider string
	KeyID    string
}

func poolPath(s Scope, provider string) string {
	return s.path() + "/providers/" + url.PathEscape(provider) + "/keys"
}

func (r KeyRef) path() string { return poolPath(r.Scope, r.Provider) + "/" + url.PathEscape(r.KeyID) }

// Pool lists the keys of a scope's pool for provider, by priority.
func (c *Client) Pool(ctx context.Context, scope Scope, provider string) ([]KeyMetadata, error) {
	var out KeyList
	_, err := c.do(ctx, http.MethodGet, poolPath(scope, provider), nil, nil, &out)
	return out.Keys, err
}

// AddKey adds a key to a scope's pool (409 pool_full when it holds the
// most keys it may, 409 conflict when the key id exists).
func (c *Client) AddKey(ctx context.Context, scope Scope, provider string, req AddKeyRequest) (KeyMetadata, error) {
	var out KeyMetadata
	_, err := c.do(ctx, http.MethodPost, poolPath(scope, provider), nil, req, &out)
	return out, err
}

// Key returns one key's metadata.
func (c *Client) Key(ctx context.Context, ref KeyRef) (KeyMetadata, error) {
	var out KeyMetadata
	_, err := c.do(ctx, http.MethodGet, ref.path(), nil, nil, &out)
	return out, err
}

// PutKey rotates a key, or creates it with the default settings. With
// expectedVersion > 0 it is sent as If-Match; created is true on 201.
func (c *Client) PutKey(ctx context.Context, ref KeyRef, apiKey string, expectedVersion int) (meta KeyMetadata, created bool, err error) {
	return c.putKey(ctx, ref.path(), apiKey, expectedVersion)
}

// PutCheckedKey is PutKey with a check first (?verify=true): the provider
// is asked, and a key it refuses is 422 key_verification_failed, nothing
// stored.
func (c *Client) PutCheckedKey(ctx context.Context, ref KeyRef, apiKey string, expectedVersion int) (meta KeyMetadata, created bool, err error) {
	return c.putKey(ctx, ref.path()+"?verify=true", apiKey, expectedVersion)
}

func (c *Client) putKey(ctx context.Context, path, apiKey string, expectedVersion int) (meta KeyMetadata, created bool, err error) {
	resp, err := c.do(ctx, http.MethodPut, path, ifMatch(expectedVersion), PutKeyRequest{APIKey: apiKey}, &meta)
	if err != nil {
		return KeyMetadata{}, false, err
	}
	return meta, resp.StatusCode == http.StatusCreated, nil
}

// UpdateKey changes a key's name, priority, state or models.
func (c *Client) UpdateKey(ctx context.Context, ref KeyRef, req UpdateKeyRequest) (KeyMetadata, error) {
	var out KeyMetadata
	_, err := c.do(ctx, http.MethodPatch, ref.path(), nil, req, &out)
	return out, err
}

// RemoveKey deletes a key from its pool; with destroy, every version is
// destroyed in Vault (else older versions stay there). With
// expectedVersion > 0, only if it is current.
func (c *Client) RemoveKey(ctx context.Context, ref KeyRef, expectedVersion int, destroy bool) error {
	path := ref.path()
	if destroy {
		path += "?destroy=true"
	}
	_, err := c.do(ctx, http.MethodDelete, path, ifMatch(expectedVersion), nil, nil)
	return err
}

// KeyVersions lists a key's versions, newest first.
func (c *Client) KeyVersions(ctx context.Context, ref KeyRef) ([]KeyVersion, error) {
	var out VersionList
	_, err := c.do(ctx, http.MethodGet, ref.path()+"/versions", nil, nil, &out)
	return out.Versions, err
}

// RollbackKey makes an earlier version of a key current.
func (c *Client) RollbackKey(ctx context.Context, ref KeyRef, version int) (KeyMetadata, error) {
	var out KeyMetadata
	_, err := c.do(ctx, http.MethodPost, ref.path()+"/rollback", nil, RollbackRequest{Version: version}, &out)
	return out, err
}

// ScopeAudit returns one page of a scope's audit trail, newest first.
// cursor is "" for the newest page, else a previous page's NextCursor.
func (c *Client) ScopeAudit(ctx context.Context, scope Scope, cursor string, limit int) (AuditPage, error) {
	return c.auditPage(ctx, scope.path()+"/audit", cursor, limit)
}

// PurgeOrganization destroys every key of an organization (operator only).
func (c *Client) PurgeOrganization(ctx context.Context, org string) (PurgeResult, error) {
	var out PurgeResult
	_, err := c.do(ctx, http.MethodDelete, Organization(org).path(), nil, nil, &out)
	return out, err
}

// LinkedWorkspaces lists the workspaces linked to an organization.
func (c *Client) LinkedWorkspaces(ctx context.Context, org string) ([]LinkedWorkspace, error) {
	var out WorkspaceList
	_, err := c.do(ctx, http.MethodGet, Organization(org).path()+"/workspaces", nil, nil, &out)
	return out.Workspaces, err
}

// ResolveFor returns the key to use for a call described by req (with its
// model, when keys are limited to some models): POST /v1/resolve.
func (c *Client) ResolveFor(ctx context.Context, req ResolveRequest) (ResolveResponse, error) {
	var out ResolveResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/resolve", nil, req, &out)
	return out, err
}

// Report says what a provider answered to a call made with a resolved key
// (resolver tokens; the resolution must be this token's).
func (c *Client) Report(ctx context.Context, req ReportRequest) (ReportResult, error) {
	var out ReportResult
	_, err := c.do(ctx, http.MethodPost, "/v1/resolve/report", nil, req, &out)
	return out, err
}

// CheckKey asks the key's provider whether it accepts the key (POST
// .../test): the answer says what the provider said and the key's health
// now, never the key.
func (c *Client) CheckKey(ctx context.Context, ref KeyRef) (KeyCheckResult, error) {
	var out KeyCheckResult
	_, err := c.do(ctx, http.MethodPost, ref.path()+"/test", nil, nil, &out)
	return out, err
}

// AddCheckedKey is AddKey with a check first (?verify=true): the provider
// is asked, and a key it refuses is 422 key_verification_failed, nothing
// stored.
func (c *Client) AddCheckedKey(ctx context.Context, scope Scope, provider string, req AddKeyRequest) (KeyMetadata, error) {
	var out KeyMetadata
	_, err := c.do(ctx, http.MethodPost, poolPath(scope, provider)+"?verify=true", nil, req, &out)
	return out, err
}

// Tokens lists the API tokens (operators; never a token).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out TokenList
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out)
	return out.Tokens, err
}

// CreateToken creates an API token (operators); the answer holds the token
// this once.
func (c *Client) CreateToken(ctx context.Context, req CreateTokenRequest) (CreatedToken, error) {
	var out CreatedToken
	_, err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, req, &out)
	return out, err
}

// MintProxyToken mints a per-execution token for the credential proxy
// (resolver tokens; POST /v1/proxy-tokens). Give Token to the sandbox.
func (c *Client) MintProxyToken(ctx context.Context, req ProxyTokenRequest) (ProxyToken, error) {
	var out ProxyToken
	_, err := c.do(ctx, http.MethodPost, "/v1/proxy-tokens", nil, req, &out)
	return out, err
}

// RevokeProxyToken ends a proxy token this resolver token minted, on every
// replica, before its expiry.
func (c *Client) RevokeProxyToken(ctx context.Context, token string) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/proxy-tokens/revoke", nil, RevokeProxyTokenRequest{Token: token}, nil)
	return err
}

// RevokeProxyTokenByID ends the proxy token named id (operators), for the
// longest a proxy token lives.
func (c *Client) RevokeProxyTokenByID(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/proxy-tokens/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// RevokeToken revokes token id (operators).
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Scopes lists the workspaces and organizations the caller may open
// (kind "workspace", "organization" or "" for both; query: part of the id).
func (c *Client) Scopes(ctx context.Context, kind, query, cursor string, limit int) (ScopeList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": kind, "q": query, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/scopes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out ScopeList
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// apiError is the *Error of an answer of 400 or more.
func apiError(resp *http.Response) *Error {
	apiErr := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	if secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && secs > 0 {
		apiErr.RetryAfter = time.Duration(secs) * time.Second
	}
	var eb ErrorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&eb); err == nil && eb.Error.Code != "" {
		apiErr.Code, apiErr.Message, apiErr.Reason = eb.Error.Code, eb.Error.Message, eb.Error.Reason
	} else {
		apiErr.Code, apiErr.Message = "http_error", http.StatusText(resp.StatusCode)
	}
	return apiErr
}

// The v1 shorthand: the key "default" of a workspace's pool, and the names
// the client had before pools. Each is a thin wrapper, kept for one
// release.

// defaultKey is workspace's key "default" for provider.
func defaultKey(workspace, provider string) KeyRef {
	return KeyRef{Scope: Workspace(workspace), Provider: provider, KeyID: "default"}
}

// GetKey returns the metadata of a workspace's key "default" for provider.
//
// Deprecated: use Key.
func (c *Client) GetKey(ctx context.Context, workspace, provider string) (KeyMetadata, error) {
	return c.Key(ctx, defaultKey(workspace, provider))
}

// SetKey creates or rotates a workspace's key "default" for provider.
//
// Deprecated: use PutKey.
func (c *Client) SetKey(ctx context.Context, workspace, provider, apiKey string, expectedVersion int) (meta KeyMetadata, created bool, err error) {
	return c.PutKey(ctx, defaultKey(workspace, provider), apiKey, expectedVersion)
}

// DeleteKey deletes a workspace's key "default" for provider; the older
// versions stay in Vault.
//
// Deprecated: use RemoveKey (destroy false).
func (c *Client) DeleteKey(ctx context.Context, workspace, provider string, expectedVersion int) error {
	return c.RemoveKey(ctx, defaultKey(workspace, provider), expectedVersion, false)
}

// DestroyKey deletes a workspace's key "default" for provider and
// destroys every version of it in Vault.
//
// Deprecated: use RemoveKey (destroy true).
func (c *Client) DestroyKey(ctx context.Context, workspace, provider string, expectedVersion int) error {
	return c.RemoveKey(ctx, defaultKey(workspace, provider), expectedVersion, true)
}

// Versions lists the versions of a workspace's key "default" for
// provider, newest first.
//
// Deprecated: use KeyVersions.
func (c *Client) Versions(ctx context.Context, workspace, provider string) ([]KeyVersion, error) {
	return c.KeyVersions(ctx, defaultKey(workspace, provider))
}

// Rollback makes an earlier version of a workspace's key "default" for
// provider current.
//
// Deprecated: use RollbackKey.
func (c *Client) Rollback(ctx context.Context, workspace, provider string, version int) (KeyMetadata, error) {
	return c.RollbackKey(ctx, defaultKey(workspace, provider), version)
}

// Audit returns one page of a workspace's audit trail, newest first.
//
// Deprecated: use ScopeAudit with Workspace(workspace).
func (c *Client) Audit(ctx context.Context, workspace, cursor string, limit int) (AuditPage, error) {
	return c.ScopeAudit(ctx, Workspace(workspace), cursor, limit)
}

// TestKey asks the key's provider whether it accepts the key.
//
// Deprecated: use CheckKey.
func (c *Client) TestKey(ctx context.Context, ref KeyRef) (KeyCheckResult, error) {
	return c.CheckKey(ctx, ref)
}

// AddVerifiedKey adds a key after the provider accepted it.
//
// Deprecated: use AddCheckedKey.
func (c *Client) AddVerifiedKey(ctx context.Context, scope Scope, provider string, req AddKeyRequest) (KeyMetadata, error) {
	return c.AddCheckedKey(ctx, scope, provider, req)
}

// PutVerifiedKey puts a key after the provider accepted it.
//
// Deprecated: use PutCheckedKey.
func (c *Client) PutVerifiedKey(ctx context.Context, ref KeyRef, apiKey string, expectedVersion int) (meta KeyMetadata, created bool, err error) {
	return c.PutCheckedKey(ctx, ref, apiKey, expectedVersion)
}
