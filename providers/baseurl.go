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

// CheckURL is where the key check of credential c goes: p's override,
// else p's address for c (Check.BaseURLFor), else Of.
func (b BaseURLs) CheckURL(p *Provider, c Credential) string {
	if u, ok := b[p.ID]; ok && u != "" || p.Check.BaseURLFor == nil {
		return b.Of(p)
	}
	return strings.TrimRight(p.Check.BaseURLFor(c), "/")
}

// ProxyURL is where the credential proxy forwards a call made with
// credential c: p's override, else p's address for c
// (Proxy.BaseURLFor), else Of.
func (b BaseURLs) ProxyURL(p *Provider, c Credential) string {
	if u, ok := b[p.ID]; ok && u != "" || p.Proxy.BaseURLFor == nil {
		return b.Of(p)
	}
	return strings.TrimRight(p.Proxy.BaseURLFor(c), "/")
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
	return "KEYBROKER_PROVIDER_" + envID(id) + "_BASE_URL"
}

// BaseURLsFromEnv merges the overrides of the environment (getenv, for
// each provider of reg) with those of flags; a flag wins.
func BaseURLsFromEnv(reg *Registry, getenv func(string) string, flags map[string]string) BaseURLs {
	out := make(BaseURLs, len(flags))
	for _, p := range append(reg.All(), reg.Admins()...) {
		if v := getenv(EnvName(p.ID)); v != "" {
			out[p.ID] = v
		}
	}
	for id, u := range flags {
		out[id] = u
	}
	return out
}

// MintEndpointEnvName is the environment variable that sets the address
// of the token service name (MintEnv.Endpoints) of provider id:
// KEYBROKER_PROVIDER_<ID>_<NAME>_URL (KEYBROKER_PROVIDER_BEDROCK_STS_URL
// → "sts" of bedrock).
func MintEndpointEnvName(id, name string) string {
	return "KEYBROKER_PROVIDER_" + envID(id) + "_" + strings.ToUpper(name) + "_URL"
}

// MintEndpointsFromEnv reads the token services' addresses from environ
// ("NAME=value" lines, as os.Environ gives them): each
// KEYBROKER_PROVIDER_<ID>_<NAME>_URL of a provider of reg becomes
// Endpoints[<name>] (lower case) of that provider's MintEnv; the longest
// provider id that matches wins, and <NAME> BASE is the base URL
// (BaseURLsFromEnv), not a token service. Each must be an http(s) URL
// with a host.
func MintEndpointsFromEnv(reg *Registry, environ []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || value == "" || !strings.HasPrefix(name, "KEYBROKER_PROVIDER_") || !strings.HasSuffix(name, "_URL") {
			continue
		}
		rest := strings.TrimSuffix(strings.TrimPrefix(name, "KEYBROKER_PROVIDER_"), "_URL")
		var id, service string
		for _, p := range append(reg.All(), reg.Admins()...) {
			up := envID(p.ID) + "_"
			if strings.HasPrefix(rest, up) && len(rest) > len(up) && len(p.ID) > len(id) {
				id, service = p.ID, strings.ToLower(strings.TrimPrefix(rest, up))
			}
		}
		if id == "" || service == "base" {
			continue
		}
		u, err := url.Parse(value)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("providers: %s must be an http(s) URL with a host", name)
		}
		if out[id] == nil {
			out[id] = map[string]string{}
		}
		out[id][service] = strings.TrimRight(value, "/")
	}
	return out, nil
}

// envID is provider id as a part of an environment variable's name:
// upper case, '-' as '_' (a shell takes no '-' in a name: azure-openai is
// KEYBROKER_PROVIDER_AZURE_OPENAI_...).
func envID(id string) string { return strings.ToUpper(strings.ReplaceAll(id, "-", "_")) }
