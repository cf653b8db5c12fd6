package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Config describes how to reach Vault and log in. Zero values take the
// defaults stated on each field.
type Config struct {
	// Address of the Vault server. Default: VAULT_ADDR, else Vault's own
	// default (https://127.0.0.1:8200).
	Address string
	// Namespace is the Vault Enterprise namespace sent as X-Vault-Namespace
	// on every request. Default: VAULT_NAMESPACE, else none.
	Namespace string
	// AuthNamespace is the namespace of the auth method used to log in,
	// when it is not Namespace (e.g. AppRole in the parent namespace).
	AuthNamespace string
	// CACert is a PEM file of CA certificates to trust. Default:
	// VAULT_CACERT, else the system pool.
	CACert string
	// Auth logs in to get a short-lived token (see AppRole). Nil means the
	// static Token is used as is (dev only): it is neither renewed nor
	// replaced.
	Auth api.AuthMethod
	// Token is the static Vault token used when Auth is nil.
	Token string
	// Timeout bounds every call to Vault. Default: 5s.
	Timeout time.Duration
	// Transport carries the HTTP requests, for instrumentation and tests.
	// Default: vault/api's pooled transport with the TLS settings above.
	Transport http.RoundTripper
	// Logger receives login and renewal events. Default: slog.Default().
	Logger *slog.Logger
	// Metrics records request latency and errors by operation. Default:
	// none.
	Metrics *Metrics
	// AllowInsecureTLS lets VAULT_SKIP_VERIFY turn certificate
	// verification off. Without it New refuses: a secret id or a JWT would
	// be sent to whoever answers.
	AllowInsecureTLS bool
	// AllowPlaintext allows an http:// address that is not loopback (a
	// sidecar on a pod network, a lab). Without it New refuses.
	AllowPlaintext bool
}

// Client is keybroker's handle on Vault. Requests carry no retries of their
// own (the resolve path must not stall behind a slow Vault) and each has
// the configured deadline. With an auth method, a request that Vault
// refuses with 403 because the token is no longer valid triggers one
// re-login (shared with concurrent requests) and is retried once.
type Client struct {
	api     *api.Client
	metrics *Metrics
	timeout time.Duration
	tokens  *tokenSource // nil with a static token
	// transport says how the connection to Vault is protected, for the
	// start-up log line.
	transport string
}

// Transport says how requests to Vault are protected: "https (CA file
// ...)", "https (system CAs)", "https WITHOUT certificate verification",
// "http (loopback)" or "http (plaintext, allowed)".
func (c *Client) Transport() string { return c.transport }

func transportSecurity(u *url.URL, apiCfg *api.Config, cfg Config) string {
	if u.Scheme == "http" {
		if isLoopback(u.Hostname()) {
			return "http (loopback)"
		}
		return "http (plaintext, allowed)"
	}
	if t, ok := apiCfg.HttpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
		return "https WITHOUT certificate verification (allowed)"
	}
	if ca := cfg.CACert; ca != "" {
		return "https (CA file " + ca + ")"
	}
	if ca := os.Getenv("VAULT_CACERT"); ca != "" {
		return "https (CA file " + ca + ")"
	}
	return "https (system CAs)"
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Revoke revokes the token this client logged in for (on shutdown: a
// token nobody uses should not stay valid until its TTL). A static token
// and a token file's token belong to someone else and are left alone.
func (c *Client) Revoke(ctx context.Context) error {
	if c.tokens == nil || c.tokens.renewedElsewhere() {
		return nil
	}
	c.tokens.mu.Lock()
	secret := c.tokens.secret
	c.tokens.mu.Unlock()
	if secret == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.api.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		return fmt.Errorf("revoke own vault token at %s: %w", c.api.Address(), classify(err))
	}
	c.tokens.forget(secret)
	return nil
}

