package session

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
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// Errors.
var (
	// ErrUnauthenticated: no session token, or one that is unknown,
	// ended, idle too long, past its lifetime or not signed by keybroker
	// (401).
	ErrUnauthenticated = errors.New("session: unauthenticated")
	// ErrInvalid: a request that makes no sense (a person without a role,
	// an unknown via, a field out of bounds) (400).
	ErrInvalid = errors.New("session: invalid request")
	// ErrNotFound: no active session of that id (404).
	ErrNotFound = errors.New("session: not found")
	// ErrUnavailable: PostgreSQL could not answer (503).
	ErrUnavailable = errors.New("session: store unavailable")
)

// Store is what the service needs of PostgreSQL (package store implements
// it). Its errors wrap broker.ErrNotFound for a missing row; any other
// error means the store could not answer. Times are the service's clock.
type Store interface {
	// CreateSession stores rec.
	CreateSession(ctx context.Context, rec Record) error
	// SessionByHash returns the session whose token's SHA-256 is hash,
	// ended or expired ones too.
	SessionByHash(ctx context.Context, hash []byte) (Record, error)
	// TouchSession sets the session's last_seen_at to seenAt and its
	// idle expiry to idleExpiresAt (never past its absolute expiry), if
	// it is neither ended nor expired at seenAt and was last seen at or
	// before seenBefore, and returns the row; broker.ErrNotFound when no
	// row was changed.
	TouchSession(ctx context.Context, hash []byte, seenAt, idleExpiresAt, seenBefore time.Time) (Record, error)
	// EndSession ends session id at at for reason, unless it ended
	// already (broker.ErrNotFound, as for an unknown id).
	EndSession(ctx context.Context, id string, at time.Time, reason string) error
	// EndSessions ends every session of a person not ended yet and
	// returns their ids.
	EndSessions(ctx context.Context, issuer, subject string, at time.Time, reason string) ([]string, error)
	// ListSessions returns a person's sessions, newest first.
	ListSessions(ctx context.Context, issuer, subject string) ([]Record, error)
}

// Limits are the timeouts of the sessions opened one way.
type Limits struct {
	// Idle ends a session not used for that long (measured to within
	// Options.TouchEvery).
	Idle time.Duration
	// Lifetime ends a session that long after sign-in, however busy.
	Lifetime time.Duration
}

// Default timeouts (see the package doc for why).
var (
	DefaultPage = Limits{Idle: time.Hour, Lifetime: 12 * time.Hour}
	DefaultCLI  = Limits{Idle: 4 * time.Hour, Lifetime: 12 * time.Hour}
)

// MaxLifetime is the longest lifetime Options accept.
const MaxLifetime = 7 * 24 * time.Hour

