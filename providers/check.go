package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"time"
)

// Verdicts of a key check.
const (
	VerdictAccepted    = "accepted"
	VerdictRefused     = "refused"
	VerdictRateLimited = "rate_limited"
	VerdictUnreachable = "unreachable"
)

// CheckResult is what a provider said of a credential: never the
// credential.
type CheckResult struct {
	Verdict string
	// Status is the provider's HTTP status (0 when it did not answer).
	Status int
	// Detail says what happened, in words ("answered 401", "timed out
	// after 10s", "redirected: not followed").
	Detail string
}

// CheckerConfig assembles a Checker. Zero values take the defaults stated.
type CheckerConfig struct {
	// BaseURLs replaces providers' base URLs.
	BaseURLs BaseURLs
	// Timeout bounds one check. Default: 10 s.
	Timeout time.Duration
	// MaxBody is how much of an answer is read. Default: 64 KiB.
	MaxBody int64
	// Transport is the HTTP transport. Default: a clone of
	// http.DefaultTransport, which honours HTTPS_PROXY and NO_PROXY.
	Transport http.RoundTripper
	// Mint is where the check of a provider with Derive mints the
	// short-lived credential it calls with (Mint.HTTP default: the
	// checker's own client, with its timeout and no redirects).
	Mint MintEnv
	// MintEndpoints are the token services' addresses by provider id
	// (MintEndpointsFromEnv), over Mint's.
	MintEndpoints map[string]map[string]string
}

// Checker asks a provider whether it accepts a credential, with the
// provider's cheapest authenticated call (its Check): a deadline, no
// redirects followed, the answer read up to a bound, and a verdict that
// never holds the credential.
type Checker struct {
	cfg  CheckerConfig
	http *http.Client
}

// NewChecker returns a checker; base URLs must be http(s) URLs.
func NewChecker(cfg CheckerConfig) (*Checker, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if err := cfg.BaseURLs.Validate(); err != nil {
		return nil, err
	}
	hc := &http.Client{
		Transport: cfg.Transport,
		Timeout:   cfg.Timeout,
		// A provider does not redirect its API: a redirect is a proxy or
		// a captive portal, and following it would send the key there.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if cfg.Mint.HTTP == nil {
		cfg.Mint.HTTP = hc
	}
	return &Checker{cfg: cfg, http: hc}, nil
}

// BaseURL is where the checks of provider p go.
func (c *Checker) BaseURL(p *Provider) string { return c.cfg.BaseURLs.Of(p) }

// Check asks p whether it accepts cred.
func (c *Checker) Check(ctx context.Context, p *Provider, cred Credential) CheckResult {
	spec := p.Check
	if spec.Path == "" {
		return CheckResult{Verdict: VerdictUnreachable, Detail: "the provider has no check configured"}
	}
	if p.Derive != nil {
		// The check calls with what resolve hands out: a credential
		// minted now (a role's session, not the key pair that assumes it;
		// a refusal of the token service is the key's refusal).
		env := c.cfg.Mint
		if env.HTTP == nil {
			env.HTTP = c.http
		}
		if eps := c.cfg.MintEndpoints[p.ID]; len(eps) > 0 {
			env.Endpoints = maps.Clone(env.Endpoints)
			if env.Endpoints == nil {
				env.Endpoints = map[string]string{}
			}
			maps.Copy(env.Endpoints, eps)
		}
		mctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		d, err := p.Derive(mctx, env, cred)
		cancel()
		if err != nil {
			return mintVerdict(err, c.cfg.Timeout)
		}
		cred = d.Credential
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.BaseURLs.CheckURL(p, cred)+spec.Path, nil)
	if err != nil {
		return CheckResult{Verdict: VerdictUnreachable, Detail: "the check URL is invalid"}
	}
	if p.Authorize == nil || p.Authorize(req, cred) != nil {
		return CheckResult{Verdict: VerdictUnreachable, Detail: "the provider's key header is not configured"}
	}
	for k, v := range spec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keybroker-key-check")
	resp, err := c.http.Do(req)
	if err != nil {
		return CheckResult{Verdict: VerdictUnreachable, Detail: describe(err, c.cfg.Timeout)}
	}
	// Read a bounded part of the answer (to reuse the connection when it
	// is small), never the rest of a huge one.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.cfg.MaxBody))
	resp.Body.Close()
	r := CheckResult{Status: resp.StatusCode, Detail: fmt.Sprintf("answered %d", resp.StatusCode)}
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		r.Verdict = VerdictAccepted
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusPaymentRequired:
		r.Verdict = VerdictRefused
	case s == http.StatusTooManyRequests:
		r.Verdict, r.Detail = VerdictRateLimited, "answered 429: the key is known but rate limited"
	case s >= 300 && s < 400:
		r.Verdict, r.Detail = VerdictUnreachable, fmt.Sprintf("answered %d, a redirect: not followed (is a proxy in the way?)", s)
	case s >= 500:
		r.Verdict, r.Detail = VerdictUnreachable, fmt.Sprintf("answered %d: the provider is failing", s)
	default:
		r.Verdict, r.Detail = VerdictUnreachable, fmt.Sprintf("answered %d: the check endpoint is not what keybroker expects (base URL?)", s)
	}
	return r
}

// mintVerdict is the verdict of a check whose mint failed.
func mintVerdict(err error, timeout time.Duration) CheckResult {
	// A token service's own error type that knows whether it refused the
	// credential (Bedrock's STS).
	if errors.Is(err, ErrMintRefused) {
		var me *MintError
		if errors.As(err, &me) {
			return CheckResult{Verdict: VerdictRefused, Status: me.Status,
				Detail: fmt.Sprintf("the %s token service refused the credential (answered %d %s)", me.Service, me.Status, me.Code)}
		}
		return CheckResult{Verdict: VerdictRefused, Detail: err.Error()}
	}
	var refuser interface{ Refused() bool }
	if errors.As(err, &refuser) {
		if refuser.Refused() {
			return CheckResult{Verdict: VerdictRefused, Detail: err.Error()}
		}
		return CheckResult{Verdict: VerdictUnreachable, Detail: "minting a short-lived credential failed: " + err.Error()}
	}
	var me *MintError
	if !errors.As(err, &me) {
		return CheckResult{Verdict: VerdictUnreachable, Detail: "the short-lived credential could not be minted"}
	}
	switch {
	case me.Refused:
		return CheckResult{Verdict: VerdictRefused, Status: me.Status,
			Detail: fmt.Sprintf("the %s token service refused the credential (answered %d %s)", me.Service, me.Status, me.Code)}
	case me.Status == http.StatusTooManyRequests:
		return CheckResult{Verdict: VerdictRateLimited, Status: me.Status, Detail: fmt.Sprintf("the %s token service answered 429", me.Service)}
	case me.Status == 0 && errors.Is(me.Err, context.DeadlineExceeded):
		return CheckResult{Verdict: VerdictUnreachable, Detail: fmt.Sprintf("the %s token service: %s", me.Service, describe(me.Err, timeout))}
	case me.Status == 0:
		return CheckResult{Verdict: VerdictUnreachable, Detail: me.Error()}
	}
	return CheckResult{Verdict: VerdictUnreachable, Status: me.Status, Detail: fmt.Sprintf("the %s token service answered %d", me.Service, me.Status)}
}

// describe names a transport failure without quoting the request.
func describe(err error, timeout time.Duration) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		if timeout <= 0 {
			return "no answer in time"
		}
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dnsErr):
		return "the provider's host name does not resolve"
	case errors.Is(err, context.Canceled):
		return "the check was cancelled"
	}
	return "the provider could not be reached (connection refused or reset)"
}
