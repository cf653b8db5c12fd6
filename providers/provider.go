package providers

import (
	"fmt"
	"net/http"
	"sort"
)

// Provider is a model or tool provider whose credentials keybroker holds:
// everything keybroker knows of it, in one entry of its family's file.
type Provider struct {
	// ID is the provider's id in paths and the API ("openai").
	ID string
	// DisplayName is for people ("OpenAI").
	DisplayName string
	// Credential is the provider's credential kind and fields.
	Credential Schema
	// Authorize puts a credential into a request to the provider: the
	// key check's and the credential proxy's.
	Authorize Authorizer
	// Check is the provider's cheapest authenticated call, with which a
	// credential is tested.
	Check CheckSpec
	// Proxy says which paths the credential proxy forwards.
	Proxy ProxySpec
	// ModelName turns a model as a request body names it into the
	// provider's model id (Google's bodies say "models/gemini-..."); nil
	// takes it as it is.
	ModelName func(string) string
	// Derive, when set, mints the short-lived credential that resolve
	// hands out and the proxy sends, instead of the long-lived one (which
	// leaves keybroker only where an operator allows it for the provider).
	Derive Deriver
	// Dev is the fake credential `keybroker dev` seeds as the hosted key:
	// it passes the format rule, so resolve serves it, and the provider
	// accepts it never.
	Dev Credential
	// DevDerived, for a provider whose Authorize takes only a derived
	// credential (Vertex's access token), is what Derive would make of
	// Dev, with a fake token: what the generated reference shows as sent
	// and what the catalogue test authorizes with. Zero when Authorize
	// takes Dev itself.
	DevDerived Credential
	// AdminOf, on an admin provider (openai-admin), names the provider
	// whose keys its credential manages: such a credential is never
	// resolved nor served by the proxy (admin.go).
	AdminOf string
	// KeyAdmin, on a provider whose keys an admin API manages, is what it
	// can do (rotate, revoke) and which admin provider's credential it
	// takes; nil: expiry warnings only.
	KeyAdmin *KeyAdmin
}

// IsAdmin says whether p is an admin provider: its credentials manage
// another provider's keys and are never resolved.
func (p *Provider) IsAdmin() bool { return p.AdminOf != "" }

// FormatHint is the hint of the provider's first secret field: what a key
// looks like.
func (p *Provider) FormatHint() string {
	for _, f := range p.Credential.Fields {
		if f.Secret {
			return f.Hint
		}
	}
	return ""
}

// Validate checks c against the provider's credential schema and format
// rules: a *RefusalError (ErrInvalidKey) that names what is wrong without
// quoting a value.
func (p *Provider) Validate(c Credential) error { return p.Credential.validate(p.DisplayName, c) }

// Model is the provider's model id for a model a request body names.
func (p *Provider) Model(bodyModel string) string {
	if p.ModelName == nil {
		return bodyModel
	}
	return p.ModelName(bodyModel)
}

// Authorizer puts a credential into a request: a header today, a SigV4
// signature or a minted bearer token for the kinds to come.
type Authorizer func(r *http.Request, c Credential) error

// headerKey sends the API key as the value of header name, after prefix
// ("Bearer ").
func headerKey(name, prefix string) Authorizer {
	return func(r *http.Request, c Credential) error {
		key := c.APIKey()
		if key == "" {
			return fmt.Errorf("a credential of kind %q has no API key to send", c.Kind())
		}
		r.Header.Set(name, prefix+key)
		return nil
	}
}

// The ways providers take an API key.
var (
	// bearerKey: "Authorization: Bearer <key>".
	bearerKey = headerKey("Authorization", "Bearer ")
	// xAPIKey: "x-api-key: <key>".
	xAPIKey = headerKey("X-Api-Key", "")
)

// CheckSpec is a provider's cheapest authenticated call: GET BaseURL+Path
// with the credential put in by the provider's Authorize, and Headers
// (which the credential proxy also sends, unless the caller chose a value).
type CheckSpec struct {
	// BaseURL is the provider's API (BaseURLs replaces it: a stand-in, an
	// egress proxy).
	BaseURL string
	// BaseURLFor, when set, is the provider's API for credential c, where
	// it depends on the credential (Bedrock's region); BaseURL is then the
	// address of the default (a BaseURLs override still wins).
	BaseURLFor func(c Credential) string
	Path       string
	Headers    map[string]string
}

// ProxySpec says what the credential proxy forwards to a provider (to
// Check.BaseURL): only its inference endpoints, each one method and one
// exact path, and only the common request headers (see
// internal/runtime/proxy) and Headers. Everything else is refused; an
// operator may add endpoints (--proxy-allow-endpoint).
type ProxySpec struct {
	Endpoints []Endpoint
	// Headers are the request headers forwarded besides the common set.
	Headers []ProxyHeader
	// BaseURLFor, when set, is where the proxy forwards for credential c,
	// where it depends on the credential (Bedrock's runtime in the
	// credential's region); else Check.BaseURL (a BaseURLs override wins
	// over both).
	BaseURLFor func(c Credential) string
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
	// checked against a proxy token's models (after the provider's
	// ModelName); the first (after a {model} path segment) picks the key.
	Models []string
}

// ProxyHeader is a request header the proxy forwards to a provider;
// Values, when set, are the only values it may carry (each of a
// comma-separated list; another is refused with 403).
type ProxyHeader struct {
	Name   string
	Values []string
}

// post and get keep the catalogue's endpoint lists short.
func post(path string, models ...string) Endpoint {
	return Endpoint{Method: http.MethodPost, Path: path, Models: models}
}
func get(path string) Endpoint { return Endpoint{Method: http.MethodGet, Path: path} }

// builtin is the catalogue: each family's file adds its providers.
var builtin []Provider

func register(ps ...Provider) { builtin = append(builtin, ps...) }

// Registry is a set of providers: those keys are resolved for (All) and
// the admin providers (Admins).
type Registry struct {
	byID   map[string]*Provider
	list   []Provider
	admins []Provider
}

// DefaultRegistry returns the built-in providers.
func DefaultRegistry() *Registry { return NewRegistry(builtin...) }

// NewRegistry builds a registry of the given providers.
func NewRegistry(providers ...Provider) *Registry {
	r := &Registry{byID: make(map[string]*Provider, len(providers))}
	for _, p := range providers {
		if p.IsAdmin() {
			r.admins = append(r.admins, p)
		} else {
			r.list = append(r.list, p)
		}
	}
	sort.Slice(r.list, func(i, j int) bool { return r.list[i].ID < r.list[j].ID })
	sort.Slice(r.admins, func(i, j int) bool { return r.admins[i].ID < r.admins[j].ID })
	for i := range r.list {
		r.byID[r.list[i].ID] = &r.list[i]
	}
	for i := range r.admins {
		r.byID[r.admins[i].ID] = &r.admins[i]
	}
	return r
}

// Admins returns the admin providers, sorted by id.
func (r *Registry) Admins() []Provider { return append([]Provider(nil), r.admins...) }

// Lookup returns the provider with id.
func (r *Registry) Lookup(id string) (*Provider, bool) {
	p, ok := r.byID[id]
	return p, ok
}

// All returns every provider keys are resolved for (not the admin
// providers), sorted by id.
func (r *Registry) All() []Provider { return append([]Provider(nil), r.list...) }
