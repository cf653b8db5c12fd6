package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/internal/runtime/proxytoken"
)

// Role is what a token may do.
type Role string

const (
	// RoleOperator manages everything, including purging workspaces and
	// the global audit trail, but never resolves: no operator token can
	// read a key.
	RoleOperator Role = "operator"
	// RoleAdmin manages the keys of its listed workspaces and
	// organizations.
	RoleAdmin Role = "admin"
	// RoleReader reads key metadata of its listed workspaces and
	// organizations.
	RoleReader Role = "reader"
	// RoleResolver may only resolve keys (the execution path), of every
	// workspace or, when the token lists workspaces, of those only.
	RoleResolver Role = "resolver"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleOperator, RoleAdmin, RoleReader, RoleResolver:
		return r, nil
	}
	return "", fmt.Errorf("%w: unknown role %q (operator, admin, reader, resolver)", ErrInvalid, s)
}

// Errors.
var (
	// ErrUnauthenticated: no token, or one that is unknown, revoked or
	// expired (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the token's role does not allow the operation (403).
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: a token request that makes no sense (400).
	ErrInvalid = errors.New("invalid token request")
	// ErrNotFound: no such token (404).
	ErrNotFound = errors.New("token not found")
	// ErrCannotMint: this process may not mint tokens of the asked role:
	// resolver tokens (which obtain keys) are never minted over the API,
	// and a process without the signing key of a role mints none of it
	// (403).
	ErrCannotMint = errors.New("tokens of this role are not minted here")
	// ErrUnavailable: the token store cannot be reached and the token was
	// not validated recently enough to be trusted without it (503).
	ErrUnavailable = errors.New("token store unavailable")
)

// tokenPrefix makes keybroker tokens recognisable to people and secret
// scanners.
const tokenPrefix = "kbt_"

// tokenLen is the length of a token: the prefix and 32 random bytes in
// unpadded base64url (43 characters; a test holds it to the encoding).
const tokenLen = len(tokenPrefix) + (32*8+5)/6

// Principal is an authenticated caller: a token, or a person
// (PersonPrincipal).
type Principal struct {
	// TokenID is the token's id, or a person's session or assertion id.
	TokenID       string
	Role          Role
	Workspaces    []string
	Organizations []string
	// Person is who the caller is when it is a person; nil for a token.
	Person *Person
	// Scoped are a person's roles by scope; nil for a token, whose Role
	// applies to each of its Workspaces and Organizations.
	Scoped *ScopedRoles
}

// Subject names the principal in audit events: "token:ID", or the
// person (Person.Actor).
func (p Principal) Subject() string {
	if p.Person != nil {
		return p.Person.Actor()
	}
	return "token:" + p.TokenID
}

// Action is something a caller asks to do.
type Action int

const (
	ActionListProviders Action = iota
	ActionReadKeys             // list and get key metadata
	ActionManageKeys           // set, rotate, delete, roll back, versions, audit
	ActionPurgeWorkspace
	ActionResolve          // the workspace is the one resolved for
	ActionGlobalAudit      // the operator-wide trail
	ActionLinkOrganization // set the organization a workspace belongs to
	ActionManageTokens     // list, create and revoke API tokens
	ActionGlobalUsage      // every workspace's proxied calls (the billing export)
)

// Allowed reports whether p may do action on scope (the zero Scope for
// actions that concern none). The hosted scope is the operators' alone;
// an organization's admin reaches the organization's pools, not its
// workspaces.
func (p Principal) Allowed(action Action, scope broker.Scope) bool {
	if p.Role == RoleOperator {
		// Everything but reading a key.
		return action != ActionResolve
	}
	switch action {
	case ActionListProviders:
		return true
	case ActionReadKeys:
		return (p.Role == RoleAdmin || p.Role == RoleReader) && p.reaches(scope)
	case ActionManageKeys:
		if p.Scoped != nil {
			return p.scopedRole(scope) == RoleAdmin
		}
		return p.Role == RoleAdmin && p.reaches(scope)
	case ActionResolve:
		// A person never resolves (Role is never RoleResolver for one).
		return p.Role == RoleResolver && p.Person == nil && scope.Kind == broker.ScopeWorkspace &&
			(len(p.Workspaces) == 0 || slices.Contains(p.Workspaces, scope.ID))
	}
	return false
}

