package broker

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Provider is a model or tool provider whose API keys keybroker holds.
type Provider struct {
	// ID is the provider's id in paths and the API ("openai").
	ID string
	// DisplayName is for people ("OpenAI").
	DisplayName string
	// FormatHint tells an admin what a key looks like; the format rule
	// checks exactly that.
	FormatHint string
	// Check is the provider's cheapest authenticated call, with which a
	// key is tested.
	Check CheckSpec
	// Proxy says which paths the credential proxy forwards.
	Proxy ProxySpec

	rule keyRule
}

// AuthStyle is how a provider takes its key.
type AuthStyle string

const (
	// AuthBearer: "Authorization: Bearer <key>".
	AuthBearer AuthStyle = "bearer"
	// AuthXAPIKey: "x-api-key: <key>".
	AuthXAPIKey AuthStyle = "x-api-key"
	// AuthGoogAPIKey: "x-goog-api-key: <key>".
	AuthGoogAPIKey AuthStyle = "x-goog-api-key"
	// AuthAPIKeyScheme: "Authorization: Api-Key <key>".
	AuthAPIKeyScheme AuthStyle = "api-key"
)

// SetKey puts key into h as the style says; false for a style it does
// not know. Key checks and the credential proxy both send keys this way.
func (a AuthStyle) SetKey(h http.Header, key string) bool {
	switch a {
	case AuthBearer:
		h.Set("Authorization", "Bearer "+key)
	case AuthXAPIKey:
		h.Set("X-Api-Key", key)
	case AuthGoogAPIKey:
		h.Set("X-Goog-Api-Key", key)
	case AuthAPIKeyScheme:
		h.Set("Authorization", "Api-Key "+key)
	default:
		return false
	}
	return true
}

// ProxySpec says what the credential proxy forwards to a provider (to
// Check.BaseURL): only its inference endpoints, each one method and one
// exact path, and only the common request headers (see internal/runtime/proxy)
// and Headers. Everything else is refused; an operator may add endpoints
// (--proxy-allow-endpoint).
type ProxySpec struct {
	Endpoints []Endpoint
	// Headers are the request headers forwarded besides the common set.
	Headers []ProxyHeader
}

// Endpoint is one endpoint the credential proxy forwards.
type Endpoint struct {
	// Method is the HTTP method: GET or POST.
	Method string
	// Path is the exact path, segment by segment: literal segments,
	// "{name}" for one segment of any value, and "{name}:verb" for one
	// segment ending with the literal ":verb" (Google's custom methods).
	// "{model}" is the model the call serves. No prefix matches: the
	// path has as many segments as the pattern.
	Path string
	// Models are where a JSON body names models: "model" is the
	// top-level member, "tools[].model" the member of each object of the
	// top-level array tools, "tools[type=image_generation].model" the same,
	// required (for a token with a model list) in the objects whose type is
	// image_generation (the provider's default would serve otherwise),
	// "generateContentRequest.model" a member of a nested object. Each is
	// checked against a proxy token's models; the first (after a {model}
	// path segment) picks the key.
	Models []string
	// ModelPrefix is taken off a body model before it is checked
	// ("models/" for Google, whose bodies name "models/gemini-...").
	ModelPrefix string
}

// ProxyHeader is a request header the proxy forwards to a provider;
// Values, when set, are the only values it may carry (each of a
// comma-separated list; another is refused with 403).
type ProxyHeader struct {
	Name   string
	Values []string
}

// proxyPost and proxyGet keep the registry's endpoint lists short.
func proxyPost(path string, models ...string) Endpoint {
	return Endpoint{Method: http.MethodPost, Path: path, Models: models}
}
func proxyGet(path string) Endpoint { return Endpoint{Method: http.MethodGet, Path: path} }

// openAIListing is the models listing of an OpenAI-compatible API under
// prefix: the list, and one model.
func openAIListing(prefix string) []Endpoint {
	return []Endpoint{proxyGet(prefix + "/models"), proxyGet(prefix + "/models/{model}")}
}

