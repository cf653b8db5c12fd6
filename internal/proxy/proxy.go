// Package proxy owns keybroker's credential proxy: a call to
// /proxy/{provider}/{path} is forwarded to the provider's API with the
// workspace's resolved key added the way that provider expects, every
// credential the caller sent removed, and the answer streamed back as it
// arrives. When the provider refuses the key (401, 403, 402, 429) before
// any byte went back, and the request's body was small enough to keep,
// the key's health is reported and the call is made once more with the
// next usable key of the pool. Each call is recorded (Recorder) for the
// platform's billing: which scope and key served, its version, the status,
// the duration, and whether it was BYOK.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/broker"
)

// tracer is the global provider's: a no-op unless traces are on. Each
// attempt to the provider is a client span of the request's trace, from
// sending the call to the end of the answer; it names the provider, the
// attempt, the key's id and the status, never a key, a path or a header.
var tracer = otel.Tracer("github.com/keybroker/keybroker/internal/proxy")

// Keys is what the proxy needs of the broker.
type Keys interface {
	Resolve(ctx context.Context, req broker.ResolveRequest) (broker.Resolution, error)
	Report(ctx context.Context, req broker.ReportRequest) (broker.ReportResult, error)
}

// Config tunes a Proxy; zero values take the defaults stated.
type Config struct {
	Keys      Keys
	Providers *broker.Registry
	// BaseURLs replaces providers' base URLs by id (the
	// --provider-base-url setting, shared with key checks).
	BaseURLs map[string]string
	Recorder *Recorder
	// RetryBodyLimit: a request body up to this size is kept so that the
	// call can be retried with another key. Default: 1 MiB.
	RetryBodyLimit int64
	// MaxRequestBytes and MaxResponseBytes bound the bodies. Defaults:
	// 32 MiB and 256 MiB.
	MaxRequestBytes, MaxResponseBytes int64
	// HeaderTimeout bounds the wait for the provider's response headers;
	// Timeout the whole call, streaming included. Defaults: 2 min, 15 min.
	HeaderTimeout, Timeout time.Duration
	// Transport reaches the providers. Default: a transport with the
	// environment's proxy settings (HTTPS_PROXY) and TLS 1.2+.
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Registerer takes the proxy's metrics; nil: not exported.
	Registerer prometheus.Registerer
}