// scopedRole is a person's role in scope ("" for none).
func (p Principal) scopedRole(scope broker.Scope) Role {
	switch scope.Kind {
	case broker.ScopeWorkspace:
		return p.Scoped.Workspaces[scope.ID]
	case broker.ScopeOrganization:
		return p.Scoped.Organizations[scope.ID]
	}
	return ""
}

// reaches says whether scope is one of the token's listed scopes.
func (p Principal) reaches(scope broker.Scope) bool {
	switch scope.Kind {
	case broker.ScopeWorkspace:
		return slices.Contains(p.Workspaces, scope.ID)
	case broker.ScopeOrganization:
		return slices.Contains(p.Organizations, scope.ID)
	}
	return false
}

// Store is what auth needs of PostgreSQL, in auth's own records and the
// broker's audit events (package store implements it). Its errors wrap
// broker.ErrNotFound for a missing row; any other error means the store
// could not answer.
type Store interface {
	CreateToken(ctx context.Context, rec TokenRecord, evs []broker.AuditEvent) error
	TokenByHash(ctx context.Context, hash []byte) (TokenRecord, error)
	TokenByID(ctx context.Context, id string) (TokenRecord, error)
	ListTokens(ctx context.Context) ([]TokenRecord, error)
	RevokeToken(ctx context.Context, id string, ev broker.AuditEvent) error
	SignToken(ctx context.Context, id, keyID string, signature []byte, ev broker.AuditEvent) error
	RevokeProxyToken(ctx context.Context, rev RevokedProxyToken, ev broker.AuditEvent) error
	ProxyTokenRevocations(ctx context.Context) ([]RevokedProxyToken, error)
	AppendAudits(ctx context.Context, evs []broker.AuditEvent) error
	TokenDescriptions(ctx context.Context, ids []string) (map[string]string, error)
}

type validation struct {
	principal Principal
	expiresAt *time.Time
	at        time.Time
}

// Service authenticates tokens and manages them.
type Service struct {
	store Store
	opts  Options

	mu        sync.Mutex
	validated map[[32]byte]validation
	// unknown remembers hashes PostgreSQL did not know, briefly, so that
	// a caller sending made-up tokens cannot make a query per request.
	unknown map[[32]byte]time.Time
	// issuers remembers, by token id, whether the tokens that minted
	// proxy tokens are still valid (IssuerActive).
	issuers map[string]issuerCheck
	// lookups makes concurrent lookups of one token hash one
	// (Authenticate).
	lookups singleflight.Group

	denials *denialRecorder
	// rowRings are Options.Keys by role, derived for token rows.
	rowRings map[Role]*keyring.Ring
	// unsigned remembers the ids of unsigned rows already logged, so that
	// a forged row is reported once, not at every request.
	unsigned map[string]bool
	// proxyRevoked are the proxy tokens ended before their expiry.
	proxyRevoked *proxytoken.Revocations
}

type issuerCheck struct {
	principal Principal
	active    bool
	at        time.Time
}

// Options tune a Service; zero values take the defaults stated.
type Options struct {
	// TrustWithoutStore is how long a token validated against PostgreSQL
	// stays trusted while PostgreSQL cannot be reached, so that resolves
	// keep working through an outage. The trade-off: a token revoked
	// during the outage keeps working on a replica that validated it until
	// the window ends. Default: 5 min; negative: none (an outage refuses
	// every request with 503).
	TrustWithoutStore time.Duration
	// Fresh is how long a validation is used without asking PostgreSQL
	// again (revocation reaches every replica at once through NOTIFY).
	// Default: 10s.
	Fresh time.Duration
	// UnknownTTL is how long an unknown token's hash is remembered.
	// Default: 30s. A token created in that window on another replica is
	// not affected: it has another hash.
	UnknownTTL time.Duration
	// MaxRemembered bounds both the validated and the unknown sets.
	// Default: 100000 each.
	MaxRemembered int
	// LookupTimeout bounds the PostgreSQL lookup of one token. Default: 2s.
	LookupTimeout time.Duration
	// DenialInterval is the window over which denials of one token, scope
	// and action are written as one audit row with a count. Default: 1 min.
	DenialInterval time.Duration
	// Now is the clock (tests). Default: time.Now.
	Now func() time.Time
	// Logger receives failures of background work. Default: slog.Default().
	Logger *slog.Logger
	// Keys sign the token rows this service writes and verify those it
	// reads: a row keybroker did not sign is refused, whoever inserted it.
	Keys RowKeys
}

