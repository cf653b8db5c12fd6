package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is one loaded JWKS: the usable public signing keys by kid.
type keySet struct {
	keys    map[string]jose.JSONWebKey
	loaded  time.Time // when fetched or read
	checked time.Time // file: when last compared with the file
	modTime time.Time // file: its modification time and size when read
	size    int64
}

// keySource gives a platform's keys: from its JWKS URL, cached for
// JWKSTTL and refreshed on an unknown kid at most once per
// RefreshMinInterval; or from its JWKS file, re-read when it changes.
type keySource struct {
	url, file string
	http      *http.Client
	b         Bounds
	now       func() time.Time

	cur atomic.Pointer[keySet]
	// sem (capacity 1) serialises loads; holding it guards lastAttempt
	// and lastForced.
	sem         chan struct{}
	lastAttempt time.Time
	lastForced  time.Time
}

func newKeySource(r Registration, hc *http.Client, b Bounds, now func() time.Time) *keySource {
	return &keySource{url: r.JWKSURL, file: r.JWKSFile, http: hc, b: b, now: now, sem: make(chan struct{}, 1)}
}

// stale says whether set should be looked at again although it has kid.
func (s *keySource) stale(set *keySet, now time.Time) bool {
	if s.file != "" {
		return now.Sub(set.checked) >= s.b.FileCheckInterval
	}
	return now.Sub(set.loaded) >= s.b.JWKSTTL
}

// usable says whether set may still serve when a load fails.
func (s *keySource) usable(set *keySet, now time.Time) bool {
	return set != nil && now.Sub(set.loaded) < s.b.MaxStale
}

// key returns the key named kid. The hot path is one atomic load and a map
// lookup.
func (s *keySource) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	now := s.now()
	set := s.cur.Load()
	var k jose.JSONWebKey
	var have bool
	if set != nil {
		k, have = set.keys[kid]
		if have && !s.stale(set, now) {
			return k, nil
		}
	}
	if have && s.usable(set, now) {
		// A known key whose set is due for a refresh: refresh if nobody
		// else is, else serve the current set meanwhile.
		select {
		case s.sem <- struct{}{}:
		default:
			return k, nil
		}
	} else {
		select {
		case s.sem <- struct{}{}:
		default:
			select {
			case s.sem <- struct{}{}:
			case <-ctx.Done():
				return jose.JSONWebKey{}, fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
			}
		}
	}
	defer func() { <-s.sem }()
	return s.keyLocked(ctx, kid, now)
}

