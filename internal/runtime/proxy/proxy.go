// Package proxy owns keybroker's credential proxy: a call to
// /proxy/{provider}/{path} that is one of the provider's inference
// endpoints (rules.go: method and exact path; an operator may add others)
// is forwarded to the provider's API with the workspace's resolved
// credential added the way that provider expects (its providers.Provider's
// Authorize, called last: Amazon Bedrock's SigV4 signs the host and the
// headers), only the request headers of an allow-list, and the answer
// streamed back as it arrives. Where a call goes is worked out per
// attempt from the credential that serves it (route, clouds.go: a Bedrock
// key's region and modelMap, an Azure key's resource and deployments, a
// Vertex key's project and location), and a deriving provider's
// credential is the one the broker minted (an STS session, an Entra or
// Google access token), never the long-lived key. Calls in flight
// and the bodies kept for retries are bounded (bounds.go); a proxy token
// with a model list may call only calls whose every model is on it (read
// by providers.ReadModels, as the provider reads them). When the provider refuses the key (401, 403, 402, 429) before
// any byte went back, and the request's body was small enough to keep,
// the key's health is reported and the call is made once more with the
// next usable key of the pool. A refusal (401, 403, 402) is reported as
// the proxy's own observation (broker.ReportRequest.Proxied): the caller
// chose the endpoint and the body, so it takes the key out of the calling
// token's chain alone until keybroker's own check with the provider
// confirms it. Each call is recorded (Recorder) for the
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/providers"
)

// tracer is the global provider's: a no-op unless traces are on. Each
// attempt to the provider is a client span of the request's trace, from
// sending the call to the end of the answer; it names the provider, the
// attempt, the key's id and the status, never a key, a path or a header.
var tracer = otel.Tracer("github.com/keybroker/keybroker/internal/runtime/proxy")

// Keys is what the proxy needs of the broker.
type Keys interface {
	Resolve(ctx context.Context, req broker.ResolveRequest) (broker.Resolution, error)
	Report(ctx context.Context, req broker.ReportRequest) (broker.ReportResult, error)
}

// Config tunes a Proxy; zero values take the defaults stated.
type Config struct {
	Keys      Keys
	Providers *providers.Registry
	// BaseURLs replaces providers' base URLs by id (the
	// --provider-base-url setting, shared with key checks).
	BaseURLs providers.BaseURLs
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
	// BodyTimeout bounds the arrival of the request's body, counted from
	// the call's start (as the server's ReadTimeout would): only a call
	// whose body has arrived gets Timeout. Default: 30 s.
	BodyTimeout time.Duration
	// MaxInFlight bounds the calls forwarded at once by this replica,
	// MaxInFlightPerWorkspace those of one workspace and
	// MaxInFlightPerToken those of one proxy token (a 429 past them).
	// Defaults: 512, 64, 16.
	MaxInFlight, MaxInFlightPerWorkspace, MaxInFlightPerToken int
	// RetryBufferBytes bounds the bytes of request bodies kept for a retry
	// across the calls in flight; a call whose body would pass it is
	// refused (429). Default: 128 MiB.
	RetryBufferBytes int64
	// AllowEndpoints adds endpoints to providers' rule tables, each
	// "provider=METHOD /path" (--proxy-allow-endpoint).
	AllowEndpoints []string
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
	rules   map[string]*providerRules
	bounds  *bounds
	bases   baseURLCache
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
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 512
	}
	if cfg.MaxInFlightPerWorkspace <= 0 {
		cfg.MaxInFlightPerWorkspace = 64
	}
	if cfg.MaxInFlightPerToken <= 0 {
		cfg.MaxInFlightPerToken = 16
	}
	if cfg.RetryBufferBytes <= 0 {
		cfg.RetryBufferBytes = 128 << 20
	}
	rules, err := compileRules(cfg.Providers, cfg.AllowEndpoints)
	if err != nil {
		return nil, err
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
	b := newBounds(cfg)
	return &Proxy{cfg: cfg, metrics: newMetrics(cfg.Registerer, cfg.Recorder, b), rules: rules, bounds: b}, nil
}