// RowKeys are the signing keys of token rows, one ring per kind of token:
// the database never holds them, so a database role alone can make no
// token. A nil ring neither signs nor accepts that kind.
type RowKeys struct {
	// Admin signs and verifies the rows of operator, admin and reader
	// tokens (KEYBROKER_ADMIN_TOKEN_KEYS): admin replicas and the owner's
	// CLI hold it.
	Admin *keyring.Ring
	// Resolver signs and verifies the rows of resolver tokens, the ones
	// that obtain keys (KEYBROKER_RESOLVER_KEYS): only the owner's CLI
	// mints them; resolver and proxy replicas, which read keys anyway,
	// verify them. No admin replica holds it.
	Resolver *keyring.Ring
}

// ring is the ring of role's rows, derived for token rows.
func (k RowKeys) ring(role Role) *keyring.Ring {
	if role == RoleResolver {
		return k.Resolver
	}
	return k.Admin
}

// rowMessage is what a token row's signature covers: everything the row
// grants.
func rowMessage(rec TokenRecord) []byte {
	exp := "never"
	if rec.ExpiresAt != nil {
		exp = strconv.FormatInt(rec.ExpiresAt.Unix(), 10)
	}
	parts := []string{"keybroker token row v1", rec.ID, hex.EncodeToString(rec.Hash), rec.Role,
		strings.Join(rec.Workspaces, ","), strings.Join(rec.Organizations, ","), exp}
	return []byte(strings.Join(parts, "\x00"))
}

// ErrNotSigned: a token row carries no valid signature of this
// deployment's keys (it was written outside keybroker, or signed with a
// retired key, or this replica does not hold the key of its kind).
var ErrNotSigned = errors.New("token row not signed by keybroker")

// signRow signs rec with the ring of its role.
func (s *Service) signRow(rec *TokenRecord) error {
	r := s.rowRings[Role(rec.Role)]
	if r.Empty() {
		return fmt.Errorf("%w: this process holds no signing key for %s tokens", ErrCannotMint, rec.Role)
	}
	id, mac, err := r.Sign(rowMessage(*rec))
	if err != nil {
		return err
	}
	rec.KeyID, rec.Signature = id, mac
	return nil
}

// verifyRow checks rec's signature.
func (s *Service) verifyRow(rec TokenRecord) error {
	r := s.rowRings[Role(rec.Role)]
	if r.Empty() || rec.KeyID == "" {
		return ErrNotSigned
	}
	if err := r.Verify(rec.KeyID, rowMessage(rec), rec.Signature); err != nil {
		return ErrNotSigned
	}
	return nil
}

// SignRow signs an existing row anew with the current key of its kind:
// the owner's `keybroker token sign`, after an upgrade from v2 or a key
// rotation. by names who asked, in the audit trail.
func (s *Service) SignRow(ctx context.Context, rec TokenRecord, by string) error {
	if err := s.signRow(&rec); err != nil {
		return err
	}
	ev := broker.AuditEvent{Action: "token.sign", Actor: by, Outcome: "success",
		Detail: fmt.Sprintf("%s role=%s key=%s", rec.ID, rec.Role, rec.KeyID)}
	if err := s.store.SignToken(ctx, rec.ID, rec.KeyID, rec.Signature, ev); err != nil {
		return fmt.Errorf("sign token %s: %w", rec.ID, err)
	}
	return nil
}