// Proxy forwards calls. Safe for concurrent use.
type Proxy struct {
	cfg     Config
	metrics *metrics
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Proxy, error) {
	if cfg.Keys == nil || cfg.Providers == nil {
		return nil, errors.New("proxy: Keys and Providers are required")
	}
	if cfg.RetryBodyLimit <= 0 {
		cfg.RetryBodyLimit = 1 << 20
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 32 << 20
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 256 << 20
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 2 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = nil
		t.ForceAttemptHTTP2 = true
		t.MaxIdleConnsPerHost = 64
		cfg.Transport = t
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{cfg: cfg, metrics: newMetrics(cfg.Registerer, cfg.Recorder)}, nil
}

// Call is one proxied call, as the handler authorized it.
type Call struct {
	Workspace string
	Provider  string
	// Path is what follows /proxy/{provider} (with its leading slash),
	// escaped as the caller sent it.
	Path string
	// Caller is the calling token's id; Models, when set, the only models
	// it may call.
	Caller    string
	Models    []string
	RequestID string
	// ModelHint is the model a trusted caller (a resolver token) named in
	// X-Keybroker-Model, used only when the call itself names none: the
	// body's or the path's model always wins, so that the model checked
	// is the one the provider serves. Empty for proxy tokens.
	ModelHint string
}

// credentialHeaders are never forwarded: the caller's own credentials (a
// keybroker token, or a key of its own), whatever provider they belong to.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "X-Api-Key", "X-Goog-Api-Key", "Api-Key", "Cookie"}

// hopHeaders are the hop-by-hop headers of RFC 9110 (and their kin).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// Fail renders an error answer (keybroker's error shape); nothing has been
// written when the proxy calls it.
type Fail func(status int, code, message string)

// dropHopHeaders removes the hop-by-hop headers, those Connection names
// included.
func dropHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// Serve forwards r as call; it writes the answer, or fails.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, call Call, fail Fail) {
	start := time.Now()
	// An upload or a streamed answer may outlast the server's timeouts.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(p.cfg.Timeout))
	_ = rc.SetWriteDeadline(start.Add(p.cfg.Timeout))
	prov, ok := p.cfg.Providers.Lookup(call.Provider)
	if !ok {
		fail(http.StatusNotFound, "unknown_provider", "no such provider")
		return
	}
	if !allowedPath(call.Path, prov.Proxy.Prefixes) {
		fail(http.StatusForbidden, "path_not_allowed", "the proxy does not forward this path to "+prov.DisplayName)
		return
	}
	base, err := url.Parse(p.baseURL(prov))
	if err != nil || base.Scheme == "" || base.Host == "" {
		fail(http.StatusInternalServerError, "internal_error", "the provider's base URL is invalid")
		return
	}
	if r.ContentLength > p.cfg.MaxRequestBytes {
		fail(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is larger than %d bytes", p.cfg.MaxRequestBytes))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	defer cancel()

	// A body known to be small is read whole: it can be sent twice, and
	// its model can be read. A larger one (or one of unknown length over
	// the limit) streams through, and the call is not retried.
	var kept []byte
	body := http.MaxBytesReader(w, r.Body, p.cfg.MaxRequestBytes)
	if r.ContentLength >= 0 && r.ContentLength <= p.cfg.RetryBodyLimit {
		if kept, err = io.ReadAll(body); err != nil {
			p.bodyError(fail, err)
			return
		}
	}
	model := modelOf(call.Provider, call.Path, r.Header.Get("Content-Type"), kept)
	if model == "" {
		model = call.ModelHint
	}
	if len(call.Models) > 0 && !slices.Contains(call.Models, model) {
		msg := "this token may not call this model"
		switch {
		case model == "" && kept == nil && r.ContentLength != 0:
			msg = fmt.Sprintf("this token may call only some models, and a body over %d bytes (or of unknown length) is not read for its model", p.cfg.RetryBodyLimit)
		case model == "":
			msg = "this token may call only some models, and the call names none (a JSON body's \"model\", or Google's path)"
		}
		fail(http.StatusForbidden, "model_not_allowed", msg)
		return
	}

	p.metrics.inFlight.Inc()
	defer p.metrics.inFlight.Dec()
	rec := Record{At: start, Workspace: call.Workspace, Provider: call.Provider, Caller: call.Caller, RequestID: call.RequestID}
	defer func() {
		rec.Duration = time.Since(start)
		p.metrics.record(rec)
		p.cfg.Recorder.Add(rec)
	}()
	var first *broker.Resolution
	for attempt := 0; ; attempt++ {
		res, err := p.cfg.Keys.Resolve(ctx, broker.ResolveRequest{Workspace: call.Workspace, Provider: call.Provider, Model: model, Caller: call.Caller})
		if err != nil {
			if first != nil { // no other key: the first answer was already closed
				rec.Status = http.StatusBadGateway
				fail(http.StatusBadGateway, "no_other_key", "the provider refused the key and no other key may serve")
				return
			}
			status, code, msg := resolveError(err)
			rec.Status = status
			fail(status, code, msg)
			return
		}
		rec.Scope, rec.KeyID, rec.KeyVersion, rec.BYOK, rec.Retried = string(res.Scope), res.KeyID, res.Version, res.IsBYOK, attempt > 0
		var reqBody io.Reader = body
		if kept != nil {
			reqBody = bytes.NewReader(kept)
		}
		out, err := p.outbound(ctx, r, base, call.Path, prov, res.APIKey, reqBody, kept != nil)
		if err != nil {
			rec.Status = http.StatusBadGateway
			fail(http.StatusBadGateway, "upstream_error", "could not build the request to the provider")
			return
		}
		_, span := tracer.Start(ctx, "proxy upstream "+call.Provider, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("keybroker.provider", call.Provider), attribute.Int("keybroker.attempt", attempt+1),
			attribute.String("keybroker.key_id", res.KeyID), attribute.String("http.request.method", r.Method),
			attribute.String("server.address", base.Hostname())))
		sent := time.Now()
		resp, err := p.roundTrip(ctx, out)
		if err == nil {
			p.metrics.headers.WithLabelValues(call.Provider).Observe(time.Since(sent).Seconds())
		}
		if err != nil {
			status, code, msg := upstreamError(ctx, err)
			span.SetStatus(codes.Error, code)
			span.End()
			rec.Status = status
			fail(status, code, msg)
			return
		}
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if outcome := refusal(resp.StatusCode); outcome != "" {
			// Report as the caller would: the pool (on every replica)
			// stops serving the key, and resolving again gives the next.
			if _, rerr := p.cfg.Keys.Report(context.WithoutCancel(ctx), broker.ReportRequest{Caller: call.Caller, RequestID: call.RequestID,
				ResolutionID: res.ResolutionID, Outcome: outcome, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}); rerr != nil {
				p.cfg.Logger.Warn("proxy: could not report the provider's refusal", "provider", call.Provider, "key_id", res.KeyID, "error", rerr)
			}
		}
		if refusal(resp.StatusCode) != "" && attempt == 0 && kept != nil {
			next, nerr := p.cfg.Keys.Resolve(ctx, broker.ResolveRequest{Workspace: call.Workspace, Provider: call.Provider, Model: model, Caller: call.Caller})
			if nerr == nil && (next.KeyID != res.KeyID || next.Scope != res.Scope) {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				span.SetStatus(codes.Error, "refused: retried with another key")
				span.End()
				r0 := res
				first = &r0
				continue
			}
		}
		rec.Status = resp.StatusCode
		var cut bool
		rec.BytesOut, cut = p.stream(w, resp, res)
		span.SetAttributes(attribute.Int64("keybroker.bytes_out", rec.BytesOut))
		switch {
		case cut:
			span.SetStatus(codes.Error, "the answer was cut")
		case resp.StatusCode >= 500:
			span.SetStatus(codes.Error, "the provider answered "+strconv.Itoa(resp.StatusCode))
		}
		span.End()
		if cut {
			// The caller must see a cut answer, not a complete-looking
			// one: net/http aborts the connection (the record and the
			// metrics are written on the way out).
			panic(http.ErrAbortHandler)
		}
		return
	}
}

func (p *Proxy) baseURL(prov *broker.Provider) string {
	if u, ok := p.cfg.BaseURLs[prov.ID]; ok && u != "" {
		return strings.TrimRight(u, "/")
	}
	return strings.TrimRight(prov.Check.BaseURL, "/")
}

// outbound builds the request to the provider: the caller's method, path,
// query and headers, minus credentials and hop-by-hop headers, plus the
// key.
func (p *Proxy) outbound(ctx context.Context, r *http.Request, base *url.URL, escapedPath string, prov *broker.Provider, key string, body io.Reader, known bool) (*http.Request, error) {
	target := *base
	target.RawPath = strings.TrimRight(base.EscapedPath(), "/") + escapedPath
	var err error
	if target.Path, err = url.PathUnescape(target.RawPath); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	q.Del("key") // Google's query-string credential
	target.RawQuery = q.Encode()
	if len(q) == 0 {
		target.RawQuery = ""
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, target.String(), body)
	if err != nil {
		return nil, err
	}
	if known {
		out.ContentLength = r.ContentLength
	}
	out.Header = r.Header.Clone()
	dropHopHeaders(out.Header)
	for _, h := range credentialHeaders {
		out.Header.Del(h)
	}
	for k := range out.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-keybroker-") || strings.HasPrefix(strings.ToLower(k), "x-forwarded-") {
			out.Header.Del(k)
		}
	}
	out.Header.Del("Forwarded")
	if !prov.Check.Auth.SetKey(out.Header, key) {
		return nil, errors.New("the provider's key header is not configured")
	}
	for k, v := range prov.Check.Headers { // e.g. anthropic-version, unless the caller chose one
		if out.Header.Get(k) == "" {
			out.Header.Set(k, v)
		}
	}
	if out.Header.Get("User-Agent") == "" {
		out.Header.Set("User-Agent", "keybroker-proxy")
	}
	return out, nil
}

