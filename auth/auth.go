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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/store"
)

// Role is what a token may do.
type Role string

const (
	// RoleOperator may do everything, including purging workspaces.
	RoleOperator Role = "operator"
	// RoleAdmin manages the keys of its listed workspaces.
	RoleAdmin Role = "admin"
	// RoleReader reads key metadata of its listed workspaces.
	RoleReader Role = "reader"
	// RoleResolver may only resolve keys (the execution path).
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
	// ErrUnavailable: the token store cannot be reached and the token was
	// not validated recently enough to be trusted without it (503).
	ErrUnavailable = errors.New("token store unavailable")
)

// tokenPrefix makes keybroker tokens recognisable to people and secret
// scanners.
const tokenPrefix = "kbt_"

// tokenLen is the length of a token: the prefix and 32 random bytes in
// unpadded base64url.
var tokenLen = len(tokenPrefix) + base64.RawURLEncoding.EncodedLen(32)

// Principal is an authenticated caller.
type Principal struct {
	TokenID    string
	Role       Role
	Workspaces []string
}

// Subject names the principal in audit events.
func (p Principal) Subject() string { return "token:" + p.TokenID }

// Action is something a caller asks to do.
type Action int

const (
	ActionListProviders Action = iota
	ActionReadKeys             // list and get key metadata
	ActionManageKeys           // set, rotate, delete, roll back, versions, audit
	ActionPurgeWorkspace
	ActionResolve
)

// Allowed reports whether p may do action on workspace ("" for actions
// that concern no workspace).
func (p Principal) Allowed(action Action, workspace string) bool {
	if p.Role == RoleOperator {
		return true
	}
	switch action {
	case ActionListProviders:
		return true
	case ActionReadKeys:
		return (p.Role == RoleAdmin || p.Role == RoleReader) && slices.Contains(p.Workspaces, workspace)
	case ActionManageKeys:
		return p.Role == RoleAdmin && slices.Contains(p.Workspaces, workspace)
	case ActionResolve:
		return p.Role == RoleResolver
	}
	return false
}

// Store is what auth needs of PostgreSQL.
type Store interface {
	CreateToken(ctx context.Context, rec store.TokenRecord, ev store.AuditEvent) error
	TokenByHash(ctx context.Context, hash []byte) (store.TokenRecord, error)
	ListTokens(ctx context.Context) ([]store.TokenRecord, error)
	RevokeToken(ctx context.Context, id string, ev store.AuditEvent) error
	AppendAudit(ctx context.Context, ev store.AuditEvent) error
}

var _ Store = (*store.Store)(nil)

// Service authenticates tokens and manages them.
type Service struct {
	store Store
	// trustWithoutStore is how long a token validated against the store
	// stays trusted while the store is unreachable, so that resolves keep
	// working through a PostgreSQL outage. Revocation is checked on every
	// request while the store answers.
	trustWithoutStore time.Duration

	// fresh is how long a validation is used without asking PostgreSQL
	// again: revocation reaches this replica at once (Revoke, or the
	// invalidation channel: Forget), so the database is not queried on
	// every request.
	fresh time.Duration

	mu        sync.Mutex
	validated map[[32]byte]validation
}

type validation struct {
	principal Principal
	expiresAt *time.Time
	at        time.Time
}

// NewService returns a token service over st. trustWithoutStore (default
// 5 min when 0; negative disables) bounds how long a recently validated
// token is accepted while PostgreSQL is down.
func NewService(st Store, trustWithoutStore time.Duration) *Service {
	if trustWithoutStore == 0 {
		trustWithoutStore = 5 * time.Minute
	}
	return &Service{store: st, trustWithoutStore: trustWithoutStore, fresh: 10 * time.Second, validated: make(map[[32]byte]validation)}
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
	Role        Role
	Workspaces  []string
	TTL         time.Duration // 0: never expires
	Description string
	CreatedBy   string
	RemoteAddr  string
	RequestID   string
}

