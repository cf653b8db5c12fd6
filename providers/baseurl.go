package providers

import (
	"fmt"
	"net/url"
	"strings"
)

// BaseURLs replaces providers' API base URLs, by provider id: a stand-in
// in tests, an egress proxy or a private endpoint in an air-gapped site.
// The key check and the credential proxy both take their base URL from
// it (Of); `keybroker serve` and `keybroker dev` fill it from
// --provider-base-url and KEYBROKER_PROVIDER_<ID>_BASE_URL
// (BaseURLsFromEnv).
type BaseURLs map[string]string

// Of is where the calls to p go: its override, else its own base URL,
// without a trailing '/'.
func (b BaseURLs) Of(p *Provider) string {
	if u, ok := b[p.ID]; ok && u != "" {
		return strings.TrimRight(u, "/")
	}
	return strings.TrimRight(p.Check.BaseURL, "/")
}

// For is where the calls to p with credential c go: its override, else
// the credential's own address (p.BaseURLFor), else p's base URL, without
// a trailing '/'.
func (b BaseURLs) For(p *Provider, c Credential) string {
	if u, ok := b[p.ID]; ok && u != "" {
		return strings.TrimRight(u, "/")
	}
	if p.BaseURLFor != nil {
		return strings.TrimRight(p.BaseURLFor(c), "/")
	}
	return strings.TrimRight(p.Check.BaseURL, "/")
}

// Validate checks that every override is an http(s) URL with a host.
func (b BaseURLs) Validate() error {
	for id, raw := range b {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("providers: the base URL of %s must be an http(s) URL, not %q", id, raw)
		}
	}
	return nil
}

// EnvName is the environment variable that overrides the base URL of
// provider id: KEYBROKER_PROVIDER_<ID>_BASE_URL.
func EnvName(id string) string {
	return "KEYBROKER_PROVIDER_" + strings.ToUpper(id) + "_BASE_URL"
}

// BaseURLsFromEnv merges the overrides of the environment (getenv, for
// each provider of reg) with those of flags; a flag wins.
func BaseURLsFromEnv(reg *Registry, getenv func(string) string, flags map[string]string) BaseURLs {
	out := make(BaseURLs, len(flags))
	for _, p := range reg.All() {
		if v := getenv(EnvName(p.ID)); v != "" {
			out[p.ID] = v
		}
	}
	for id, u := range flags {
		out[id] = u
	}
	return out
}
