package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keybroker/keybroker/providers"
)

// The rule table: which calls the proxy forwards to each provider. A call
// passes when its method and its path match one endpoint of the provider
// (providers.ProxySpec) or one an operator added (Config.AllowEndpoints),
// segment by segment: no prefix matches, so "/searchAnything" is not
// "/search" and "/v1/chat/completions/{id}" is not "/v1/chat/completions".

// segment is one segment of an endpoint's path: a literal, matched
// exactly as the caller escaped it, or a wildcard of one segment with,
// for Google's custom methods, a literal suffix (":generateContent").
type segment struct {
	lit  string
	wild string
	verb string
}

// rule is one endpoint, compiled.
type rule struct {
	method, pattern string
	segs            []segment
	// models are where a JSON body names models (nil: the body is not
	// read for one); modelName turns their values into the provider's
	// model ids (providers.Provider.Model: Google's "models/" prefix).
	models     *providers.ModelFields
	modelFirst string // the body field that picks the key ("" when the path names the model)
	modelName  func(string) string
	pathModel  bool // the path has a {model} segment
	// wilds are the indexes of the path's wildcard segments, by name
	// ({deployment}: Azure's; {project}, {location}: Vertex's).
	wilds map[string]int
}

// providerRules are a provider's rules and forwarded headers.
type providerRules struct {
	rules []rule
	// headers are the provider's own forwarded headers (canonical name),
	// with the values they may take (nil: any).
	headers map[string][]string
}

// commonHeaders are forwarded to every provider: what an SDK needs to be
// understood and nothing that selects an account, a billing project or a
// feature (the provider's own headers are in its ProxySpec). X-Stainless-*
// (the official SDKs' language, version and retry count) passes too.
var commonHeaders = map[string]bool{"Accept": true, "Accept-Encoding": true, "Content-Type": true, "User-Agent": true, "Idempotency-Key": true}

// allowedMethods are the methods a rule may name: those the router sends
// to the proxy.
var allowedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// compileRules builds every provider's rules: the registry's endpoints and
// the operator's additions, each "provider=METHOD /path".
func compileRules(reg *providers.Registry, added []string) (map[string]*providerRules, error) {
	out := map[string]*providerRules{}
	for _, prov := range reg.All() {
		pr := &providerRules{headers: map[string][]string{}}
		for _, ep := range prov.Proxy.Endpoints {
			r, err := compileRule(ep, &prov)
			if err != nil {
				return nil, fmt.Errorf("proxy: %s endpoint %s %s: %w", prov.ID, ep.Method, ep.Path, err)
			}
			pr.rules = append(pr.rules, r)
		}
		for _, h := range prov.Proxy.Headers {
			pr.headers[http.CanonicalHeaderKey(h.Name)] = h.Values
		}
		out[prov.ID] = pr
	}
	for _, spec := range added {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		id, ep, err := parseAddedEndpoint(spec)
		prov, known := reg.Lookup(id)
		if err == nil && !known {
			err = fmt.Errorf("no provider %q in the registry", id)
		}
		var r rule
		if err == nil {
			r, err = compileRule(ep, prov)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: --proxy-allow-endpoint %q: %w (the form is provider=METHOD /path, e.g. openai=POST /v1/audio/transcriptions)", spec, err)
		}
		out[id].rules = append(out[id].rules, r)
	}
	return out, nil
}

// parseAddedEndpoint reads "provider=METHOD /path"; the body of a call to
// an added endpoint is read for a top-level "model" when it is JSON.
func parseAddedEndpoint(spec string) (string, providers.Endpoint, error) {
	id, rest, ok := strings.Cut(spec, "=")
	method, path, ok2 := strings.Cut(strings.TrimSpace(rest), " ")
	if !ok || !ok2 || strings.TrimSpace(id) == "" {
		return "", providers.Endpoint{}, fmt.Errorf("not provider=METHOD /path")
	}
	return strings.TrimSpace(id), providers.Endpoint{Method: method, Path: strings.TrimSpace(path), Models: []string{"model"}}, nil
}

func compileRule(ep providers.Endpoint, prov *providers.Provider) (rule, error) {
	if !slices.Contains(allowedMethods, ep.Method) {
		return rule{}, fmt.Errorf("method %q is not one of %s", ep.Method, strings.Join(allowedMethods, ", "))
	}
	segs, err := parsePattern(ep.Path)
	if err != nil {
		return rule{}, err
	}
	r := rule{method: ep.Method, pattern: ep.Path, segs: segs, modelName: prov.Model, wilds: map[string]int{}}
	for i, s := range segs {
		r.pathModel = r.pathModel || s.wild == "model"
		if s.wild != "" {
			r.wilds[s.wild] = i
		}
	}
	if len(ep.Models) > 0 {
		if r.models, err = providers.CompileModelFields(ep.Models); err != nil {
			return rule{}, err
		}
		if !r.pathModel {
			r.modelFirst = ep.Models[0]
		}
	}
	return r, nil
}

// parsePattern reads an endpoint's path: "/" and non-empty segments, each
// a literal of the characters a clean path may hold, "{name}" or
// "{name}:verb".
func parsePattern(p string) ([]segment, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("the path %q must start with /", p)
	}
	var segs []segment
	for _, s := range strings.Split(p[1:], "/") {
		switch {
		case s == "":
			return nil, fmt.Errorf("the path %q has an empty segment", p)
		case s == "." || s == "..":
			return nil, fmt.Errorf("the path %q has a dot segment", p)
		case strings.HasPrefix(s, "{"):
			name, verb, ok := strings.Cut(s[1:], "}")
			if !ok || !providers.IsName(name) || (verb != "" && (verb[0] != ':' || !isLiteral(verb[1:]) || strings.Contains(verb[1:], ":"))) {
				return nil, fmt.Errorf("the segment %q is not {name} or {name}:verb", s)
			}
			segs = append(segs, segment{wild: name, verb: verb})
		case !isLiteral(s):
			return nil, fmt.Errorf("the segment %q holds a character a clean path may not (letters, digits and -._~:@!$&'()*+,= only)", s)
		default:
			segs = append(segs, segment{lit: s})
		}
	}
	return segs, nil
}