// Create mints and stores a token. The plaintext is returned once and kept
// nowhere.
func (s *Service) Create(ctx context.Context, req CreateRequest) (string, store.TokenRecord, error) {
	if _, err := ParseRole(string(req.Role)); err != nil {
		return "", store.TokenRecord{}, err
	}
	needsWorkspaces := req.Role == RoleAdmin || req.Role == RoleReader
	if needsWorkspaces && len(req.Workspaces) == 0 {
		return "", store.TokenRecord{}, fmt.Errorf("%w: an %s token needs at least one workspace", ErrInvalid, req.Role)
	}
	if !needsWorkspaces && len(req.Workspaces) > 0 {
		return "", store.TokenRecord{}, fmt.Errorf("%w: a %s token takes no workspaces", ErrInvalid, req.Role)
	}
	for _, ws := range req.Workspaces {
		if !ids.Valid(ws) {
			return "", store.TokenRecord{}, fmt.Errorf("%w: workspace id %q must match %s", ErrInvalid, ws, ids.Rule)
		}
	}
	if req.TTL < 0 {
		return "", store.TokenRecord{}, fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	token, id, err := NewToken()
	if err != nil {
		return "", store.TokenRecord{}, err
	}
	hash := Hash(token)
	rec := store.TokenRecord{
		ID: id, Hash: hash[:], Role: string(req.Role), Workspaces: slices.Clone(req.Workspaces),
		Description: req.Description, CreatedBy: req.CreatedBy,
	}
	if rec.Workspaces == nil {
		rec.Workspaces = []string{}
	}
	if req.TTL > 0 {
		exp := time.Now().Add(req.TTL).UTC()
		rec.ExpiresAt = &exp
	}
	ev := store.AuditEvent{
		Workspace: strings.Join(req.Workspaces, ","), Action: "token.create", Actor: req.CreatedBy,
		RemoteAddr: req.RemoteAddr, Outcome: "success", RequestID: req.RequestID,
		Detail: fmt.Sprintf("%s role=%s", id, req.Role),
	}
	if err := s.store.CreateToken(ctx, rec, ev); err != nil {
		return "", store.TokenRecord{}, errors.Join(ErrUnavailable, err)
	}
	return token, rec, nil
}

// Authenticate returns the principal of a presented token, or
// ErrUnauthenticated. A revoked or expired token is refused at once.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, error) {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return Principal{}, ErrUnauthenticated
	}
	hash := Hash(token)
	now := time.Now()
	s.mu.Lock()
	v, ok := s.validated[hash]
	s.mu.Unlock()
	if ok && now.Sub(v.at) < s.fresh && (v.expiresAt == nil || now.Before(*v.expiresAt)) {
		return v.principal, nil
	}
	rec, err := s.store.TokenByHash(ctx, hash[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.forget(hash)
		return Principal{}, ErrUnauthenticated
	case err != nil:
		return s.trustedWithoutStore(hash, err)
	}
	// The row was found by its hash; compare again in constant time so
	// that no code path depends on how much of a hash matched.
	if subtle.ConstantTimeCompare(rec.Hash, hash[:]) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	if rec.RevokedAt != nil || (rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt)) {
		s.forget(hash)
		return Principal{}, ErrUnauthenticated
	}
	p := Principal{TokenID: rec.ID, Role: Role(rec.Role), Workspaces: rec.Workspaces}
	if s.trustWithoutStore > 0 || s.fresh > 0 {
		s.mu.Lock()
		s.validated[hash] = validation{principal: p, expiresAt: rec.ExpiresAt, at: now}
		s.mu.Unlock()
	}
	return p, nil
}

func (s *Service) trustedWithoutStore(hash [32]byte, cause error) (Principal, error) {
	s.mu.Lock()
	v, ok := s.validated[hash]
	s.mu.Unlock()
	now := time.Now()
	if !ok || now.Sub(v.at) > s.trustWithoutStore || (v.expiresAt != nil && !now.Before(*v.expiresAt)) {
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
func (s *Service) List(ctx context.Context) ([]store.TokenRecord, error) {
	recs, err := s.store.ListTokens(ctx)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	return recs, nil
}

// Revoke revokes token id; it is refused from the next request on.
func (s *Service) Revoke(ctx context.Context, id, by, remoteAddr, requestID string) error {
	ev := store.AuditEvent{Action: "token.revoke", Actor: by, RemoteAddr: remoteAddr, Outcome: "success",
		RequestID: requestID, Detail: id}
	err := s.store.RevokeToken(ctx, id, ev)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return errors.Join(ErrUnavailable, err)
	}
	s.Forget(id)
	return nil
}

// Forget drops what this replica knows of token id (revoked through
// another replica).
func (s *Service) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
}

// RecordDenial appends an audit event for a call the principal's role did
// not allow.
func (s *Service) RecordDenial(ctx context.Context, p Principal, workspace, provider, route, remoteAddr, requestID string) error {
	return s.store.AppendAudit(ctx, store.AuditEvent{
		Workspace: workspace, Provider: provider, Action: "access.denied", Actor: p.Subject(),
		RemoteAddr: remoteAddr, Outcome: "forbidden", RequestID: requestID,
		Detail: fmt.Sprintf("role %s may not %s", p.Role, route),
	})
}