// roundTrip sends out, waiting at most HeaderTimeout for the answer's
// headers. Redirects are never followed: a 3xx goes back to the caller.
func (p *Proxy) roundTrip(ctx context.Context, out *http.Request) (*http.Response, error) {
	hctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(p.cfg.HeaderTimeout, func() { cancel(errHeaderTimeout) })
	resp, err := p.cfg.Transport.RoundTrip(out.WithContext(hctx))
	if !timer.Stop() { // the timer fired: too late, whatever came
		if err == nil {
			resp.Body.Close()
		}
		cancel(nil)
		return nil, errHeaderTimeout
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	// The headers came in time; the body streams under hctx, which ends
	// with the body.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, nil
}

var errHeaderTimeout = errors.New("the provider did not answer in time")

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// stream writes the provider's answer back as it arrives: headers, then
// every chunk flushed at once (server-sent events flow token by token).
// It returns the bytes written, and cut when the answer must not look
// complete: the upstream broke off, or the answer grew over
// MaxResponseBytes (the connection is then to be aborted).
func (p *Proxy) stream(w http.ResponseWriter, resp *http.Response, res broker.Resolution) (written int64, cut bool) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	dropHopHeaders(h)
	h.Del("Set-Cookie")
	h.Del("Content-Length")
	if resp.ContentLength >= 0 && resp.ContentLength <= p.cfg.MaxResponseBytes {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Set("X-Keybroker-Key-Id", res.KeyID)
	h.Set("X-Keybroker-Scope", string(res.Scope))
	h.Set("X-Keybroker-Byok", strconv.FormatBool(res.IsBYOK))
	// A stream (server-sent events, or an answer of unknown length) is
	// flushed chunk by chunk, its headers at once; an answer of known
	// length goes out in as few writes as its size allows.
	streaming := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	rc := http.NewResponseController(w)
	w.WriteHeader(resp.StatusCode)
	if streaming {
		_ = rc.Flush()
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if written+int64(n) > p.cfg.MaxResponseBytes {
				p.cfg.Logger.Warn("proxy: the provider's answer is larger than the limit; cut", "limit_bytes", p.cfg.MaxResponseBytes)
				return written, true
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return written, false // the caller went away
			}
			written += int64(n)
			if streaming {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return written, false
		}
		if err != nil {
			p.cfg.Logger.Warn("proxy: the provider's answer broke off", "written_bytes", written, "error", redactErr(err))
			return written, true
		}
	}
}

// copyBuffers hold answers on their way back (32 KiB each).
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// refusal is the report outcome of a status that may be retried with
// another key; "" for the others.
func refusal(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return broker.OutcomeUnauthorized
	case http.StatusForbidden:
		return broker.OutcomeForbidden
	case http.StatusPaymentRequired:
		return broker.OutcomeQuotaExceeded
	case http.StatusTooManyRequests:
		return broker.OutcomeRateLimited
	}
	return ""
}