// Call is one proxied call, as the handler authorized it.
type Call struct {
	Workspace string
	Provider  string
	// Path is what follows /proxy/{provider} (with its leading slash),
	// escaped as the caller sent it.
	Path string
	// Caller is the calling token's id; Models, when set, the only models
	// it may call. Issuer is the id of the resolver token that minted a
	// proxy token ("" when a resolver token calls itself): a proxy token's
	// calls in flight are bounded (Config.MaxInFlightPerToken).
	Caller    string
	Issuer    string
	Models    []string
	RequestID string
	// ModelHint is the model a trusted caller (a resolver token) named in
	// X-Keybroker-Model, used only when the call itself names none: the
	// body's or the path's model always wins, so that the model checked
	// is the one the provider serves. Empty for proxy tokens.
	ModelHint string
}

// hopHeaders are the hop-by-hop headers of RFC 9110 (and their kin).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// Failure is an answer of keybroker's own: an error's status, code and
// message, and when to retry (429s).
type Failure struct {
	Status        int
	Code, Message string
	RetryAfter    time.Duration
}

// Fail renders a Failure (keybroker's error shape); nothing has been
// written when the proxy calls it.
type Fail func(Failure)

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
	prov, ok := p.cfg.Providers.Lookup(call.Provider)
	if !ok || prov.IsAdmin() { // an admin credential is never proxied
		fail(Failure{Status: http.StatusNotFound, Code: "unknown_provider", Message: "no such provider"})
		return
	}
	rules := p.rules[prov.ID]
	segs, why := cleanSegments(call.Path, slashSegment(prov, call.Path))
	if why != "" {
		fail(Failure{Status: http.StatusForbidden, Code: "path_not_allowed", Message: why + "; the proxy forwards clean paths only"})
		return
	}
	rule, pathModel, ok := rules.match(r.Method, segs)
	if !ok {
		ep := r.Method + " " + call.Path
		if len(ep) > 200 {
			ep = ep[:200] + "…"
		}
		fail(Failure{Status: http.StatusForbidden, Code: "endpoint_not_allowed", Message: fmt.Sprintf(
			"%s is not an inference endpoint of %s; an operator may allow it with --proxy-allow-endpoint '%s=%s'", strings.ToValidUTF8(ep, "?"), prov.ID, prov.ID, strings.ToValidUTF8(ep, "?"))})
		return
	}
	if i, ok := rule.wilds["deployment"]; ok {
		pathModel = unescape(segs[i]) // Azure's: a model or its deployment (route tells)
	}
	header, why := rules.forwardHeaders(r.Header)
	if why != "" {
		fail(Failure{Status: http.StatusForbidden, Code: "header_not_allowed", Message: why})
		return
	}
	if r.ContentLength > p.cfg.MaxRequestBytes {
		fail(Failure{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("request body is larger than %d bytes", p.cfg.MaxRequestBytes)})
		return
	}
	leave, over, bound := p.bounds.enter(call.Workspace, proxyTokenOf(call))
	if over != nil {
		p.metrics.bounded.WithLabelValues(bound).Inc()
		fail(*over)
		return
	}
	defer leave()

	// The body arrives under the normal deadline; only then does the call
	// get its whole Timeout (a stream may last minutes). A body that stops
	// half-way holds its connection for BodyTimeout, not for Timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(p.cfg.BodyTimeout))
	callDeadline := start.Add(p.cfg.Timeout)
	ctx, cancel := context.WithDeadline(r.Context(), callDeadline)
	defer cancel()

	// A body known to be small is read whole: it can be sent twice, and
	// its model can be read. A larger one (or one of unknown length)
	// streams through, and the call is not retried.
	// Its bytes are reserved in the retry buffer as they arrive (within
	// the replica's bound and the workspace's share), and given back once
	// no retry can happen (releaseKept).
	var kept []byte
	releaseKept := func() {}
	limited := http.MaxBytesReader(w, r.Body, p.cfg.MaxRequestBytes)
	var streamed *callerBody
	if r.ContentLength >= 0 && r.ContentLength <= p.cfg.RetryBodyLimit {
		var err error
		kept, releaseKept, err = p.bounds.keepBody(limited, r.ContentLength, call.Workspace)
		var over *keptRefusal
		switch {
		case errors.As(err, &over):
			p.metrics.bounded.WithLabelValues(over.bound).Inc()
			fail(over.failure)
			return
		case err != nil:
			fail(p.bodyFailure(err))
			return
		}
		defer releaseKept()
		_ = rc.SetReadDeadline(callDeadline)
	} else {
		streamed = &callerBody{r: limited, arrived: func() { _ = rc.SetReadDeadline(callDeadline) }}
	}
	_ = rc.SetWriteDeadline(callDeadline)

	// Azure's model is known only with the key (a deployment's name is
	// mapped back to its model): route judges the token's model list.
	model, f := p.callModel(r, rule, pathModel, kept, call, prov.Credential.Kind == providers.KindAzureOpenAI)
	if f != nil {
		fail(*f)
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
	// Derived: the proxy signs with the credential minted from the key
	// (an STS session), never with the long-lived one, even where the
	// operator lets resolve hand that out.
	res, err := p.cfg.Keys.Resolve(ctx, broker.ResolveRequest{Workspace: call.Workspace, Provider: call.Provider, Model: model, Caller: call.Caller, Derived: true})
	if err != nil {
		f := resolveFailure(err)
		rec.Status = f.Status
		fail(f)
		return
	}
	for attempt := 0; ; attempt++ {
		rec.Scope, rec.KeyID, rec.KeyVersion, rec.BYOK, rec.Retried = string(res.ScopeKind), res.KeyID, res.Version, res.IsBYOK, attempt > 0
		// Where the call goes depends on the key that serves it (a
		// Bedrock key's region), so it is worked out per attempt.
		base, err := p.bases.parse(p.cfg.BaseURLs.ProxyURL(prov, res.Credential))
		if err != nil || base.Scheme == "" || base.Host == "" {
			rec.Status = http.StatusInternalServerError
			fail(Failure{Status: http.StatusInternalServerError, Code: "internal_error", Message: "the provider's base URL is invalid"})
			return
		}
		tg, refused := route(prov, call, segs, rule, model, res.Credential, kept)
		if refused != nil {
			rec.Status = refused.Status
			fail(*refused)
			return
		}
		var reqBody io.Reader = streamed
		length := r.ContentLength
		switch {
		case tg.body != nil: // Azure: the body's model became the deployment's name
			reqBody, length = bytes.NewReader(tg.body), int64(len(tg.body))
		case kept != nil:
			reqBody = bytes.NewReader(kept)
		}
		out, err := p.outbound(ctx, r, header, base, tg.path, prov, res.Credential, reqBody, length)
		if err != nil {
			rec.Status = http.StatusBadGateway
			fail(Failure{Status: http.StatusBadGateway, Code: "upstream_error", Message: "could not build the request to the provider"})
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
			f := upstreamFailure(ctx, err)
			if berr := streamed.failed(); berr != nil {
				f = p.bodyFailure(berr) // the caller's body broke off, not the provider
			}
			span.SetStatus(codes.Error, f.Code)
			span.End()
			rec.Status = f.Status
			fail(f)
			return
		}
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if outcome := refusal(resp.StatusCode); outcome != "" {
			// Report what the provider answered. A 429 cools the key
			// down as any report would. A refusal is reported as the
			// proxy's observation of a call the caller chose: the key
			// leaves this token's chain (this call's retry and its next
			// calls), not everyone's, until keybroker's own check with
			// the provider confirms it. Either way, resolving again for
			// this caller gives the next key.
			if _, rerr := p.cfg.Keys.Report(context.WithoutCancel(ctx), broker.ReportRequest{Caller: call.Caller, RequestID: call.RequestID,
				ResolutionID: res.ResolutionID, Outcome: outcome, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
				Proxied: true}); rerr != nil {
				p.cfg.Logger.WarnContext(ctx, "proxy: could not report the provider's refusal", "provider", call.Provider, "key_id", res.KeyID, "error", rerr)
			}
			if attempt == 0 && kept != nil {
				next, nerr := p.cfg.Keys.Resolve(ctx, broker.ResolveRequest{Workspace: call.Workspace, Provider: call.Provider, Model: model, Caller: call.Caller, Derived: true})
				// The next key serves only a call it can route (an Azure
				// key deploying the model, a Vertex key of the path's
				// project): else the first answer goes back.
				if nerr == nil && (next.KeyID != res.KeyID || next.ScopeKind != res.ScopeKind) && routes(prov, call, segs, rule, model, next.Credential, kept) {
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
					resp.Body.Close()
					span.SetStatus(codes.Error, "refused: retried with another key")
					span.End()
					res = next
					continue
				}
			}
		}
		// No retry can happen any more: the kept body's bytes go back to
		// the buffer while the answer streams.
		releaseKept()
		kept = nil
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

// proxyTokenOf is the id the per-token bound counts: a proxy token's.
func proxyTokenOf(call Call) string {
	if call.Issuer == "" {
		return ""
	}
	return call.Caller
}

// callModel is the model that picks the key: the path's (Google, a model's
// listing), else the body's first model field, else a resolver token's
// hint. A proxy token with a model list may call only calls whose every
// model (nested ones included) is on it.
func (p *Proxy) callModel(r *http.Request, rule *rule, pathModel string, kept []byte, call Call, listLater bool) (string, *Failure) {
	var found []providers.FoundModel
	if rule.models != nil && len(kept) > 0 && providers.IsJSON(r.Header.Get("Content-Type")) {
		var problem *providers.BodyProblem
		if found, problem = providers.ReadModels(kept, rule.models); problem != nil {
			if problem.AboutModel {
				return "", &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: problem.Msg}
			}
			return "", &Failure{Status: http.StatusBadRequest, Code: "malformed_json", Message: problem.Msg}
		}
	}
	model := pathModel
	if !rule.pathModel {
		for _, m := range found {
			if m.Field == rule.modelFirst {
				model = rule.modelName(m.Value)
				break
			}
		}
	}
	if len(call.Models) > 0 {
		if model == "" {
			msg := "this token may call only some models, and the call names none (a JSON body's \"model\", or Google's path /models/{model}:...)"
			if kept == nil && r.ContentLength != 0 {
				msg = fmt.Sprintf("this token may call only some models, and a body over %d bytes (or of unknown length) is not read for its model", p.cfg.RetryBodyLimit)
			}
			return "", &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: msg}
		}
		if !listLater && !slices.Contains(call.Models, model) {
			return "", &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: "this token may not call this model"}
		}
		for _, m := range found {
			if listLater && m.Field == rule.modelFirst {
				continue // judged by route, once the key says which model it is
			}
			if m.Missing {
				return "", &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: "this token may call only some models, and " + m.Field +
					" is not named: the provider would pick its default model (name one of the token's)"}
			}
			if !m.IsString || !slices.Contains(call.Models, rule.modelName(m.Value)) {
				return "", &Failure{Status: http.StatusForbidden, Code: "model_not_allowed", Message: "this token may not call the model named in " + m.Field}
			}
		}
	}
	if model == "" {
		model = call.ModelHint
	}
	return model, nil
}