func (s *keySource) keyLocked(ctx context.Context, kid string, now time.Time) (jose.JSONWebKey, error) {
	set := s.cur.Load() // another caller may have loaded while we waited
	var k jose.JSONWebKey
	var have bool
	if set != nil {
		k, have = set.keys[kid]
		if have && !s.stale(set, now) {
			return k, nil
		}
	}
	if s.file != "" {
		// A local file: compare it at each due check or unknown kid
		// (cheap); re-read it unchanged only once per
		// RefreshMinInterval (an unknown kid after a rewrite within
		// the file system's time granularity).
		force := !have && now.Sub(s.lastForced) >= s.b.RefreshMinInterval
		if force {
			s.lastForced = now
		}
		if err := s.readFile(set, now, force); err != nil {
			if have && s.usable(set, now) {
				return k, nil
			}
			return jose.JSONWebKey{}, err
		}
	} else {
		if now.Sub(s.lastAttempt) < s.b.RefreshMinInterval && !s.lastAttempt.IsZero() {
			// Loaded (or tried) recently: an unknown kid waits, so
			// that random kids cannot make keybroker hammer the
			// platform.
			if have && s.usable(set, now) {
				return k, nil
			}
			if set == nil || !s.usable(set, now) {
				return jose.JSONWebKey{}, fmt.Errorf("%w: the last attempt failed; next attempt in at most %s", ErrKeysUnavailable, s.b.RefreshMinInterval)
			}
			return jose.JSONWebKey{}, fmt.Errorf("%w: not in the platform's JWKS", ErrUnknownKey)
		}
		s.lastAttempt = now
		if err := s.fetch(ctx, now); err != nil {
			if have && s.usable(set, now) {
				return k, nil
			}
			return jose.JSONWebKey{}, err
		}
	}
	if k, ok := s.cur.Load().keys[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: not in the platform's JWKS", ErrUnknownKey)
}

func (s *keySource) fetch(ctx context.Context, now time.Time) error {
	// The fetch serves every waiting caller: the one that triggered it
	// going away must not cut it short (and leave the platform without
	// keys until the next attempt is allowed).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: fetching the JWKS: %w", ErrKeysUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: fetching the JWKS: HTTP %d", ErrKeysUnavailable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.b.MaxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading the JWKS: %w", ErrKeysUnavailable, err)
	}
	if int64(len(body)) > s.b.MaxJWKSBytes {
		return fmt.Errorf("%w: the JWKS is larger than %d bytes", ErrKeysUnavailable, s.b.MaxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	s.cur.Store(&keySet{keys: keys, loaded: now, checked: now})
	return nil
}

// readFile re-reads the JWKS file when it changed since set was read (or
// when force), and records the check.
func (s *keySource) readFile(set *keySet, now time.Time, force bool) error {
	fi, err := os.Stat(s.file)
	if err != nil {
		return fmt.Errorf("%w: the JWKS file: %w", ErrKeysUnavailable, err)
	}
	if set != nil && !force && fi.ModTime().Equal(set.modTime) && fi.Size() == set.size {
		s.cur.Store(&keySet{keys: set.keys, loaded: now, checked: now, modTime: set.modTime, size: set.size})
		return nil
	}
	if fi.Size() > s.b.MaxJWKSBytes {
		return fmt.Errorf("%w: the JWKS file is larger than %d bytes", ErrKeysUnavailable, s.b.MaxJWKSBytes)
	}
	body, err := os.ReadFile(s.file)
	if err != nil {
		return fmt.Errorf("%w: the JWKS file: %w", ErrKeysUnavailable, err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("%w: the JWKS file: %w", ErrKeysUnavailable, err)
	}
	s.cur.Store(&keySet{keys: keys, loaded: now, checked: now, modTime: fi.ModTime(), size: fi.Size()})
	return nil
}

// fetchTimeout bounds a JWKS fetch, whatever the HTTP client's timeout.
const fetchTimeout = 10 * time.Second

// maxKeys bounds a JWKS: platforms publish a handful.
const maxKeys = 100

// parseJWKS keeps the usable public signing keys of a JWKS: a key of an
// unknown type, for encryption, symmetric, too weak (RSA under 2048 bits,
// a curve other than P-256 and P-384) or without kid is skipped; of a
// private key only its public part is kept; a kid given twice is dropped
// (ambiguous).
func parseJWKS(body []byte) (map[string]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errors.New("the JWKS is not a JSON key set")
	}
	if len(raw.Keys) > maxKeys {
		return nil, fmt.Errorf("the JWKS has more than %d keys", maxKeys)
	}
	keys := make(map[string]jose.JSONWebKey, len(raw.Keys))
	twice := map[string]bool{}
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue
		}
		if k.KeyID == "" || k.Use == "enc" || twice[k.KeyID] {
			continue
		}
		pub := k.Public()
		if !pub.Valid() || !acceptableKey(pub.Key) {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			delete(keys, k.KeyID)
			twice[k.KeyID] = true
			continue
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}

func acceptableKey(key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() || k.Curve == elliptic.P384()
	case ed25519.PublicKey:
		return len(k) == ed25519.PublicKeySize
	default:
		return false
	}
}

// keySigns says whether key signs with alg: RSA with RS* and PS*, P-256
// with ES256, P-384 with ES384, Ed25519 with EdDSA; and, when the JWK
// names its alg, only with that one.
func keySigns(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256:
			return true
		}
	case *ecdsa.PublicKey:
		return key.Curve == elliptic.P256() && alg == string(jose.ES256) ||
			key.Curve == elliptic.P384() && alg == string(jose.ES384)
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}
