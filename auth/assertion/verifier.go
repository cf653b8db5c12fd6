package assertion

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keybroker/keybroker/ids"
)

// RolesClaim is the name of the claim that carries the asserted roles:
//
//	"keybroker": {"workspaces": {"ws1": "admin"}, "organizations": {"acme": "reader"}}
const RolesClaim = "keybroker"

// The roles an assertion may give in a workspace or an organization.
const (
	RoleAdmin  = "admin"
	RoleReader = "reader"
)

// Algorithms are the signature algorithms accepted: asymmetric only.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA,
}

// Ceilings of Bounds: a configuration may tighten them, never loosen.
const (
	MaxLifetimeCeiling = 5 * time.Minute
	ClockSkewCeiling   = time.Minute
)

// Bounds are the limits of a Verifier. A zero field takes its default.
type Bounds struct {
	// MaxTokenBytes bounds the raw assertion. Default 16 KiB.
	MaxTokenBytes int
	// MaxLifetime bounds exp - iat and exp - now. Default and ceiling 5
	// minutes.
	MaxLifetime time.Duration
	// ClockSkew is the tolerance for exp, iat and nbf. Default 30 s,
	// ceiling 1 minute.
	ClockSkew time.Duration
	// JWKSTTL is how long a fetched JWKS serves before it is fetched
	// again. Default 10 minutes.
	JWKSTTL time.Duration
	// RefreshMinInterval is the least time between two fetches of a
	// platform's JWKS (an unknown kid refreshes at once, but not more
	// often). Default 30 s.
	RefreshMinInterval time.Duration
	// FileCheckInterval is how often a JWKS file is compared with what
	// was read (an unknown kid compares it at once). Default 5 s.
	FileCheckInterval time.Duration
	// MaxStale is how long a JWKS serves when it cannot be refreshed
	// (the platform's endpoint down). Default 1 hour.
	MaxStale time.Duration
	// MaxJWKSBytes bounds a JWKS document. Default 1 MiB.
	MaxJWKSBytes int64
	// MaxReplayEntries bounds the live jti remembered per platform
	// (about 40 bytes each); when full, new assertions of that platform
	// are refused until some expire. Default 250 000 (over 800
	// assertions a second for five minutes).
	MaxReplayEntries int
}

func (b Bounds) withDefaults() Bounds {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if b.MaxTokenBytes == 0 {
		b.MaxTokenBytes = 16 << 10
	}
	def(&b.MaxLifetime, MaxLifetimeCeiling)
	def(&b.ClockSkew, 30*time.Second)
	def(&b.JWKSTTL, 10*time.Minute)
	def(&b.RefreshMinInterval, 30*time.Second)
	def(&b.FileCheckInterval, 5*time.Second)
	def(&b.MaxStale, time.Hour)
	if b.MaxJWKSBytes == 0 {
		b.MaxJWKSBytes = 1 << 20
	}
	if b.MaxReplayEntries == 0 {
		b.MaxReplayEntries = 250_000
	}
	return b
}

func (b Bounds) validate() error {
	var errs []error
	if b.MaxTokenBytes < 0 || b.MaxJWKSBytes < 0 || b.MaxReplayEntries < 0 {
		errs = append(errs, errors.New("sizes must not be negative"))
	}
	if b.MaxLifetime < 0 || b.MaxLifetime > MaxLifetimeCeiling {
		errs = append(errs, fmt.Errorf("max lifetime must be within (0, %s]", MaxLifetimeCeiling))
	}
	if b.ClockSkew < 0 || b.ClockSkew > ClockSkewCeiling {
		errs = append(errs, fmt.Errorf("clock skew must be within [0, %s]", ClockSkewCeiling))
	}
	if b.JWKSTTL < 0 || b.RefreshMinInterval < 0 || b.FileCheckInterval < 0 || b.MaxStale < 0 {
		errs = append(errs, errors.New("intervals must not be negative"))
	}
	return errors.Join(errs...)
}

// Config configures a Verifier.
type Config struct {
	// Audience is keybroker's audience: the `aud` an assertion must
	// contain (e.g. "keybroker" or the deployment's URL). Required.
	Audience string
	// Registrations are the platforms. Their ids and issuers are unique.
	Registrations []Registration
	// HTTPClient fetches JWKS URLs. Default: a client with a 10 s
	// timeout. Redirects are never followed.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Bounds are the limits; zero fields take their defaults.
	Bounds Bounds
	// Uses, when set, records each assertion's first use where every
	// replica sees it (the store's assertion_uses), so that a replay to
	// another replica is refused too. It is asked only after the
	// in-memory replay cache passed the jti; its failure refuses the
	// assertion (ErrUsesUnavailable). Nil: this process's cache only.
	Uses Uses
}

// Uses records the first use of an assertion across replicas.
type Uses interface {
	// FirstAssertionUse records platform's jti until until and reports
	// whether no use was recorded before.
	FirstAssertionUse(ctx context.Context, platform, jti string, until time.Time) (bool, error)
}