// New builds a client from cfg. It does not contact Vault; call Start to
// log in and keep the token alive.
func New(cfg Config) (*Client, error) {
	apiCfg := api.DefaultConfig() // reads VAULT_ADDR, VAULT_CACERT, ...
	if apiCfg.Error != nil {
		return nil, fmt.Errorf("vault client configuration: %w", apiCfg.Error)
	}
	if agent := os.Getenv("VAULT_AGENT_ADDR"); agent != "" {
		// vault/api would send every request there instead of Address,
		// without a word; make the choice explicit.
		return nil, fmt.Errorf("VAULT_AGENT_ADDR is set (%s): keybroker talks to the address it is given; unset it, and set the Vault address to the agent's if that is what you mean", agent)
	}
	if cfg.Address != "" {
		apiCfg.Address = cfg.Address
	}
	if skip, _ := strconv.ParseBool(os.Getenv("VAULT_SKIP_VERIFY")); skip && !cfg.AllowInsecureTLS {
		return nil, errors.New("VAULT_SKIP_VERIFY is set: refusing to send Vault credentials without verifying Vault's certificate; " +
			"trust its CA with VAULT_CACERT, or allow it explicitly (--vault-allow-insecure-tls)")
	}
	u, err := url.Parse(apiCfg.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vault address %q is not an http(s) URL", apiCfg.Address)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !cfg.AllowPlaintext {
		return nil, fmt.Errorf("vault address %s is plain http to a host that is not loopback: tokens and keys would cross the network in clear; "+
			"use https, or allow it explicitly (--vault-allow-plaintext)", apiCfg.Address)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	apiCfg.Timeout = cfg.Timeout
	apiCfg.MaxRetries = 0
	// A standby that cannot forward a request answers with a redirect to
	// the active node it knows of, which during an election is the dead
	// one. keybroker does not follow it: it tries its configured address
	// again (see once), so that the load balancer picks the new active.
	apiCfg.DisableRedirects = true
	if cfg.CACert != "" {
		if err := apiCfg.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault TLS configuration from %s: %w", cfg.CACert, err)
		}
	}
	if cfg.Transport != nil {
		apiCfg.HttpClient.Transport = cfg.Transport
	}
	c, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("create vault client for %s: %w", apiCfg.Address, err)
	}
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	client := &Client{api: c, timeout: cfg.Timeout, metrics: cfg.Metrics, transport: transportSecurity(u, apiCfg, cfg)}
	if cfg.Auth != nil {
		c.ClearToken()
		client.tokens = newTokenSource(c, cfg.Auth, cfg.Logger.With("component", "vault-token"))
		client.tokens.authNamespace = cfg.AuthNamespace
	} else {
		c.SetToken(cfg.Token)
	}
	return client, nil
}

// Start logs in (for auth methods) and keeps the token renewed, or replaced
// by a new login, until ctx is done. It returns at once; see WaitForToken.
func (c *Client) Start(ctx context.Context) {
	if c.tokens != nil {
		go c.tokens.run(ctx)
	}
}

// WaitForToken waits until the first login has succeeded (at once for a
// static token).
func (c *Client) WaitForToken(ctx context.Context) error {
	if c.tokens == nil {
		return nil
	}
	for {
		c.tokens.mu.Lock()
		gen, changed := c.tokens.gen, c.tokens.changed
		c.tokens.mu.Unlock()
		if gen > 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for a vault login at %s: %w", c.api.Address(), ctx.Err())
		}
	}
}

// Address is the Vault address the client talks to.
func (c *Client) Address() string { return c.api.Address() }

// TokenStats reports the token's life so far: successful logins, failed
// logins, renewals and the current token's expiry (zero when unknown or
// static).
func (c *Client) TokenStats() (logins, loginErrors, renewals int64, expires time.Time) {
	if c.tokens == nil {
		return 0, 0, 0, time.Time{}
	}
	if u := c.tokens.expiresAtUTC.Load(); u > 0 {
		expires = time.Unix(u, 0)
	}
	return c.tokens.logins.Load(), c.tokens.loginErrors.Load(), c.tokens.renewals.Load(), expires
}