func isLiteral(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !rawPathChar(s[i]) {
			return false
		}
	}
	return true
}

// rawPathChar: a character a clean path segment may hold as it is (RFC
// 3986's pchar, without ';', which some servers read as a parameter, and
// without '%', whose escapes are judged apart).
func rawPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:@!$&'()*+,=", c) >= 0
}

// escapedPathChar: a character a segment may hold percent-escaped. Never
// '/', '.', ';', '%' or '\' (an escape that decodes to one of them could
// make another path for the provider, or for a server in between, than
// the one judged here), nor a control character or a space.
func escapedPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_~:@!$&'()*+,=", c) >= 0
}

// cleanSegments splits a caller's escaped path into its segments, or says
// why it is not clean. slashSeg is the index of the one segment that may
// hold an escaped '/' (%2F), -1 for none: Amazon Bedrock's model id, when
// it is an ARN (an inference profile's: arn:aws:bedrock:...:inference-profile/...),
// which AWS's SDKs send so; the segment must then decode to an ARN none
// of whose '/'-separated parts is empty, "." or "..".
func cleanSegments(escaped string, slashSeg int) ([]string, string) {
	if !strings.HasPrefix(escaped, "/") || escaped == "/" {
		return nil, "the path names no endpoint"
	}
	segs := strings.Split(escaped[1:], "/")
	for n, s := range segs {
		switch s {
		case "":
			return nil, "the path has an empty segment (// or a trailing /)"
		case ".", "..":
			return nil, "the path has a dot segment"
		}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '%':
				d, ok := unhex(s, i)
				if !ok {
					return nil, "the path has a malformed percent-escape"
				}
				if d == '/' && n == slashSeg {
					if !isARNPath(unescape(s)) {
						return nil, "the path has the percent-escape %2F in a model id that is not an ARN"
					}
				} else if !escapedPathChar(d) {
					return nil, fmt.Sprintf("the path has the percent-escape %s, which is not forwarded", strings.ToUpper(s[i:i+3]))
				}
				i += 2
			case c == ';':
				return nil, "the path has ';' in a segment"
			case !rawPathChar(c):
				return nil, fmt.Sprintf("the path holds the character %q, which is not forwarded", rune(c))
			}
		}
	}
	return segs, ""
}

// isARNPath reports whether a decoded segment holding '/' is an ARN whose
// resource path has no empty, "." or ".." part (nothing a server decoding
// it could read as another path).
func isARNPath(v string) bool {
	if !strings.HasPrefix(v, "arn:") {
		return false
	}
	for _, part := range strings.Split(v, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

func unhex(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	h, l := hexVal(s[i+1]), hexVal(s[i+2])
	if h < 0 || l < 0 {
		return 0, false
	}
	return byte(h<<4 | l), true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unescape decodes a clean segment's escapes (cleanSegments checked them).
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			d, _ := unhex(s, i)
			b.WriteByte(d)
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// match finds the rule of method and the clean segments segs; the model
// is the path's {model}, when the rule has one.
func (pr *providerRules) match(method string, segs []string) (r *rule, model string, ok bool) {
	for i := range pr.rules {
		if m, ok := pr.rules[i].matchPath(segs); ok && pr.rules[i].method == method {
			return &pr.rules[i], m, true
		}
	}
	return nil, "", false
}

func (r *rule) matchPath(segs []string) (model string, ok bool) {
	if len(segs) != len(r.segs) {
		return "", false
	}
	for i, s := range r.segs {
		got := segs[i]
		if s.wild == "" {
			if got != s.lit {
				return "", false
			}
			continue
		}
		v, found := strings.CutSuffix(got, s.verb)
		if !found || v == "" {
			return "", false
		}
		v = unescape(v)
		if s.verb != "" && strings.Contains(v, ":") {
			return "", false // the verb is the last ':'; Google's model ids hold none
		}
		if s.wild == "model" {
			model = v
		}
	}
	return model, true
}

// forwardHeaders returns the headers of the call that go to the provider:
// the common set and the provider's own. A value the provider's list does
// not hold is refused (the message names it).
func (pr *providerRules) forwardHeaders(in http.Header) (http.Header, string) {
	out := make(http.Header, len(in))
	hop := map[string]bool{} // the hop-by-hop headers Connection names
	for _, v := range in.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			hop[http.CanonicalHeaderKey(strings.TrimSpace(name))] = true
		}
	}
	for k, vs := range in {
		switch values, own := pr.headers[k]; {
		case hop[k]:
			continue
		case commonHeaders[k] || strings.HasPrefix(k, "X-Stainless-"):
		case !own:
			continue
		case values != nil:
			for _, v := range vs {
				for _, item := range strings.Split(v, ",") {
					if item = strings.TrimSpace(item); item != "" && !slices.Contains(values, item) {
						return nil, fmt.Sprintf("%s: %s is not forwarded (allowed: %s)", strings.ToLower(k), quoteShort(item), strings.Join(values, ", "))
					}
				}
			}
		}
		out[k] = slices.Clone(vs)
	}
	return out, ""
}

// quoteShort quotes a caller's word in a message, cut to 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(s, "?"))
}