// callerBody is a request body that streams through to the provider: it
// gives the call its whole deadline once the body has arrived, and keeps
// the error that broke it off.
type callerBody struct {
	r       io.Reader
	arrived func()
	mu      sync.Mutex
	err     error
}

func (b *callerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.arrived()
	case err != nil:
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

// failed is the error that broke the body off, if any.
func (b *callerBody) failed() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// slashSegment is the index of the segment of a caller's escaped path
// that may hold an escaped '/': Amazon Bedrock's {model} (/model/{model}/...),
// which may be an ARN; -1 for every other path.
func slashSegment(prov *providers.Provider, escaped string) int {
	if prov != nil && prov.Credential.Kind == providers.KindAWSBedrock && strings.HasPrefix(escaped, "/model/") {
		return 1
	}
	return -1
}

// target is where one attempt goes: the escaped path at the provider, and
// the model the call serves (Azure: the model of the deployment named),
// and the body when it changes (Azure's v1 API reads the deployment's
// name in the body's model); nil: the caller's.
type target struct {
	path  string
	model string
	body  []byte
}

// route works out an attempt's target for the credential that serves it
// (a Bedrock key's modelMap, an Azure key's deployments, a Vertex key's
// project and location), or refuses the call for that credential (a model
// with no deployment, another project): the refusal happens before any
// byte goes to the provider.
func route(prov *providers.Provider, call Call, segs []string, rule *rule, model string, cred providers.Credential, body []byte) (target, *Failure) {
	switch prov.Credential.Kind {
	case providers.KindAWSBedrock:
		return target{path: bedrockPath(call.Path, segs, rule, model, cred), model: model}, nil
	case providers.KindAzureOpenAI:
		return azureRoute(call, segs, rule, model, cred, body)
	case providers.KindGCPVertex:
		return vertexRoute(call, segs, rule, model, cred)
	}
	return target{path: call.Path, model: model}, nil
}

// routes reports whether cred can serve the call (route refuses nothing).
func routes(prov *providers.Provider, call Call, segs []string, rule *rule, model string, cred providers.Credential, body []byte) bool {
	_, f := route(prov, call, segs, rule, model, cred, body)
	return f == nil
}

// bedrockPath is the escaped path of a Bedrock call: the caller's, except
// that the path's {model} (/model/{model}/...) becomes the model the
// key's modelMap maps it to (an inference profile), when it has one.
func bedrockPath(escaped string, segs []string, rule *rule, pathModel string, cred providers.Credential) string {
	if !rule.pathModel || pathModel == "" || len(segs) < 2 || segs[0] != "model" {
		return escaped
	}
	mapped := providers.BedrockModel(cred, pathModel)
	if mapped == pathModel {
		return escaped
	}
	out := slices.Clone(segs)
	out[1] = awsEscape(mapped)
	return "/" + strings.Join(out, "/")
}

// awsEscape escapes a path segment as AWS's SDKs do: every byte but
// letters, digits and - . _ ~ (a model id's ':', an ARN's '/').
func awsEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// outbound builds the request to the provider: the caller's method, path,
// query (without a key) and the headers forwardHeaders let through, plus
// the key.
func (p *Proxy) outbound(ctx context.Context, r *http.Request, header http.Header, base *url.URL, escapedPath string, prov *providers.Provider, cred providers.Credential, body io.Reader, length int64) (*http.Request, error) {
	target := *base
	target.RawPath = strings.TrimRight(base.EscapedPath(), "/") + escapedPath
	var err error
	if target.Path, err = url.PathUnescape(target.RawPath); err != nil {
		return nil, err
	}
	target.RawQuery = ""
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		q.Del("key") // Google's query-string credential
		q.Del("api-key")
		q.Del("subscription-key")
		target.RawQuery = q.Encode()
	}
	// The request is made for target itself: its string parsed again
	// would be the same URL, for a microsecond a call.
	out, err := http.NewRequestWithContext(ctx, r.Method, "/", body)
	if err != nil {
		return nil, err
	}
	out.URL = &target
	out.ContentLength = length // a body that streams through keeps its length when it has one (-1: chunked)
	out.Header = header.Clone()
	out.Host = target.Host // signed by SigV4: the host the request goes to
	dropHopHeaders(out.Header)
	if prov.Authorize == nil {
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
	// Last: a signature (Bedrock's SigV4) covers the headers and the
	// host, so nothing changes the request after it.
	if err := prov.Authorize(out, cred); err != nil {
		return nil, err
	}
	return out, nil
}

// baseURLCache holds the providers' base URLs parsed (a few per provider:
// one per Bedrock region, Azure resource or Vertex location in use), so
// that a call does not parse its base URL again. Past maxBaseURLs
// distinct URLs a URL is parsed per call.
type baseURLCache struct {
	parsed sync.Map // string → *url.URL, never changed once stored
	count  atomic.Int64
}

const maxBaseURLs = 4096

func (c *baseURLCache) parse(raw string) (*url.URL, error) {
	if u, ok := c.parsed.Load(raw); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if c.count.Load() < maxBaseURLs {
		if _, loaded := c.parsed.LoadOrStore(raw, u); !loaded {
			c.count.Add(1)
		}
	}
	return u, nil
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

// ownerHeaders name the account or project that owns the key in a
// provider's answer; they never go back to the caller.
var ownerHeaders = []string{"Openai-Organization", "Openai-Project", "Anthropic-Organization-Id", "X-Goog-Project-Id"}

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
	// Who owns the key is the key owner's business, not the sandbox's: the
	// providers name the account behind the key in these (the hosted
	// key's above all).
	for _, name := range ownerHeaders {
		h.Del(name)
	}
	h.Del("Content-Length")
	if resp.ContentLength >= 0 && resp.ContentLength <= p.cfg.MaxResponseBytes {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	h.Set("X-Keybroker-Key-Id", res.KeyID)
	h.Set("X-Keybroker-Scope", string(res.ScopeKind))
	h.Set("X-Keybroker-Byok", strconv.FormatBool(res.IsBYOK))
	// A stream (server-sent events, or an answer of unknown length) is
	// flushed chunk by chunk, its headers at once; an answer of known
	// length goes out in as few writes as its size allows.
	ct := resp.Header.Get("Content-Type")
	streaming := resp.ContentLength < 0 || strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/vnd.amazon.eventstream")
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

// bodyFailure says why the caller's body could not be read.
func (p *Proxy) bodyFailure(err error) Failure {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return Failure{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("request body is larger than %d bytes", p.cfg.MaxRequestBytes)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return Failure{Status: http.StatusRequestTimeout, Code: "body_timeout", Message: fmt.Sprintf("the request body did not arrive within %s", p.cfg.BodyTimeout)}
	}
	return Failure{Status: http.StatusBadRequest, Code: "bad_request", Message: "could not read the request body"}
}

// resolveFailure maps the broker's answer to the proxy's error. When every
// key that could serve is cooling down, the answer is the provider's own
// kind: 429 with Retry-After, which SDKs back off from and retry.
func resolveFailure(err error) Failure {
	var noKey *broker.NoKeyError
	var cooling *broker.CoolingDownError
	switch {
	case errors.As(err, &cooling):
		return Failure{Status: http.StatusTooManyRequests, Code: "keys_cooling_down", RetryAfter: max(cooling.RetryAfter, time.Second),
			Message: "every key that could serve this call is cooling down after the provider's 429 (" + cooling.Reason + "); retry after the time given"}
	case errors.Is(err, broker.ErrKeysCoolingDown):
		return Failure{Status: http.StatusTooManyRequests, Code: "keys_cooling_down", RetryAfter: time.Second,
			Message: "every key that could serve this call is cooling down after the provider's 429"}
	case errors.As(err, &noKey):
		return Failure{Status: http.StatusNotFound, Code: "no_key", Message: "no key may serve this call (" + noKey.Reason + ")"}
	case errors.Is(err, broker.ErrMintFailed):
		return Failure{Status: http.StatusBadGateway, Code: "credential_mint_failed",
			Message: "the provider's token service did not mint a short-lived credential from the key (the cause is in keybroker's log)"}
	case errors.Is(err, broker.ErrMintBusy):
		return Failure{Status: http.StatusServiceUnavailable, Code: "credential_mint_busy", RetryAfter: time.Second,
			Message: "this keybroker is minting as many short-lived credentials as it may at once; retry after the time given"}
	case errors.Is(err, broker.ErrInvalidRequest), errors.Is(err, broker.ErrInvalidID):
		return Failure{Status: http.StatusBadRequest, Code: "invalid_request", Message: "the workspace, provider or model is not valid"}
	}
	return Failure{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the key could not be read; try again"}
}

// upstreamFailure maps a failed round trip.
func upstreamFailure(ctx context.Context, err error) Failure {
	var netErr net.Error
	switch {
	case errors.Is(err, errHeaderTimeout), ctx.Err() != nil, errors.As(err, &netErr) && netErr.Timeout():
		return Failure{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Message: "the provider did not answer in time"}
	}
	return Failure{Status: http.StatusBadGateway, Code: "upstream_unreachable", Message: "the provider could not be reached"}
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