// googleEndpoints are Gemini's inference endpoints under /v1beta and /v1:
// the model is the path's, never a body field (Google's API takes the
// path's); a body's own model names, when present, must be allowed too.
func googleEndpoints() []Endpoint {
	var out []Endpoint
	for _, v := range []string{"/v1beta", "/v1"} {
		g := func(verb string, models ...string) Endpoint {
			return Endpoint{Method: http.MethodPost, Path: v + "/models/{model}:" + verb, Models: models, ModelPrefix: "models/"}
		}
		out = append(out,
			g("generateContent"), g("streamGenerateContent"), g("countTokens", "generateContentRequest.model"),
			g("embedContent", "model"), g("batchEmbedContents", "requests[].model"),
			proxyGet(v+"/models"), proxyGet(v+"/models/{model}"))
	}
	return out
}

// anthropicBetas are the anthropic-beta features a sandbox may turn on:
// those that change only how the model answers the call at hand. Not
// forwarded: the Files API (a message could read the key owner's stored
// files), code execution and skills (containers that outlive the call and
// are reused by id), the MCP connector, batches, and any feature not
// listed here.
var anthropicBetas = []string{
	"prompt-caching-2024-07-31", "extended-cache-ttl-2025-04-11", "token-counting-2024-11-01", "pdfs-2024-09-25",
	"output-128k-2025-02-19", "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14",
	"fine-grained-tool-streaming-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
	"computer-use-2024-10-22", "computer-use-2025-01-24",
}

// CheckSpec is a provider's cheapest authenticated call: GET BaseURL+Path
// with the key sent as Auth says, and Headers.
type CheckSpec struct {
	// BaseURL is the provider's API (KEYBROKER_PROVIDER_<ID>_BASE_URL
	// replaces it: a stand-in, an egress proxy).
	BaseURL string
	Path    string
	Auth    AuthStyle
	Headers map[string]string
}

// keyRule is a provider's key format: loose enough to take every real key
// (providers change their formats), strict enough to catch a pasted
// sentence, a stray space or another provider's key.
type keyRule struct {
	prefixes       []string // the key starts with one of these (none: any)
	notPrefixes    []string // ...and not with one of these (another provider's)
	minLen, maxLen int
	allowed        func(byte) bool // every character after the prefix
	allowedText    string          // allowed, in words, for error messages
	// shape, when set, checks the whole key (a UUID) and says what is
	// wrong.
	shape func(string) string
}