// CheckToken asks Vault to look up the client's own token: it succeeds only
// when Vault is reachable, unsealed and accepts the token.
func (c *Client) CheckToken(ctx context.Context) error {
	err := c.do(ctx, "token_lookup", func(ctx context.Context) error {
		_, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
		return err
	})
	if err == nil {
		return nil
	}
	if statusOf(err) == http.StatusForbidden || statusOf(err) == http.StatusUnauthorized {
		return fmt.Errorf("look up own token at %s: %w", c.api.Address(), errors.Join(ErrTokenInvalid, err))
	}
	return fmt.Errorf("look up own token at %s: %w", c.api.Address(), err)
}

// do runs one Vault call under the per-call deadline. On a 403 with an auth
// method it checks whether the token is still valid; if not, it logs in
// again (one login shared by every caller that saw the same token fail) and
// retries the call once. The returned error is classified (see errors.go).
func (c *Client) do(ctx context.Context, op string, call func(context.Context) error) error {
	// A client span per operation: its name and outcome only (no path,
	// no value, no token).
	ctx, span := tracer.Start(ctx, "vault "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("vault.operation", op)))
	start := time.Now()
	err := c.doOnce(withRetry(ctx, retryPolicyOf(op)), call)
	c.metrics.observe(op, err, time.Since(start))
	if err != nil {
		span.SetStatus(codes.Error, outcomeOf(err))
	}
	span.End()
	return err
}

// tracer is keybroker's Vault client's: the global provider's, a no-op one
// unless traces are on.
var tracer = otel.Tracer("github.com/keybroker/keybroker/vault")

func (c *Client) doOnce(ctx context.Context, call func(context.Context) error) error {
	var gen uint64
	if c.tokens != nil {
		gen = c.tokens.generation()
	}
	err := c.once(ctx, call)
	if c.tokens == nil || statusOf(err) != http.StatusForbidden {
		return classify(err)
	}
	retry, rerr := c.recoverToken(ctx, gen)
	if rerr != nil {
		return classify(errors.Join(err, rerr))
	}
	if !retry {
		return classify(err)
	}
	return classify(c.once(ctx, call))
}

func (c *Client) once(ctx context.Context, call func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	policy, _ := ctx.Value(retryKey{}).(retryPolicy)
	delay := firstRetryDelay
	for {
		err := call(ctx)
		if err == nil || !policy.retries(err) {
			return err
		}
		// Try the configured address (the load balancer) again, never a
		// leader a standby named: while an election runs, the next answer
		// may come from the new active node.
		wait := delay/2 + rand.N(delay)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+minAttempt {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// recoverToken decides what a 403 means. If the token of generation seen is
// still valid, the 403 is the policy's answer and there is nothing to
// retry. If Vault no longer accepts it (revoked, expired), log in again and
// retry. Concurrent callers that saw the same token fail share one check.
func (c *Client) recoverToken(ctx context.Context, seen uint64) (bool, error) {
	v, err, _ := c.tokens.sf.Do(fmt.Sprintf("recover-%d", seen), func() (any, error) {
		if c.tokens.generation() != seen {
			return true, nil // a login happened since: retry with the new token
		}
		lerr := c.once(context.WithoutCancel(ctx), func(ctx context.Context) error {
			_, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
			return err
		})
		switch status := statusOf(lerr); {
		case lerr == nil:
			return false, nil
		case status != http.StatusForbidden && status != http.StatusUnauthorized:
			return false, lerr
		}
		if err := c.tokens.relogin(ctx, seen); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// CheckSys reads sys/mounts: keybroker's identities must be refused
// (ErrForbidden). It exists for tests and for operators checking a token.
func (c *Client) CheckSys(ctx context.Context) error {
	return c.do(ctx, "sys_mounts", func(ctx context.Context) error {
		_, err := c.api.Sys().ListMountsWithContext(ctx)
		return err
	})
}

// CheckReachable asks Vault for its health: it succeeds when Vault answers
// and is unsealed (an active node or a standby).
func (c *Client) CheckReachable(ctx context.Context) error {
	return c.do(ctx, "sys_health", func(ctx context.Context) error {
		h, err := c.api.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed {
			return errors.Join(ErrUnavailable, fmt.Errorf("vault at %s is sealed or not initialized", c.api.Address()))
		}
		return nil
	})
}