// Options tune a Service; zero values take the defaults stated.
type Options struct {
	// Keys is the admin ring (KEYBROKER_ADMIN_TOKEN_KEYS); the service
	// signs and verifies session rows with its subkey for sessions, which
	// differs from the token rows' subkey. Required.
	Keys *keyring.Ring
	// Page and CLI are the timeouts of sessions opened by the page's
	// sign-in and by `keybroker login`. Default: DefaultPage, DefaultCLI.
	Page, CLI Limits
	// Fresh is how long a session read from PostgreSQL is used without
	// reading it again: the longest a session ended through another
	// replica keeps working here (unless that replica's end is announced
	// and Forget called). Default: 10s, as for API tokens.
	Fresh time.Duration
	// TouchEvery is the least time between two writes of a session's
	// last use. Default: 1 min.
	TouchEvery time.Duration
	// UnknownTTL is how long a token PostgreSQL did not know (or knew as
	// ended or expired) is refused without asking again. Default: 30s.
	UnknownTTL time.Duration
	// MaxRemembered bounds the sessions and the unknown tokens
	// remembered. Default: 100000 each.
	MaxRemembered int
	// LookupTimeout bounds one PostgreSQL read or touch. Default: 2s.
	LookupTimeout time.Duration
	// Now is the clock (tests). Default: time.Now.
	Now func() time.Time
	// Logger receives forged rows and failed touches. Default:
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Keys.Empty() {
		return o, errors.New("session: no signing keys: sessions need the admin token keys (KEYBROKER_ADMIN_TOKEN_KEYS)")
	}
	if o.Page == (Limits{}) {
		o.Page = DefaultPage
	}
	if o.CLI == (Limits{}) {
		o.CLI = DefaultCLI
	}
	if o.Fresh <= 0 {
		o.Fresh = 10 * time.Second
	}
	if o.TouchEvery <= 0 {
		o.TouchEvery = time.Minute
	}
	if o.UnknownTTL <= 0 {
		o.UnknownTTL = 30 * time.Second
	}
	if o.MaxRemembered <= 0 {
		o.MaxRemembered = 100_000
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for name, l := range map[string]Limits{"page": o.Page, "cli": o.CLI} {
		switch {
		case l.Lifetime < time.Minute || l.Lifetime > MaxLifetime:
			return o, fmt.Errorf("session: the %s sessions' lifetime %s is not between 1m and %s", name, l.Lifetime, MaxLifetime)
		case l.Idle < 2*o.TouchEvery || l.Idle > l.Lifetime:
			return o, fmt.Errorf("session: the %s sessions' idle timeout %s is not between %s (twice the touch interval) and their lifetime %s",
				name, l.Idle, 2*o.TouchEvery, l.Lifetime)
		}
	}
	return o, nil
}

// Service opens, authenticates and ends sessions.
type Service struct {
	store Store
	opts  Options
	// ring is Options.Keys derived for session rows.
	ring *keyring.Ring

	mu sync.Mutex
	// known are the sessions read from PostgreSQL, by token hash.
	known map[[32]byte]known
	// unknown remembers hashes PostgreSQL did not know (or knew as ended
	// or expired), briefly, so that made-up tokens cannot make a query
	// per request.
	unknown map[[32]byte]time.Time
	// unsigned remembers the ids of forged rows already reported.
	unsigned map[string]bool
	// lookups makes concurrent lookups of one hash one.
	lookups singleflight.Group
}

type known struct {
	rec Record
	at  time.Time
}

// NewService returns a session service over st.
func NewService(st Store, opts Options) (*Service, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Service{store: st, opts: opts, ring: opts.Keys.Derive("session rows"),
		known: make(map[[32]byte]known), unknown: make(map[[32]byte]time.Time), unsigned: make(map[string]bool)}, nil
}

// tokenPrefix makes session tokens recognisable to people and secret
// scanners, and distinct from API tokens ("kbt_").
const tokenPrefix = "kbs_"

// tokenLen is the prefix and 32 random bytes in unpadded base64url.
const tokenLen = len(tokenPrefix) + (32*8+5)/6

// Hash returns the SHA-256 of a session token, as stored.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// tokenHash is the stored hash of a well-formed token.
func tokenHash(token string) ([32]byte, bool) {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return [32]byte{}, false
	}
	var buf [tokenLen]byte // hashed from the stack: no allocation per request
	return sha256.Sum256(buf[:copy(buf[:], token)]), true
}

// newToken mints a token ("kbs_" and 256 random bits) and the id that
// names its session ("ses_" and 16 hex digits).
func newToken() (token, id string, err error) {
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("session: mint a token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:32]), "ses_" + hex.EncodeToString(b[32:]), nil
}

// limits are via's timeouts.
func (s *Service) limits(via Via) Limits {
	if via == ViaCLI {
		return s.opts.CLI
	}
	return s.opts.Page
}

// now is the clock at PostgreSQL's precision.
func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Microsecond) }

// rowMessage is what a session row's signature covers: everything it
// grants and everything the audit trail names the person by. Fields are
// separated by NUL, which no PostgreSQL text holds.
func rowMessage(rec Record) ([]byte, error) {
	g, err := rec.Grants.Canonical()
	if err != nil {
		return nil, err
	}
	parts := []string{"keybroker session row v1", rec.ID, hex.EncodeToString(rec.Hash), rec.Person.Issuer, rec.Person.Subject,
		rec.Person.Name, rec.Person.Email, string(g), string(rec.Via), strconv.FormatInt(rec.ExpiresAt.UnixMicro(), 10)}
	return []byte(strings.Join(parts, "\x00")), nil
}

// ErrNotSigned: a session row carries no valid signature of this
// deployment's keys (written outside keybroker, or signed with a key
// dropped from the ring).
var ErrNotSigned = errors.New("session row not signed by keybroker")

func (s *Service) sign(rec *Record) error {
	msg, err := rowMessage(*rec)
	if err != nil {
		return err
	}
	rec.KeyID, rec.Signature, err = s.ring.Sign(msg)
	return err
}

func (s *Service) verify(rec Record) error {
	msg, err := rowMessage(rec)
	if err != nil || rec.KeyID == "" || s.ring.Verify(rec.KeyID, msg, rec.Signature) != nil {
		return ErrNotSigned
	}
	return nil
}