// Verifier verifies platform assertions. It is safe for concurrent use.
type Verifier struct {
	uses     Uses
	audience string
	b        Bounds
	now      func() time.Time
	byIssuer map[string]*platform
}

type platform struct {
	reg           Registration
	workspaces    map[string]bool
	organizations map[string]bool
	keys          *keySource
	replay        *replayCache
}

// New validates cfg and returns its Verifier. It fetches nothing: a
// platform's keys are loaded at its first assertion.
func New(cfg Config) (*Verifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("platform assertions: the audience is required")
	}
	b := cfg.Bounds.withDefaults()
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("platform assertions: bounds: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	v := &Verifier{uses: cfg.Uses, audience: cfg.Audience, b: b, now: now, byIssuer: map[string]*platform{}}
	var errs []error
	seenID := map[string]bool{}
	for _, r := range cfg.Registrations {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seenID[r.ID] {
			errs = append(errs, fmt.Errorf("platform registration %s: the id is registered twice", r.ID))
			continue
		}
		seenID[r.ID] = true
		if other, ok := v.byIssuer[r.Issuer]; ok {
			errs = append(errs, fmt.Errorf("platform registration %s: its issuer is already %s's", r.ID, other.reg.ID))
			continue
		}
		r.Workspaces = append([]string(nil), r.Workspaces...)
		r.Organizations = append([]string(nil), r.Organizations...)
		v.byIssuer[r.Issuer] = &platform{
			reg:           r,
			workspaces:    set(r.Workspaces),
			organizations: set(r.Organizations),
			keys:          newKeySource(r, hc, b, now),
			replay:        newReplayCache(b.MaxReplayEntries),
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// claims are the claims read from an assertion.
type claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
	Name      string           `json:"name"`
	Email     string           `json:"email"`
	Roles     *roles           `json:"keybroker"`
}

type roles struct {
	Workspaces    map[string]string `json:"workspaces"`
	Organizations map[string]string `json:"organizations"`
}

// Bounds of the identity claims.
const (
	maxSubject = 255
	maxJTI     = 255
	maxName    = 128
	maxEmail   = 254
	maxRoles   = 256 // per kind
)

// Verify checks raw, a platform assertion, and returns who it names with
// which roles. In order: its size; its form and algorithm (asymmetric
// only); its issuer's registration; its kid in the platform's JWKS
// (refreshed on an unknown kid, rate-limited); the signature; aud, exp, iat,
// nbf, sub and jti; the roles, clamped to the registration; then its jti,
// which is remembered until exp so that a second use is refused: in this
// process's cache, then, with Config.Uses, where every replica sees it.
//
// Roles are clamped: a workspace or organization the registration does not
// list is dropped (Assertion.Dropped names it), since a platform may send
// all of its user's roles while it speaks for only some scopes here. An
// "admin" from a platform without MayGrantAdmin refuses the assertion
// (ErrNotAllowed) rather than being downgraded to "reader": the platform
// claims a power it was never given, a misconfiguration or a compromise the
// platform and the operator must see, and a silent downgrade would surface
// later as a puzzling 403 on a write.
func (v *Verifier) Verify(ctx context.Context, raw string) (Assertion, error) {
	if len(raw) > v.b.MaxTokenBytes {
		return Assertion{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, v.b.MaxTokenBytes)
	}
	jws, err := jose.ParseSignedCompact(raw, Algorithms)
	if err != nil {
		return Assertion{}, parseError(raw)
	}
	if len(jws.Signatures) != 1 {
		return Assertion{}, fmt.Errorf("%w: not one signature", ErrMalformed)
	}
	hdr := jws.Signatures[0].Header
	payload := jws.UnsafePayloadWithoutVerification()
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Assertion{}, fmt.Errorf("%w: the claims are not a JSON object of the expected types", ErrMalformed)
	}
	p := v.byIssuer[c.Issuer]
	if p == nil {
		return Assertion{}, ErrUnknownIssuer
	}
	if hdr.KeyID == "" {
		return Assertion{}, fmt.Errorf("%w: the header has no kid", ErrUnknownKey)
	}
	key, err := p.keys.key(ctx, hdr.KeyID)
	if err != nil {
		return Assertion{}, fmt.Errorf("platform %s: %w", p.reg.ID, err)
	}
	if !keySigns(key, hdr.Algorithm) {
		return Assertion{}, fmt.Errorf("platform %s: %w: the key does not sign with this algorithm", p.reg.ID, ErrBadSignature)
	}
	verified, err := jws.Verify(key)
	if err != nil || !bytes.Equal(verified, payload) {
		return Assertion{}, fmt.Errorf("platform %s: %w", p.reg.ID, ErrBadSignature)
	}
	a, until, err := v.check(p, &c)
	if err != nil {
		return Assertion{}, fmt.Errorf("platform %s: %w", p.reg.ID, err)
	}
	switch p.replay.add(c.ID, until, v.now()) {
	case replayed:
		return Assertion{}, fmt.Errorf("platform %s: %w: this jti was used before", p.reg.ID, ErrReplayed)
	case full:
		return Assertion{}, fmt.Errorf("platform %s: %w: too many live assertions to remember (%d); retry later", p.reg.ID, ErrReplayed, v.b.MaxReplayEntries)
	}
	if v.uses != nil {
		first, err := v.uses.FirstAssertionUse(ctx, p.reg.ID, c.ID, until)
		if err != nil {
			return Assertion{}, fmt.Errorf("platform %s: %w: %w", p.reg.ID, ErrUsesUnavailable, err)
		}
		if !first {
			return Assertion{}, fmt.Errorf("platform %s: %w: this jti was used before at another replica (or has expired by the database's clock)", p.reg.ID, ErrReplayed)
		}
	}
	return a, nil
}

// parseError classifies a token go-jose would not parse, from its header
// only: an algorithm refused is a bad signature, anything else malformed.
func parseError(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if ok {
		if b, err := base64.RawURLEncoding.DecodeString(head); err == nil {
			var h struct {
				Alg string `json:"alg"`
			}
			if json.Unmarshal(b, &h) == nil && h.Alg != "" {
				for _, a := range Algorithms {
					if string(a) == h.Alg {
						return fmt.Errorf("%w: not a compact JWS", ErrMalformed)
					}
				}
				return fmt.Errorf("%w: algorithm not accepted (asymmetric only: RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)", ErrBadSignature)
			}
		}
	}
	return fmt.Errorf("%w: not a compact JWS", ErrMalformed)
}

// check checks the claims of a verified assertion and builds the
// Assertion; until is when its jti may be forgotten.
func (v *Verifier) check(p *platform, c *claims) (Assertion, time.Time, error) {
	now := v.now()
	skew := v.b.ClockSkew
	if !c.Audience.Contains(v.audience) {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: aud does not name keybroker", ErrBadClaims)
	}
	if c.Expiry == nil {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: exp is required", ErrBadClaims)
	}
	if c.IssuedAt == nil {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: iat is required", ErrBadClaims)
	}
	exp, iat := c.Expiry.Time(), c.IssuedAt.Time()
	if now.After(exp.Add(skew)) {
		return Assertion{}, time.Time{}, ErrExpired
	}
	if exp.After(now.Add(v.b.MaxLifetime + skew)) {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: exp is more than %s away", ErrBadClaims, v.b.MaxLifetime)
	}
	if !exp.After(iat) || exp.Sub(iat) > v.b.MaxLifetime {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: exp - iat must be within (0, %s]", ErrBadClaims, v.b.MaxLifetime)
	}
	if iat.After(now.Add(skew)) {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: iat is in the future", ErrBadClaims)
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)) {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: nbf is in the future", ErrBadClaims)
	}
	if c.Subject == "" || len(c.Subject) > maxSubject || hasControl(c.Subject) {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: sub is required (at most %d bytes, no control characters)", ErrBadClaims, maxSubject)
	}
	if c.ID == "" || len(c.ID) > maxJTI {
		return Assertion{}, time.Time{}, fmt.Errorf("%w: jti is required (at most %d bytes)", ErrBadClaims, maxJTI)
	}
	a := Assertion{
		Platform:  p.reg.ID,
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Name:      clean(c.Name, maxName),
		Email:     clean(c.Email, maxEmail),
		JTI:       c.ID,
		ExpiresAt: exp,
	}
	if c.Roles != nil {
		var err error
		a.Workspaces, err = clamp(p, "workspace", c.Roles.Workspaces, p.workspaces, &a.Dropped)
		if err != nil {
			return Assertion{}, time.Time{}, err
		}
		a.Organizations, err = clamp(p, "organization", c.Roles.Organizations, p.organizations, &a.Dropped)
		if err != nil {
			return Assertion{}, time.Time{}, err
		}
	}
	sort.Strings(a.Dropped)
	return a, exp.Add(skew), nil
}

// clamp checks the asserted roles of one kind and keeps those within the
// registration.
func clamp(p *platform, kind string, asserted map[string]string, allowed map[string]bool, dropped *[]string) (map[string]string, error) {
	if len(asserted) > maxRoles {
		return nil, fmt.Errorf("%w: more than %d %s roles", ErrBadClaims, maxRoles, kind)
	}
	var kept map[string]string
	for id, role := range asserted {
		if !ids.Valid(id) {
			return nil, fmt.Errorf("%w: %s", ErrBadClaims, ids.Message(kind))
		}
		if role != RoleAdmin && role != RoleReader {
			return nil, fmt.Errorf("%w: a %s role must be %q or %q", ErrBadClaims, kind, RoleAdmin, RoleReader)
		}
		if !allowed[id] {
			*dropped = append(*dropped, kind+":"+id)
			continue
		}
		if role == RoleAdmin && !p.reg.MayGrantAdmin {
			return nil, fmt.Errorf("%w: admin of %s %s (the registration does not allow admin)", ErrNotAllowed, kind, id)
		}
		if kept == nil {
			kept = make(map[string]string, len(asserted))
		}
		kept[id] = role
	}
	return kept, nil
}