// parseRetryAfter reads Retry-After in seconds or as an HTTP date, capped
// at an hour.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return max(0, min(d, time.Hour))
}

// allowedPath: a clean path (no dot segments, no doubled or encoded
// slashes) under one of the prefixes.
func allowedPath(escaped string, prefixes []string) bool {
	if escaped == "" || escaped[0] != '/' || strings.Contains(escaped, "//") || strings.ContainsAny(escaped, "\\") {
		return false
	}
	lower := strings.ToLower(escaped)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%2e") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00") {
		return false
	}
	for _, seg := range strings.Split(escaped, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if c := path.Clean(escaped); c != strings.TrimSuffix(escaped, "/") && c != escaped {
		return false
	}
	for _, pre := range prefixes {
		if strings.HasPrefix(escaped, pre) || escaped == strings.TrimSuffix(pre, "/") {
			return true
		}
	}
	return false
}

func (p *Proxy) bodyError(fail Fail, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		fail(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is larger than %d bytes", p.cfg.MaxRequestBytes))
		return
	}
	fail(http.StatusBadRequest, "bad_request", "could not read the request body")
}

// resolveError maps the broker's answer to the proxy's error.
func resolveError(err error) (status int, code, msg string) {
	var noKey *broker.NoKeyError
	switch {
	case errors.As(err, &noKey):
		return http.StatusNotFound, "no_key", "no key may serve this call (" + noKey.Reason + ")"
	case errors.Is(err, broker.ErrInvalidRequest), errors.Is(err, broker.ErrInvalidID):
		return http.StatusBadRequest, "invalid_request", "the workspace, provider or model is not valid"
	}
	return http.StatusServiceUnavailable, "unavailable", "the key could not be read; try again"
}

// upstreamError maps a failed round trip.
func upstreamError(ctx context.Context, err error) (status int, code, msg string) {
	var netErr net.Error
	switch {
	case errors.Is(err, errHeaderTimeout), ctx.Err() != nil, errors.As(err, &netErr) && netErr.Timeout():
		return http.StatusGatewayTimeout, "upstream_timeout", "the provider did not answer in time"
	}
	return http.StatusBadGateway, "upstream_unreachable", "the provider could not be reached"
}

// redactErr keeps an upstream error's kind, not its text (which may quote
// a URL).
func redactErr(err error) string {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected EOF"
	}
	return fmt.Sprintf("%T", err)
}
