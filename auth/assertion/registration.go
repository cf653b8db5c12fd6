package assertion

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/keybroker/keybroker/ids"
)

// Registration is a platform that may call keybroker for its users. The
// operator configures it; Validate says what is wrong with one.
type Registration struct {
	// ID names the platform in the audit trail (an id: ids.Rule).
	ID string `json:"id"`
	// Issuer is the `iss` of the platform's assertions, an https URL
	// (http only to a loopback host). Matched exactly.
	Issuer string `json:"issuer"`
	// JWKSURL is where the platform publishes its public keys (https, or
	// http to a loopback host); JWKSFile is a local file of them. Exactly
	// one of the two.
	JWKSURL  string `json:"jwksUrl,omitempty"`
	JWKSFile string `json:"jwksFile,omitempty"`
	// Workspaces and Organizations are the ids the platform may speak
	// for: an explicit list ("*" is not accepted). A role of an
	// assertion outside them is dropped.
	Workspaces    []string `json:"workspaces,omitempty"`
	Organizations []string `json:"organizations,omitempty"`
	// MayGrantAdmin allows the platform's assertions to grant "admin";
	// without it, an assertion that does is refused.
	MayGrantAdmin bool `json:"mayGrantAdmin,omitempty"`
}

// Validate checks r and says all that is wrong with it.
func (r Registration) Validate() error {
	var errs []error
	if !ids.Valid(r.ID) {
		errs = append(errs, errors.New("platform "+ids.Message("registration")))
	}
	name := r.ID
	if !ids.Valid(name) {
		name = "(invalid id)"
	}
	if err := checkURL(r.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	switch {
	case r.JWKSURL == "" && r.JWKSFile == "":
		errs = append(errs, errors.New("one of JWKS URL and JWKS file is required"))
	case r.JWKSURL != "" && r.JWKSFile != "":
		errs = append(errs, errors.New("JWKS URL and JWKS file are exclusive: give one"))
	case r.JWKSURL != "":
		if err := checkURL(r.JWKSURL); err != nil {
			errs = append(errs, fmt.Errorf("JWKS URL: %w", err))
		}
	}
	if len(r.Workspaces) == 0 && len(r.Organizations) == 0 {
		errs = append(errs, errors.New("the platform speaks for no workspace and no organization: list at least one"))
	}
	errs = append(errs, checkIDs("workspace", r.Workspaces)...)
	errs = append(errs, checkIDs("organization", r.Organizations)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("platform registration %s: %w", name, err)
	}
	return nil
}

func checkIDs(what string, list []string) []error {
	var errs []error
	seen := make(map[string]bool, len(list))
	for _, id := range list {
		switch {
		case id == "*" || strings.ContainsAny(id, "*?"):
			errs = append(errs, fmt.Errorf("%ss: no wildcard: list the ids the platform may speak for", what))
		case !ids.Valid(id):
			errs = append(errs, fmt.Errorf("%ss: %q: %s", what, id, ids.Message(what)))
		case seen[id]:
			errs = append(errs, fmt.Errorf("%ss: %q is listed twice", what, id))
		}
		seen[id] = true
	}
	return errs
}

// checkURL accepts an absolute https URL with a host, or http to a loopback
// host (a test or a sidecar: nothing crosses the network), without user
// information or fragment.
func checkURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("must be an absolute URL with a host")
	}
	if u.User != nil {
		return errors.New("must not carry user information")
	}
	if u.Fragment != "" {
		return errors.New("must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("must be https (http only to a loopback host)")
	default:
		return errors.New("must be https")
	}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
