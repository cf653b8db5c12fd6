// Package providercheck asks a model or tool provider whether it accepts an
// API key, with the provider's cheapest authenticated call (its registry
// entry's broker.CheckSpec): a deadline, no redirects followed, the answer
// read up to a bound, and a verdict that never holds the key.
package providercheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keybroker/keybroker/broker"
)

// Config assembles a Checker. Zero values take the defaults stated.
type Config struct {
	// BaseURLs replaces providers' base URLs, by provider id (a stand-in,
	// an egress proxy in an air-gapped site).
	BaseURLs map[string]string
	// Timeout bounds one check. Default: 10 s.
	Timeout time.Duration
	// MaxBody is how much of an answer is read. Default: 64 KiB.
	MaxBody int64
	// Transport is the HTTP transport. Default: a clone of
	// http.DefaultTransport, which honours HTTPS_PROXY and NO_PROXY.
	Transport http.RoundTripper
}

// Checker implements broker.KeyChecker.
type Checker struct {
	cfg  Config
	http *http.Client
}

var _ broker.KeyChecker = (*Checker)(nil)

// New returns a checker; base URLs must be http(s) URLs.
func New(cfg Config) (*Checker, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	for id, raw := range cfg.BaseURLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("providercheck: the base URL of %s must be an http(s) URL, not %q", id, raw)
		}
	}
	return &Checker{cfg: cfg, http: &http.Client{
		Transport: cfg.Transport,
		Timeout:   cfg.Timeout,
		// A provider does not redirect its API: a redirect is a proxy or
		// a captive portal, and following it would send the key there.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// BaseURL is where the checks of provider p go.
func (c *Checker) BaseURL(p *broker.Provider) string {
	if u, ok := c.cfg.BaseURLs[p.ID]; ok {
		return strings.TrimRight(u, "/")
	}
	return p.Check.BaseURL
}

// Check asks p whether it accepts key.
func (c *Checker) Check(ctx context.Context, p *broker.Provider, key string) broker.CheckResult {
	spec := p.Check
	if spec.Path == "" {
		return broker.CheckResult{Verdict: broker.VerdictUnreachable, Detail: "the provider has no check configured"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL(p)+spec.Path, nil)
	if err != nil {
		return broker.CheckResult{Verdict: broker.VerdictUnreachable, Detail: "the check URL is invalid"}
	}
	if !spec.Auth.SetKey(req.Header, key) {
		return broker.CheckResult{Verdict: broker.VerdictUnreachable, Detail: "the provider's key header is not configured"}
	}
	for k, v := range spec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keybroker-key-check")
	resp, err := c.http.Do(req)
	if err != nil {
		return broker.CheckResult{Verdict: broker.VerdictUnreachable, Detail: describe(err, c.cfg.Timeout)}
	}
	// Read a bounded part of the answer (to reuse the connection when it
	// is small), never the rest of a huge one.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.cfg.MaxBody))
	resp.Body.Close()
	r := broker.CheckResult{Status: resp.StatusCode, Detail: fmt.Sprintf("answered %d", resp.StatusCode)}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		r.Verdict = broker.VerdictAccepted
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusPaymentRequired:
		r.Verdict = broker.VerdictRefused
	case s == http.StatusTooManyRequests:
		r.Verdict, r.Detail = broker.VerdictRateLimited, "answered 429: the key is known but rate limited"
	case s >= 300 && s < 400:
		r.Verdict, r.Detail = broker.VerdictUnreachable, fmt.Sprintf("answered %d, a redirect: not followed (is a proxy in the way?)", s)
	case s >= 500:
		r.Verdict, r.Detail = broker.VerdictUnreachable, fmt.Sprintf("answered %d: the provider is failing", s)
	default:
		r.Verdict, r.Detail = broker.VerdictUnreachable, fmt.Sprintf("answered %d: the check endpoint is not what keybroker expects (base URL?)", s)
	}
	return r
}

// describe names a transport failure without quoting the request.
func describe(err error, timeout time.Duration) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dnsErr):
		return "the provider's host name does not resolve"
	case errors.Is(err, context.Canceled):
		return "the check was cancelled"
	}
	return "the provider could not be reached (connection refused or reset)"
}