// Create opens a session for p with grants g (the roles mapped at this
// sign-in), and returns its token — "kbs_" and 256 random bits, of which
// only the SHA-256 is stored — and its record. A person without a role
// gets ErrInvalid.
func (s *Service) Create(ctx context.Context, p Person, g Grants, via Via) (string, Record, error) {
	if via != ViaPage && via != ViaCLI {
		return "", Record{}, fmt.Errorf("%w: via %q (page, cli)", ErrInvalid, via)
	}
	if err := p.Validate(); err != nil {
		return "", Record{}, err
	}
	if err := g.Validate(); err != nil {
		return "", Record{}, err
	}
	token, id, err := newToken()
	if err != nil {
		return "", Record{}, err
	}
	hash := Hash(token)
	now := s.now()
	lim := s.limits(via)
	exp := now.Add(lim.Lifetime)
	rec := Record{ID: id, Hash: hash[:], Person: p, Grants: g, Via: via, CreatedAt: now, LastSeenAt: now,
		IdleExpiresAt: now.Add(lim.Idle), ExpiresAt: exp}
	if err := s.sign(&rec); err != nil {
		return "", Record{}, err
	}
	if err := s.store.CreateSession(ctx, rec); err != nil {
		return "", Record{}, errors.Join(ErrUnavailable, fmt.Errorf("create session %s: %w", id, err))
	}
	return token, rec, nil
}

// Authenticate returns the session of a presented token, or
// ErrUnauthenticated (ErrUnavailable when PostgreSQL is needed and does not
// answer). A session read within Options.Fresh is answered from memory;
// otherwise its row is read again (one statement), and its last use
// written at most once per Options.TouchEvery.
func (s *Service) Authenticate(ctx context.Context, token string) (Record, error) {
	hash, ok := tokenHash(token)
	if !ok {
		return Record{}, ErrUnauthenticated
	}
	now := s.opts.Now()
	if rec, ok, refused := s.recall(hash, now); ok {
		return rec, nil
	} else if refused {
		return Record{}, ErrUnauthenticated
	}
	// Not canceled with the first caller's request: the others share it
	// (the lookup has its own deadline).
	res, err, _ := s.lookups.Do(string(hash[:]), func() (any, error) {
		if rec, ok, refused := s.recall(hash, now); ok {
			return rec, nil
		} else if refused {
			return Record{}, ErrUnauthenticated
		}
		return s.lookup(context.WithoutCancel(ctx), hash)
	})
	rec, _ := res.(Record)
	return rec, err
}

// recall answers from memory: ok with the record when it was read within
// Fresh and is still active; refused when the hash is remembered unknown.
func (s *Service) recall(hash [32]byte, now time.Time) (rec Record, ok, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, found := s.known[hash]; found && now.Sub(k.at) < s.opts.Fresh && k.rec.EndedAt == nil &&
		now.Before(k.rec.IdleExpiresAt) && now.Before(k.rec.ExpiresAt) {
		return k.rec, true, false
	}
	if at, found := s.unknown[hash]; found && now.Sub(at) < s.opts.UnknownTTL {
		return Record{}, false, true
	}
	return Record{}, false, false
}

// touchDue says whether a session last seen at seen should be touched at
// now.
func (s *Service) touchDue(seen, now time.Time) bool { return now.Sub(seen) >= s.opts.TouchEvery }

// lookup reads a session's row by its token's hash (touching it when due:
// the touch returns the row, so it takes no more statements) and
// remembers the answer.
func (s *Service) lookup(ctx context.Context, hash [32]byte) (Record, error) {
	now := s.now()
	s.mu.Lock()
	prev, hadPrev := s.known[hash]
	s.mu.Unlock()

	var rec Record
	touched := false
	if hadPrev && s.touchDue(prev.rec.LastSeenAt, now) {
		r, err := s.touch(ctx, hash, prev.rec.Via, now)
		switch {
		case err == nil:
			rec, touched = r, true
		case !errors.Is(err, broker.ErrNotFound):
			return Record{}, errors.Join(ErrUnavailable, err)
		}
	}
	if !touched {
		lctx, cancel := context.WithTimeout(ctx, s.opts.LookupTimeout)
		r, err := s.store.SessionByHash(lctx, hash[:])
		cancel()
		switch {
		case errors.Is(err, broker.ErrNotFound):
			s.refuse(hash, now)
			return Record{}, ErrUnauthenticated
		case err != nil:
			return Record{}, errors.Join(ErrUnavailable, err)
		}
		rec = r
	}
	// Found by its hash; compared again in constant time so that nothing
	// depends on how much of a hash matched.
	if subtle.ConstantTimeCompare(rec.Hash, hash[:]) != 1 || !rec.Active(now) {
		s.refuse(hash, now)
		return Record{}, ErrUnauthenticated
	}
	if err := s.verify(rec); err != nil {
		s.reportUnsigned(rec)
		s.refuse(hash, now)
		return Record{}, ErrUnauthenticated
	}
	if !touched && s.touchDue(rec.LastSeenAt, now) {
		r, err := s.touch(ctx, hash, rec.Via, now)
		switch {
		case err == nil:
			rec.LastSeenAt, rec.IdleExpiresAt = r.LastSeenAt, r.IdleExpiresAt
		case errors.Is(err, broker.ErrNotFound):
			// Touched by another replica meanwhile, or ended: the next
			// lookup tells.
		default:
			// The session was just read: a failed write of its last use
			// does not refuse the request.
			s.opts.Logger.Warn("could not record a session's last use", "session", rec.ID, "error", err)
		}
	}
	s.mu.Lock()
	if len(s.known) >= s.opts.MaxRemembered {
		for h, k := range s.known {
			if now.Sub(k.at) >= s.opts.Fresh {
				delete(s.known, h)
			}
		}
		if len(s.known) >= s.opts.MaxRemembered {
			clear(s.known)
		}
	}
	s.known[hash] = known{rec: rec, at: now}
	s.mu.Unlock()
	return rec, nil
}

func (s *Service) touch(ctx context.Context, hash [32]byte, via Via, now time.Time) (Record, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.LookupTimeout)
	defer cancel()
	return s.store.TouchSession(lctx, hash[:], now, now.Add(s.limits(via).Idle), now.Add(-s.opts.TouchEvery))
}

// refuse forgets a hash's session and remembers it as unknown; when the
// set is full, stale entries go first, then all (a flood of made-up
// tokens then costs one query per token per UnknownTTL, never more).
func (s *Service) refuse(hash [32]byte, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.known, hash)
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

// reportUnsigned logs, once per session id, a row whose signature does
// not verify: written outside keybroker (say with a pod's database role),
// or signed with a key since dropped from the ring.
func (s *Service) reportUnsigned(rec Record) {
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
		s.opts.Logger.Warn("refused a session whose row keybroker did not sign (written outside keybroker, or signed with a retired key)",
			"session_id", rec.ID, "issuer", rec.Person.Issuer, "subject", rec.Person.Subject, "key_id", rec.KeyID)
	}
}

// End ends session id for reason (sign-out, an operator's action); it is
// refused here at once and on other replicas within Options.Fresh (at
// once where the end is announced and Forget called). ErrNotFound when no
// active session has that id.
func (s *Service) End(ctx context.Context, id, reason string) error {
	if err := validText("reason", reason, 1, MaxReasonLen); err != nil {
		return err
	}
	err := s.store.EndSession(ctx, id, s.now(), reason)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return errors.Join(ErrUnavailable, fmt.Errorf("end session %s: %w", id, err))
	}
	s.Forget(id)
	return nil
}

// EndAllFor ends every active session of a person (a later sign-in shows
// they lost roles; an operator's offboarding) and returns their ids.
func (s *Service) EndAllFor(ctx context.Context, issuer, subject, reason string) ([]string, error) {
	if err := validText("reason", reason, 1, MaxReasonLen); err != nil {
		return nil, err
	}
	ended, err := s.store.EndSessions(ctx, issuer, subject, s.now(), reason)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, fmt.Errorf("end the sessions of %s at %s: %w", subject, issuer, err))
	}
	for _, id := range ended {
		s.Forget(id)
	}
	return ended, nil
}

// List returns a person's sessions, ended ones too, newest first.
func (s *Service) List(ctx context.Context, issuer, subject string) ([]Record, error) {
	recs, err := s.store.ListSessions(ctx, issuer, subject)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, fmt.Errorf("list the sessions of %s at %s: %w", subject, issuer, err))
	}
	return recs, nil
}

// Signed says whether rec carries a valid signature of this service's
// keys (a listing may show it).
func (s *Service) Signed(rec Record) bool { return s.verify(rec) == nil }

// Forget drops what this replica remembers of session id (ended through
// another replica: the invalidation listener calls it).
func (s *Service) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, k := range s.known {
		if k.rec.ID == id {
			delete(s.known, h)
		}
	}
}

// ForgetAll drops every remembered session (the invalidation listener
// reconnected: ends may have been missed).
func (s *Service) ForgetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.known)
	clear(s.unknown)
}
