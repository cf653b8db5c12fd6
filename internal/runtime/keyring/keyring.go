// Package keyring owns keybroker's signing keys: a ring of named HMAC keys,
// the first of which signs and all of which verify, so that a key can be
// rotated with overlap (add the new key after the current one on every
// replica, then move it first, then drop the old one once nothing it
// signed is still in use). Each use of a ring (token rows, proxy tokens,
// resolution ids) signs with a subkey derived for that purpose, so that
// a value signed for one use never verifies for another.
//
// A ring is written as `id:secret[,id:secret...]`, where id matches
// [a-z0-9][a-z0-9-]{0,15} and secret is at least 32 bytes (random text or
// base64). It comes from the environment or a file, never from a flag.
package keyring

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MinSecretLen is the shortest secret a ring accepts.
const MinSecretLen = 32

var idRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)

// Key is one named secret.
type Key struct {
	ID     string
	secret []byte
}

// Ring is an ordered set of keys: Current signs, every key verifies.
// A nil *Ring holds no key (Parse of ""); its methods say so.
type Ring struct {
	keys []Key
}

// ErrNoKey: the ring is empty, or holds no key of the id a value names.
var ErrNoKey = errors.New("keyring: no such signing key")

// Parse reads a ring; "" is a nil ring (no key configured). Errors never
// contain a secret.
func Parse(s string) (*Ring, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	r := &Ring{}
	for i, part := range strings.Split(s, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("keyring: entry %d is not id:secret", i+1)
		}
		if !idRule.MatchString(id) {
			return nil, fmt.Errorf("keyring: entry %d: key id %q must match %s", i+1, id, idRule)
		}
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("keyring: key %q: the secret must be at least %d bytes", id, MinSecretLen)
		}
		if _, dup := r.lookup(id); dup {
			return nil, fmt.Errorf("keyring: key id %q appears twice", id)
		}
		r.keys = append(r.keys, Key{ID: id, secret: []byte(secret)})
	}
	return r, nil
}

// New returns a ring of one key (tests, keybroker dev).
func New(id string, secret []byte) (*Ring, error) {
	if !idRule.MatchString(id) {
		return nil, fmt.Errorf("keyring: key id %q must match %s", id, idRule)
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("keyring: key %q: the secret must be at least %d bytes", id, MinSecretLen)
	}
	return &Ring{keys: []Key{{ID: id, secret: append([]byte(nil), secret...)}}}, nil
}

// Generate returns a new ring text of one random key named id (keybroker
// dev, the docs' set-up).
func Generate(id string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	return id + ":" + base64.RawURLEncoding.EncodeToString(b), nil
}

// Empty says whether the ring holds no key.
func (r *Ring) Empty() bool { return r == nil || len(r.keys) == 0 }

// CurrentID is the id of the signing key ("" for an empty ring).
func (r *Ring) CurrentID() string {
	if r.Empty() {
		return ""
	}
	return r.keys[0].ID
}

// IDs lists the ring's key ids, the signing one first.
func (r *Ring) IDs() []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.ID
	}
	return out
}

func (r *Ring) lookup(id string) (Key, bool) {
	if r == nil {
		return Key{}, false
	}
	for _, k := range r.keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// Derive returns the subkey of every key for purpose, under the same ids:
// values signed for one purpose never verify for another.
func (r *Ring) Derive(purpose string) *Ring {
	if r.Empty() {
		return nil
	}
	out := &Ring{keys: make([]Key, len(r.keys))}
	for i, k := range r.keys {
		m := hmac.New(sha256.New, k.secret)
		m.Write([]byte("keybroker keyring v1\x00" + purpose))
		out.keys[i] = Key{ID: k.ID, secret: m.Sum(nil)}
	}
	return out
}

// CurrentSecret is the signing key's secret, for uses that carry no key id
// (resolution ids, which live an hour). nil for an empty ring.
func (r *Ring) CurrentSecret() []byte {
	if r.Empty() {
		return nil
	}
	return append([]byte(nil), r.keys[0].secret...)
}

// Secrets are every key's secret, the signing one first, for uses that
// carry no key id and so try each (resolution ids).
func (r *Ring) Secrets() [][]byte {
	if r.Empty() {
		return nil
	}
	out := make([][]byte, len(r.keys))
	for i, k := range r.keys {
		out[i] = append([]byte(nil), k.secret...)
	}
	return out
}

// Sign returns the id of the signing key and the HMAC-SHA256 of msg under
// it.
func (r *Ring) Sign(msg []byte) (id string, mac []byte, err error) {
	if r.Empty() {
		return "", nil, ErrNoKey
	}
	k := r.keys[0]
	return k.ID, sum(k.secret, msg), nil
}

// Verify says whether mac is msg's HMAC-SHA256 under the key named id (in
// constant time); an unknown id is ErrNoKey.
func (r *Ring) Verify(id string, msg, mac []byte) error {
	k, ok := r.lookup(id)
	if !ok {
		return ErrNoKey
	}
	if len(mac) < 16 || len(mac) > sha256.Size || !hmac.Equal(mac, sum(k.secret, msg)[:len(mac)]) {
		return errors.New("keyring: signature does not match")
	}
	return nil
}

// MAC returns msg's HMAC-SHA256 under the key named id (the proxy tokens'
// truncated tags).
func (r *Ring) MAC(id string, msg []byte) ([]byte, error) {
	k, ok := r.lookup(id)
	if !ok {
		return nil, ErrNoKey
	}
	return sum(k.secret, msg), nil
}

func sum(secret, msg []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return m.Sum(nil)
}

// String names the keys, never a secret.
func (r *Ring) String() string {
	if r.Empty() {
		return "keyring(empty)"
	}
	return "keyring(" + strings.Join(r.IDs(), ",") + ")"
}

// GoString is String: a ring printed with %#v shows no secret either.
func (r *Ring) GoString() string { return r.String() }