// Active says whether token id's row exists, is neither revoked nor
// expired, and carries a valid signature (when this service holds the keys
// of its kind) — asked of PostgreSQL, never of a cache.
func (s *Service) Active(ctx context.Context, id string) (bool, error) {
	rec, err := s.store.TokenByID(ctx, id)
	if errors.Is(err, broker.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.RevokedAt != nil || (rec.ExpiresAt != nil && !s.opts.Now().Before(*rec.ExpiresAt)) {
		return false, nil
	}
	if s.CanVerify(Role(rec.Role)) && s.verifyRow(rec) != nil {
		return false, nil
	}
	return true, nil
}

// CanVerify says whether this service holds the keys of role's rows.
func (s *Service) CanVerify(role Role) bool { return !s.rowRings[role].Empty() }

// Get returns token id's record (revoked and expired ones too).
func (s *Service) Get(ctx context.Context, id string) (TokenRecord, error) {
	rec, err := s.store.TokenByID(ctx, id)
	if errors.Is(err, broker.ErrNotFound) {
		return TokenRecord{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return TokenRecord{}, errors.Join(ErrUnavailable, err)
	}
	return rec, nil
}

// Signed says whether rec carries a valid signature of this process's
// keys (`keybroker token list` shows it).
func (s *Service) Signed(rec TokenRecord) bool { return s.verifyRow(rec) == nil }

func (o Options) withDefaults() Options {
	if o.TrustWithoutStore == 0 {
		o.TrustWithoutStore = 5 * time.Minute
	}
	if o.Fresh == 0 {
		o.Fresh = 10 * time.Second
	}
	if o.UnknownTTL == 0 {
		o.UnknownTTL = 30 * time.Second
	}
	if o.MaxRemembered <= 0 {
		o.MaxRemembered = 100_000
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 2 * time.Second
	}
	if o.DenialInterval <= 0 {
		o.DenialInterval = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// NewService returns a token service over st.
func NewService(st Store, opts Options) *Service {
	opts = opts.withDefaults()
	s := &Service{store: st, opts: opts, validated: make(map[[32]byte]validation), unknown: make(map[[32]byte]time.Time),
		issuers: make(map[string]issuerCheck)}
	s.denials = newDenialRecorder(st, opts.DenialInterval, opts.Now)
	s.rowRings = make(map[Role]*keyring.Ring, 4)
	for _, r := range []Role{RoleOperator, RoleAdmin, RoleReader, RoleResolver} {
		s.rowRings[r] = opts.Keys.ring(r).Derive("token rows")
	}
	s.unsigned = make(map[string]bool)
	s.proxyRevoked = proxytoken.NewRevocations(opts.Now)
	return s
}

// Hash returns the SHA-256 of a token, as stored.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// NewToken mints a token: "kbt_" and 32 random bytes (256 bits), and an id
// ("tok_" and 16 hex digits) that names it in lists and audit events.
func NewToken() (token, id string, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("mint token: %w", err)
	}
	idBytes := make([]byte, 8)
	if _, err := rand.Read(idBytes); err != nil {
		return "", "", fmt.Errorf("mint token id: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(secret), "tok_" + hex.EncodeToString(idBytes), nil
}

// CreateRequest describes a token to create.
type CreateRequest struct {
	Role       Role
	Workspaces []string
	// Organizations an admin or reader token reaches.
	Organizations []string
	// TTL is the token's lifetime. 0 takes the default: DefaultTTL, or
	// MaxOperatorTTL for an operator token (which may not live longer).
	TTL time.Duration
	// NoExpiry makes a token that never expires; it must be asked for
	// by name (and is reported by `token list`).
	NoExpiry    bool
	Description string
	CreatedBy   string
	RemoteAddr  string
	RequestID   string
	// Via says how the token was asked for, in the audit trail: "api"
	// (POST /v1/tokens) or "cli" (the owner's keybroker token create).
	// Over the API, resolver tokens and tokens with no expiry are refused.
	Via string
}

// How a token was asked for (CreateRequest.Via).
const (
	ViaAPI = "api"
	ViaCLI = "cli"
)

// Token lifetimes.
const (
	DefaultTTL     = 90 * 24 * time.Hour
	MaxOperatorTTL = 30 * 24 * time.Hour
)

// Create mints and stores a token. The plaintext is returned once and kept
// nowhere.
func (s *Service) Create(ctx context.Context, req CreateRequest) (string, TokenRecord, error) {
	if _, err := ParseRole(string(req.Role)); err != nil {
		return "", TokenRecord{}, err
	}
	needsScopes := req.Role == RoleAdmin || req.Role == RoleReader
	if needsScopes && len(req.Workspaces)+len(req.Organizations) == 0 {
		return "", TokenRecord{}, fmt.Errorf("%w: an %s token needs at least one workspace or organization", ErrInvalid, req.Role)
	}
	if req.Role == RoleOperator && len(req.Workspaces)+len(req.Organizations) > 0 {
		return "", TokenRecord{}, fmt.Errorf("%w: an operator token takes no workspaces or organizations", ErrInvalid)
	}
	if req.Role == RoleResolver && len(req.Organizations) > 0 {
		return "", TokenRecord{}, fmt.Errorf("%w: a resolver token may be limited to workspaces, not organizations", ErrInvalid)
	}
	for _, ws := range req.Workspaces {
		if !ids.Valid(ws) {
			return "", TokenRecord{}, fmt.Errorf("%w: workspace id %q must match %s", ErrInvalid, ws, ids.Rule)
		}
	}
	for _, org := range req.Organizations {
		if !ids.Valid(org) {
			return "", TokenRecord{}, fmt.Errorf("%w: organization id %q must match %s", ErrInvalid, org, ids.Rule)
		}
	}
	ttl, err := tokenTTL(req)
	if err != nil {
		return "", TokenRecord{}, err
	}
	if req.Via == "" {
		req.Via = ViaAPI
	}
	if req.Via != ViaCLI {
		switch {
		case req.Role == RoleResolver:
			return "", TokenRecord{}, fmt.Errorf("%w: resolver tokens obtain keys, so no API caller mints them, operators included; "+
				"the database owner mints them out of band with `keybroker token create --role resolver`", ErrCannotMint)
		case req.NoExpiry:
			return "", TokenRecord{}, fmt.Errorf("%w: a token with no expiry is minted only out of band, with `keybroker token create --no-expiry`", ErrCannotMint)
		}
	}
	token, id, err := NewToken()
	if err != nil {
		return "", TokenRecord{}, err
	}
	hash := Hash(token)
	rec := TokenRecord{
		ID: id, Hash: hash[:], Role: string(req.Role), Workspaces: slices.Clone(req.Workspaces),
		Organizations: slices.Clone(req.Organizations), Description: req.Description, CreatedBy: req.CreatedBy,
	}
	if rec.Workspaces == nil {
		rec.Workspaces = []string{}
	}
	if rec.Organizations == nil {
		rec.Organizations = []string{}
	}
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	rec.CreatedAt = now
	if ttl > 0 {
		exp := now.Add(ttl).Truncate(time.Second)
		rec.ExpiresAt = &exp
	}
	if err := s.signRow(&rec); err != nil {
		return "", TokenRecord{}, err
	}
	// One event in the trail of each scope the token reaches, so each
	// scope's admins see it; an operator-wide event for the others.
	detail := fmt.Sprintf("%s role=%s expires=%s via=%s", id, req.Role, expiryText(rec.ExpiresAt), req.Via)
	scopes := TokenScopes(rec.Workspaces, rec.Organizations)
	evs := make([]broker.AuditEvent, 0, len(scopes))
	for _, sc := range scopes {
		evs = append(evs, broker.AuditEvent{ScopeKind: sc.Kind, ScopeID: sc.ID, Action: "token.create", Actor: req.CreatedBy,
			RemoteAddr: req.RemoteAddr, Outcome: "success", RequestID: req.RequestID, Detail: detail})
	}
	if err := s.store.CreateToken(ctx, rec, evs); err != nil {
		return "", TokenRecord{}, errors.Join(ErrUnavailable, err)
	}
	return token, rec, nil
}

// tokenTTL applies the expiry rules to a request.
func tokenTTL(req CreateRequest) (time.Duration, error) {
	switch {
	case req.TTL < 0:
		return 0, fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	case req.NoExpiry && req.TTL > 0:
		return 0, fmt.Errorf("%w: a token with no expiry takes no ttl", ErrInvalid)
	case req.NoExpiry:
		return 0, nil
	case req.Role == RoleOperator && req.TTL > MaxOperatorTTL:
		return 0, fmt.Errorf("%w: an operator token lives at most %s (720h); ask for no expiry by name if you must", ErrInvalid, MaxOperatorTTL)
	case req.TTL > 0:
		return req.TTL, nil
	case req.Role == RoleOperator:
		return MaxOperatorTTL, nil
	}
	return DefaultTTL, nil
}

func expiryText(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

// Authenticate returns the principal of a presented token, or
// ErrUnauthenticated. A revoked or expired token is refused at once.
// Concurrent lookups of one token are one lookup: the others wait for its
// answer.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	hash, ok := tokenHash(token)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	now := s.opts.Now()
	switch p, r := s.recall(hash, now); r {
	case RememberedValid:
		return p, nil
	case RememberedRefused:
		return Principal{}, ErrUnauthenticated
	}
	// Not canceled with the first caller's request: the others share it
	// (the lookup has its own deadline). A caller that arrives once a
	// lookup has ended finds its answer remembered.
	res, err, _ := s.lookups.Do(string(hash[:]), func() (any, error) {
		switch p, r := s.recall(hash, s.opts.Now()); r {
		case RememberedValid:
			return p, nil
		case RememberedRefused:
			return Principal{}, ErrUnauthenticated
		}
		return s.lookup(context.WithoutCancel(ctx), hash, now)
	})
	p, _ := res.(Principal)
	return p, err
}

// Remembered is what a replica knows of a presented token without asking
// PostgreSQL (Recall).
type Remembered int

const (
	// NotRemembered: never validated here, or forgotten since (a
	// revocation, a reconnection of the invalidation listener): only a
	// lookup tells, and it may fail.
	NotRemembered Remembered = iota
	// RememberedValid: validated within Options.Fresh; Recall gives its
	// principal, Authenticate makes no lookup.
	RememberedValid
	// RememberedStale: validated here longer ago; Authenticate reads its
	// row again, but presenting it is no guess (its hash was a token's).
	RememberedStale
	// RememberedRefused: malformed, or remembered as unknown, revoked or
	// expired (for Options.UnknownTTL): refused without a lookup.
	RememberedRefused
)

// Recall says what this replica knows of token without a lookup, with
// its principal when it is RememberedValid. Authenticate decides the same
// way; the failed-authentication limit is charged only for a token that
// needs a lookup and may fail (NotRemembered).
func (s *Service) Recall(token string) (Principal, Remembered) {
	hash, ok := tokenHash(token)
	if !ok {
		return Principal{}, RememberedRefused
	}
	return s.recall(hash, s.opts.Now())
}

// tokenHash is the stored hash of a well-formed token.
func tokenHash(token string) ([32]byte, bool) {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return [32]byte{}, false
	}
	// Hashed from a copy on the stack: Hash's conversion to a slice would
	// allocate on every request.
	var buf [tokenLen]byte
	return sha256.Sum256(buf[:copy(buf[:], token)]), true
}

func (s *Service) recall(hash [32]byte, now time.Time) (Principal, Remembered) {
	s.mu.Lock()
	v, ok := s.validated[hash]
	unknownAt, isUnknown := s.unknown[hash]
	s.mu.Unlock()
	switch {
	case ok && now.Sub(v.at) < s.opts.Fresh && (v.expiresAt == nil || now.Before(*v.expiresAt)):
		return v.principal, RememberedValid
	case isUnknown && now.Sub(unknownAt) < s.opts.UnknownTTL:
		return Principal{}, RememberedRefused
	case ok:
		return Principal{}, RememberedStale
	}
	return Principal{}, NotRemembered
}

// lookup reads a token's row by its hash and remembers the answer.
func (s *Service) lookup(ctx context.Context, hash [32]byte, now time.Time) (Principal, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.LookupTimeout)
	rec, err := s.store.TokenByHash(lctx, hash[:])
	cancel()
	switch {
	case errors.Is(err, broker.ErrNotFound):
		s.rememberUnknown(hash, now)
		return Principal{}, ErrUnauthenticated
	case err != nil:
		return s.trustedWithoutStore(hash, now, err)
	}
	// The row was found by its hash; compare again in constant time so
	// that no code path depends on how much of a hash matched.
	if subtle.ConstantTimeCompare(rec.Hash, hash[:]) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	if rec.RevokedAt != nil || (rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt)) {
		s.forget(hash)
		s.rememberUnknown(hash, now)
		return Principal{}, ErrUnauthenticated
	}
	if err := s.verifyRow(rec); err != nil {
		s.reportUnsigned(rec)
		s.forget(hash)
		s.rememberUnknown(hash, now)
		return Principal{}, ErrUnauthenticated
	}
	p := Principal{TokenID: rec.ID, Role: Role(rec.Role), Workspaces: rec.Workspaces, Organizations: rec.Organizations}
	s.mu.Lock()
	if len(s.validated) >= s.opts.MaxRemembered {
		s.evictOldest(now)
	}
	s.validated[hash] = validation{principal: p, expiresAt: rec.ExpiresAt, at: now}
	s.mu.Unlock()
	return p, nil
}

// reportUnsigned logs, once per token id, a row this process holds the key
// of its kind for but whose signature does not verify: a row written
// outside keybroker (or signed with a retired key).
func (s *Service) reportUnsigned(rec TokenRecord) {
	if s.rowRings[Role(rec.Role)].Empty() {
		return // a kind this replica does not serve: nothing suspicious
	}
	s.mu.Lock()
	seen := s.unsigned[rec.ID]
	if !seen {
		if len(s.unsigned) >= s.opts.MaxRemembered {
			clear(s.unsigned)
		}
		s.unsigned[rec.ID] = true
	}
	s.mu.Unlock()
	if !seen {
		s.opts.Logger.Warn("refused a token whose row keybroker did not sign (written outside keybroker, or signed with a retired key; `keybroker token list` shows it)",
			"token_id", rec.ID, "role", rec.Role, "key_id", rec.KeyID)
	}
}

// rememberUnknown notes a hash PostgreSQL does not know (or knows as
// revoked or expired); when the set is full, stale entries go first and
// then the set is cleared (a flood of made-up tokens then costs one query
// per token per UnknownTTL, never more).
func (s *Service) rememberUnknown(hash [32]byte, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unknown) >= s.opts.MaxRemembered {
		for h, at := range s.unknown {
			if now.Sub(at) >= s.opts.UnknownTTL {
				delete(s.unknown, h)
			}
		}
		if len(s.unknown) >= s.opts.MaxRemembered {
			clear(s.unknown)
		}
	}
	s.unknown[hash] = now
}

// evictOldest drops validations too old to be used even during an outage,
// or, if none is, every validation (they are rebuilt from PostgreSQL).
// Called with s.mu held.
func (s *Service) evictOldest(now time.Time) {
	keep := max(s.opts.Fresh, s.opts.TrustWithoutStore)
	for h, v := range s.validated {
		if now.Sub(v.at) >= keep {
			delete(s.validated, h)
		}
	}
	if len(s.validated) >= s.opts.MaxRemembered {
		clear(s.validated)
	}
}

func (s *Service) trustedWithoutStore(hash [32]byte, now time.Time, cause error) (Principal, error) {
	s.mu.Lock()
	v, ok := s.validated[hash]
	s.mu.Unlock()
	if !ok || s.opts.TrustWithoutStore < 0 || now.Sub(v.at) > s.opts.TrustWithoutStore || (v.expiresAt != nil && !now.Before(*v.expiresAt)) {
		return Principal{}, errors.Join(ErrUnavailable, cause)
	}
	return v.principal, nil
}

func (s *Service) forget(hash [32]byte) {
	s.mu.Lock()
	delete(s.validated, hash)
	s.mu.Unlock()
}

// List returns every token's record (hashes, never tokens).
func (s *Service) List(ctx context.Context) ([]TokenRecord, error) {
	recs, err := s.store.ListTokens(ctx)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	return recs, nil
}

// Revoke revokes token id; it is refused from the next request on.
func (s *Service) Revoke(ctx context.Context, id, by, remoteAddr, requestID string) error {
	ev := broker.AuditEvent{Action: "token.revoke", Actor: by, RemoteAddr: remoteAddr, Outcome: "success",
		RequestID: requestID, Detail: id}
	err := s.store.RevokeToken(ctx, id, ev)
	if errors.Is(err, broker.ErrNotFound) {
		return fmt.Errorf("revoke %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return errors.Join(ErrUnavailable, err)
	}
	s.Forget(id)
	return nil
}

// IssuerActive returns the principal of token id when it is still valid
// (not revoked, not expired): a proxy token minted by it works only as
// long as it does. Answers are remembered as long as validations are;
// a revocation on any replica is forgotten at once (Forget).
func (s *Service) IssuerActive(ctx context.Context, id string) (Principal, error) {
	now := s.opts.Now()
	s.mu.Lock()
	c, ok := s.issuers[id]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < s.opts.Fresh {
		if !c.active {
			return Principal{}, ErrUnauthenticated
		}
		return c.principal, nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.opts.LookupTimeout)
	rec, err := s.store.TokenByID(lctx, id)
	cancel()
	switch {
	case errors.Is(err, broker.ErrNotFound):
		c = issuerCheck{at: now}
	case err != nil:
		if ok && c.active && now.Sub(c.at) < s.opts.TrustWithoutStore {
			return c.principal, nil
		}
		return Principal{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		active := rec.RevokedAt == nil && (rec.ExpiresAt == nil || now.Before(*rec.ExpiresAt))
		if active && s.verifyRow(rec) != nil {
			s.reportUnsigned(rec)
			active = false
		}
		c = issuerCheck{principal: Principal{TokenID: rec.ID, Role: Role(rec.Role), Workspaces: rec.Workspaces, Organizations: rec.Organizations},
			active: active, at: now}
	}
	s.mu.Lock()
	if len(s.issuers) >= s.opts.MaxRemembered {
		clear(s.issuers)
	}
	s.issuers[id] = c
	s.mu.Unlock()
	if !c.active {
		return Principal{}, ErrUnauthenticated
	}
	return c.principal, nil
}

// ProxyTokenRevocation asks to end one proxy token before its expiry.
type ProxyTokenRevocation struct {
	// TokenID is the proxy token's id (proxytoken.ID); Workspace and
	// Expires come from its claims when the token itself was presented
	// (else "" and the longest a proxy token lives from now).
	TokenID   string
	Workspace string
	Expires   time.Time
	By        string
	// RemoteAddr and RequestID go into the audit event.
	RemoteAddr, RequestID string
}

// RevokeProxyToken ends a proxy token on every replica: it is recorded,
// audited (in its workspace's trail, or the operator-wide one) and
// announced. ErrNotFound when it was revoked already.
func (s *Service) RevokeProxyToken(ctx context.Context, req ProxyTokenRevocation) error {
	ev := broker.AuditEvent{Action: "proxy_token.revoke", Actor: req.By, RemoteAddr: req.RemoteAddr, Outcome: "success",
		RequestID: req.RequestID, Detail: req.TokenID}
	if req.Workspace != "" {
		ev.ScopeKind, ev.ScopeID = broker.ScopeWorkspace, req.Workspace
	}
	err := s.store.RevokeProxyToken(ctx, RevokedProxyToken{TokenID: req.TokenID, Workspace: req.Workspace,
		ExpiresAt: req.Expires, RevokedBy: req.By}, ev)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return fmt.Errorf("revoke %s: %w", req.TokenID, ErrNotFound)
	case err != nil:
		return errors.Join(ErrUnavailable, err)
	}
	s.proxyRevoked.Add(req.TokenID, req.Expires)
	return nil
}

// ProxyTokenRevoked says whether proxy token id was revoked.
func (s *Service) ProxyTokenRevoked(id string) bool { return s.proxyRevoked.Revoked(id) }

// LoadProxyTokenRevocations reads the unexpired revocations (when the
// invalidation listener connects: announcements may have been missed).
func (s *Service) LoadProxyTokenRevocations(ctx context.Context) error {
	revs, err := s.store.ProxyTokenRevocations(ctx)
	if err != nil {
		return err
	}
	all := make(map[string]time.Time, len(revs))
	for _, r := range revs {
		all[r.TokenID] = r.ExpiresAt
	}
	s.proxyRevoked.AddAll(all)
	return nil
}

// Forget drops what this replica knows of token id (revoked through
// another replica).
func (s *Service) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.issuers, id)
	for h, v := range s.validated {
		if v.principal.TokenID == id {
			delete(s.validated, h)
		}
	}
}