// defaultProviders is the registry. Adding a provider is one entry.
var defaultProviders = []Provider{
	{ID: "openai", DisplayName: "OpenAI", FormatHint: `starts with "sk-" (not "sk-ant-"), 20 to 256 characters`,
		Check: CheckSpec{BaseURL: "https://api.openai.com", Path: "/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{proxyPost("/v1/chat/completions", "model"), proxyPost("/v1/completions", "model"),
			proxyPost("/v1/responses", "model", "tools[type=image_generation].model"), proxyPost("/v1/embeddings", "model")}, openAIListing("/v1")...),
			Headers: []ProxyHeader{{Name: "X-Client-Request-Id"}}},
		rule: keyRule{prefixes: []string{"sk-"}, notPrefixes: []string{"sk-ant-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "anthropic", DisplayName: "Anthropic", FormatHint: `starts with "sk-ant-", 20 to 256 characters`,
		Check: CheckSpec{BaseURL: "https://api.anthropic.com", Path: "/v1/models?limit=1", Auth: AuthXAPIKey,
			Headers: map[string]string{"anthropic-version": "2023-06-01"}},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{proxyPost("/v1/messages", "model"), proxyPost("/v1/messages/count_tokens", "model")}, openAIListing("/v1")...),
			Headers: []ProxyHeader{{Name: "Anthropic-Version"}, {Name: "Anthropic-Beta", Values: anthropicBetas}}},
		rule: keyRule{prefixes: []string{"sk-ant-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "google", DisplayName: "Google AI (Gemini)", FormatHint: `starts with "AIza", 39 characters`,
		Check: CheckSpec{BaseURL: "https://generativelanguage.googleapis.com", Path: "/v1beta/models?pageSize=1", Auth: AuthGoogAPIKey},
		Proxy: ProxySpec{Endpoints: googleEndpoints(), Headers: []ProxyHeader{{Name: "X-Goog-Api-Client"}}},
		rule:  keyRule{prefixes: []string{"AIza"}, minLen: 39, maxLen: 39, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "mistral", DisplayName: "Mistral AI", FormatHint: "32 letters and digits",
		Check: CheckSpec{BaseURL: "https://api.mistral.ai", Path: "/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{proxyPost("/v1/chat/completions", "model"), proxyPost("/v1/fim/completions", "model"),
			proxyPost("/v1/embeddings", "model")}, openAIListing("/v1")...)},
		rule: keyRule{minLen: 32, maxLen: 32, allowed: isAlnum, allowedText: "letters and digits"}},
	{ID: "exa", DisplayName: "Exa", FormatHint: "a UUID: 36 characters, hexadecimal digits in groups of 8-4-4-4-12",
		// Listing websets is authenticated and spends no search credit.
		Check: CheckSpec{BaseURL: "https://api.exa.ai", Path: "/websets/v0/websets?limit=1", Auth: AuthXAPIKey},
		Proxy: ProxySpec{Endpoints: []Endpoint{proxyPost("/search"), proxyPost("/contents"), proxyPost("/findSimilar"), proxyPost("/answer", "model")}},
		rule:  keyRule{minLen: 36, maxLen: 36, allowed: isHexOrDash, allowedText: "hexadecimal digits and '-'", shape: uuidShape}},
	{ID: "xai", DisplayName: "xAI (Grok)", FormatHint: `starts with "xai-", 20 to 256 characters`,
		Check: CheckSpec{BaseURL: "https://api.x.ai", Path: "/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{proxyPost("/v1/chat/completions", "model"), proxyPost("/v1/responses", "model", "tools[].model"),
			proxyPost("/v1/messages", "model"), proxyPost("/v1/embeddings", "model")}, openAIListing("/v1")...)},
		rule: keyRule{prefixes: []string{"xai-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "zai", DisplayName: "Z.ai (GLM)", FormatHint: "letters and digits with one '.' (id.secret), 20 to 128 characters",
		Check: CheckSpec{BaseURL: "https://api.z.ai", Path: "/api/paas/v4/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: []Endpoint{proxyPost("/api/paas/v4/chat/completions", "model"), proxyPost("/api/paas/v4/embeddings", "model"), proxyGet("/api/paas/v4/models")}},
		rule:  keyRule{minLen: 20, maxLen: 128, allowed: isAlnumOrDot, allowedText: "letters, digits and '.'", shape: oneDot}},
	{ID: "moonshot", DisplayName: "Moonshot AI (Kimi)", FormatHint: `starts with "sk-", 20 to 256 characters`,
		Check: CheckSpec{BaseURL: "https://api.moonshot.ai", Path: "/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: append([]Endpoint{proxyPost("/v1/chat/completions", "model")}, openAIListing("/v1")...)},
		rule:  keyRule{prefixes: []string{"sk-"}, notPrefixes: []string{"sk-ant-"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "fireworks", DisplayName: "Fireworks AI", FormatHint: `starts with "fw_", 20 to 256 characters`,
		Check: CheckSpec{BaseURL: "https://api.fireworks.ai", Path: "/inference/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: []Endpoint{proxyPost("/inference/v1/chat/completions", "model"), proxyPost("/inference/v1/completions", "model"),
			proxyPost("/inference/v1/embeddings", "model"), proxyGet("/inference/v1/models")}},
		rule: keyRule{prefixes: []string{"fw_"}, minLen: 20, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "together", DisplayName: "Together AI", FormatHint: "letters, digits, '-' and '_', 40 to 256 characters",
		Check: CheckSpec{BaseURL: "https://api.together.xyz", Path: "/v1/models", Auth: AuthBearer},
		Proxy: ProxySpec{Endpoints: []Endpoint{proxyPost("/v1/chat/completions", "model"), proxyPost("/v1/completions", "model"),
			proxyPost("/v1/embeddings", "model"), proxyGet("/v1/models")}},
		rule: keyRule{minLen: 40, maxLen: 256, allowed: isTokenChar, allowedText: "letters, digits, '-' and '_'"}},
	{ID: "baseten", DisplayName: "Baseten", FormatHint: "letters and digits with one '.' (prefix.secret), 20 to 128 characters",
		Check: CheckSpec{BaseURL: "https://api.baseten.co", Path: "/v1/models", Auth: AuthAPIKeyScheme},
		Proxy: ProxySpec{Endpoints: []Endpoint{proxyPost("/v1/chat/completions", "model"), proxyGet("/v1/models")}},
		rule:  keyRule{minLen: 20, maxLen: 128, allowed: isAlnumOrDot, allowedText: "letters, digits and '.'", shape: oneDot}},
}

// uuidShape checks the 8-4-4-4-12 groups of a UUID.
func uuidShape(key string) string {
	for i := 0; i < len(key); i++ {
		dash := i == 8 || i == 13 || i == 18 || i == 23
		if dash != (key[i] == '-') {
			return "is not a UUID (hexadecimal digits in groups of 8-4-4-4-12)"
		}
	}
	return ""
}

// oneDot checks an id.secret key: one '.', not at either end.
func oneDot(key string) string {
	i := strings.IndexByte(key, '.')
	if i <= 0 || i == len(key)-1 || strings.Count(key, ".") != 1 {
		return "must be two parts joined by one '.'"
	}
	return ""
}

// Registry is the set of supported providers.
type Registry struct {
	byID map[string]*Provider
	list []Provider
}

// DefaultRegistry returns the built-in providers.
func DefaultRegistry() *Registry { return NewRegistry(defaultProviders...) }

// NewRegistry builds a registry of the given providers.
func NewRegistry(providers ...Provider) *Registry {
	r := &Registry{byID: make(map[string]*Provider, len(providers))}
	r.list = append(r.list, providers...)
	sort.Slice(r.list, func(i, j int) bool { return r.list[i].ID < r.list[j].ID })
	for i := range r.list {
		r.byID[r.list[i].ID] = &r.list[i]
	}
	return r
}

// Lookup returns the provider with id.
func (r *Registry) Lookup(id string) (*Provider, bool) {
	p, ok := r.byID[id]
	return p, ok
}

// All returns every provider, sorted by id.
func (r *Registry) All() []Provider { return append([]Provider(nil), r.list...) }

// ValidateKey checks key against the provider's format rule. The error
// describes what is wrong without quoting the key.
func (p *Provider) ValidateKey(key string) error {
	reject := func(format string, args ...any) error {
		return refuse(ErrInvalidKey, "%s key %s", p.DisplayName, fmt.Sprintf(format, args...))
	}
	if key == "" {
		return reject("is empty")
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return reject("contains whitespace (at character %d); paste the key alone", i+1)
		case c < 0x20 || c == 0x7f:
			return reject("contains a control character (at character %d)", i+1)
		case c >= 0x80:
			return reject("contains a non-ASCII character (at character %d)", i+1)
		}
	}
	r := p.rule
	if len(key) < r.minLen || len(key) > r.maxLen {
		return reject("is %d characters long; expected %d to %d", len(key), r.minLen, r.maxLen)
	}
	body := key
	if len(r.prefixes) > 0 {
		matched := false
		for _, pre := range r.prefixes {
			if strings.HasPrefix(key, pre) {
				body, matched = key[len(pre):], true
				break
			}
		}
		if !matched {
			return reject("must start with %q", strings.Join(r.prefixes, `" or "`))
		}
	}
	for _, not := range r.notPrefixes {
		if strings.HasPrefix(key, not) {
			return reject("starts with %q, which is another provider's key", not)
		}
	}
	for i := 0; i < len(body); i++ {
		if !r.allowed(body[i]) {
			return reject("may contain only %s (character %d is not one)", r.allowedText, len(key)-len(body)+i+1)
		}
	}
	if r.shape != nil {
		if why := r.shape(key); why != "" {
			return reject("%s", why)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
func isAlnumOrDot(c byte) bool { return isAlnum(c) || c == '.' }
func isHexOrDash(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-'
}
func isTokenChar(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }
