package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"
)

// Backoff bounds for failed logins (docs/architecture.md, package vault:
// 1 s → 5 min, with jitter).
const (
	loginBackoffMin = time.Second
	loginBackoffMax = 5 * time.Minute
	loginTimeout    = 15 * time.Second
)

// errLoginBackoff means a login was skipped because the last one failed
// too recently.
var errLoginBackoff = errors.New("vault login skipped: backing off after a failed login")

// tokenSource keeps the client's token valid for auth methods that log in:
// it logs in once, renews the token with api.LifetimeWatcher, and logs in
// again when the watcher is done or when a request proved the token invalid.
// Logins happen one at a time and back off exponentially with jitter after
// failures; a request never causes more than one login.
type tokenSource struct {
	api    *api.Client
	method api.AuthMethod
	log    *slog.Logger
	// authNamespace, when set, is the Vault Enterprise namespace of the
	// auth method (it may differ from the secrets' namespace).
	authNamespace string

	sf singleflight.Group

	mu          sync.Mutex
	secret      *api.Secret   // answer of the last successful login
	gen         uint64        // increments at each successful login
	changed     chan struct{} // closed and replaced at each successful login
	failures    int           // consecutive failed logins
	nextAttempt time.Time     // no login before this, after failures

	logins       atomic.Int64
	loginErrors  atomic.Int64
	renewals     atomic.Int64
	expiresAtUTC atomic.Int64 // unix seconds, 0 when unknown
}

func newTokenSource(c *api.Client, method api.AuthMethod, log *slog.Logger) *tokenSource {
	return &tokenSource{api: c, method: method, log: log, changed: make(chan struct{})}
}

// generation identifies the token in use; it changes at every login.
func (s *tokenSource) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// renewedElsewhere reports whether the token belongs to someone else (a
// Vault Agent's sink): it is then neither renewed nor revoked here.
func (s *tokenSource) renewedElsewhere() bool {
	external, ok := s.method.(interface{ renewedElsewhere() bool })
	return ok && external.renewedElsewhere()
}

// run keeps the token alive until ctx is done.
func (s *tokenSource) run(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		secret, changed := s.secret, s.changed
		s.mu.Unlock()
		if secret == nil {
			if err := s.login(ctx); err != nil {
				s.sleepBackoff(ctx)
			}
			continue
		}
		if s.renewedElsewhere() {
			// Someone else renews this token; a refused request makes
			// the next login (see Client.do).
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		s.watch(ctx, secret, changed)
	}
}

// watch renews secret's token until it can no longer be renewed, another
// login replaces it, or ctx ends; then it clears the secret when it needs a
// new login.
func (s *tokenSource) watch(ctx context.Context, secret *api.Secret, changed <-chan struct{}) {
	if secret.Auth != nil && !secret.Auth.Renewable {
		// A token that cannot be renewed (a batch token, say): log in
		// again when four fifths of its life are gone.
		var expiry <-chan time.Time
		if secret.Auth.LeaseDuration > 0 {
			t := time.NewTimer(time.Duration(secret.Auth.LeaseDuration) * time.Second * 4 / 5)
			defer t.Stop()
			expiry = t.C
		}
		select {
		case <-expiry:
			s.forget(secret)
		case <-changed:
		case <-ctx.Done():
		}
		return
	}
	w, err := s.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		s.log.Warn("vault token cannot be watched; logging in again", "error", err)
		s.forget(secret)
		return
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case err := <-w.DoneCh():
			// The token reached its max TTL, or renewal failed: log in again.
			if err != nil {
				s.log.Info("vault token renewal stopped; logging in again", "error", err)
			} else {
				s.log.Debug("vault token reached the end of its lifetime; logging in again")
			}
			s.forget(secret)
			return
		case r := <-w.RenewCh():
			s.renewals.Add(1)
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				s.setExpiry(r.Secret.Auth.LeaseDuration)
			}
		case <-changed:
			return // a request-triggered login replaced the token
		case <-ctx.Done():
			return
		}
	}
}

// forget drops secret if it is still the current one, so that run logs in.
func (s *tokenSource) forget(secret *api.Secret) {
	s.mu.Lock()
	if s.secret == secret {
		s.secret = nil
	}
	s.mu.Unlock()
}

// relogin logs in again if the token of generation seen is still the one in
// use; concurrent callers share one login.
func (s *tokenSource) relogin(ctx context.Context, seen uint64) error {
	if s.generation() != seen {
		return nil // someone logged in since this caller's request
	}
	return s.login(ctx)
}

// login performs one login (shared by concurrent callers), unless the last
// failure was too recent.
func (s *tokenSource) login(ctx context.Context) error {
	_, err, _ := s.sf.Do("login", func() (any, error) {
		s.mu.Lock()
		wait := time.Until(s.nextAttempt)
		s.mu.Unlock()
		if wait > 0 {
			return nil, errLoginBackoff
		}
		// The login outlives the request that asked for it: other
		// requests wait on the same call.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loginTimeout)
		defer cancel()
		// Log in on a clone without the old token: an expired or revoked
		// token must not ride along on the login request.
		lc, err := s.api.CloneWithHeaders()
		if err != nil {
			return nil, fmt.Errorf("clone vault client for login: %w", err)
		}
		lc.ClearToken()
		if s.authNamespace != "" {
			lc.SetNamespace(s.authNamespace)
		}
		secret, err := s.method.Login(lctx, lc)
		if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
			err = errors.New("vault login answered without a token")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.loginErrors.Add(1)
			s.failures++
			s.nextAttempt = time.Now().Add(backoffDelay(s.failures))
			s.log.Warn("vault login failed", "error", err, "consecutive_failures", s.failures)
			return nil, classify(fmt.Errorf("vault login: %w", err))
		}
		s.api.SetToken(secret.Auth.ClientToken)
		s.logins.Add(1)
		s.failures = 0
		s.nextAttempt = time.Time{}
		s.secret = secret
		s.gen++
		close(s.changed)
		s.changed = make(chan struct{})
		s.setExpiry(secret.Auth.LeaseDuration)
		s.log.Info("vault login succeeded", "ttl_seconds", secret.Auth.LeaseDuration, "renewable", secret.Auth.Renewable)
		return nil, nil
	})
	return err
}

func (s *tokenSource) setExpiry(leaseSeconds int) {
	if leaseSeconds <= 0 {
		s.expiresAtUTC.Store(0)
		return
	}
	s.expiresAtUTC.Store(time.Now().Add(time.Duration(leaseSeconds) * time.Second).Unix())
}

func (s *tokenSource) sleepBackoff(ctx context.Context) {
	s.mu.Lock()
	wait := time.Until(s.nextAttempt)
	s.mu.Unlock()
	if wait <= 0 {
		wait = loginBackoffMin
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// backoffDelay is 1 s doubling per consecutive failure up to 5 min, with
// "equal jitter" (half fixed, half random) so replicas do not log in in step.
func backoffDelay(failures int) time.Duration {
	d := loginBackoffMin
	for i := 1; i < failures && d < loginBackoffMax; i++ {
		d *= 2
	}
	d = min(d, loginBackoffMax)
	half := d / 2
	return half + rand.N(half+1)
}