// ForgetAll drops every validation (the invalidation listener reconnected:
// revocations may have been missed).
func (s *Service) ForgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.validated)
	clear(s.unknown)
	clear(s.issuers)
}

// RecordDenial notes a call the principal's role did not allow. Denials
// are aggregated: one audit row per token, scope, provider and action per
// interval, with a count, so no caller can flood a trail; a denial of a
// scope the token does not reach goes to the operator-wide trail, never
// to that scope's (denials.go).
func (s *Service) RecordDenial(ctx context.Context, p Principal, scope broker.Scope, provider, route, remoteAddr, requestID string) error {
	return s.recordDenial(ctx, p, scope, provider, route, remoteAddr, requestID)
}

// FlushDenials writes the denials noted so far (at shutdown; tests).
func (s *Service) FlushDenials(ctx context.Context) error { return s.denials.flush(ctx) }

// Names maps each actor subject among subjects ("token:tok_…", as
// Principal.Subject spells it) whose token has a description to that
// description. Other subjects (the CLI's "operator", "reconciler") are
// left out.
func (s *Service) Names(ctx context.Context, subjects []string) (map[string]string, error) {
	ids := make([]string, 0, len(subjects))
	for _, sub := range subjects {
		if id, ok := strings.CutPrefix(sub, "token:"); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	byID, err := s.store.TokenDescriptions(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("name the actors: %w", err)
	}
	out := make(map[string]string, len(byID))
	for id, d := range byID {
		out["token:"+id] = d
	}
	return out, nil
}
