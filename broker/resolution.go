package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A resolution id names one resolve answer, for the platform's usage
// records and for /v1/resolve/report. It carries what a report needs — the
// workspace the key was resolved for, the key, its version, when it was
// issued — and a MAC over that and the caller's token id, so that any
// replica sharing the resolution key can act on a report without a
// lookup, and a token cannot report a resolution it did not get (or one it
// made up, or one for another workspace).
//
// Layout (base64url, no padding, after "res_"): 1 byte layout version, 4
// bytes issue time (unix seconds), uvarint counter, 1 byte scope, uvarint
// key version, workspace, 0, scope id, 0, provider, 0, key id, then a
// 12-byte MAC.

const (
	resolutionPrefix = "res_"
	resolutionLayout = 2
	resolutionMACLen = 12
	// ResolutionTTL is how long a resolution id may be reported on.
	ResolutionTTL = time.Hour
)

// ErrUnknownResolution: the resolution id is malformed, was not issued to
// this caller, was issued by a replica with another secret, or is older
// than ResolutionTTL.
var ErrUnknownResolution = errors.New("unknown resolution")

// resolutionIDs makes and checks resolution ids.
type resolutionIDs struct {
	key []byte
	// previous keys are still accepted (a rotation's overlap), never used
	// to make an id.
	previous [][]byte
	counter  atomic.Uint64
	pool     sync.Pool // *resolutionScratch
}

type resolutionScratch struct {
	mac hash.Hash
	buf [512]byte
	out [700]byte
}

// newResolutionIDs keys the MAC with key (Config.ResolutionKey, which
// every replica shares; it is not the fingerprint pepper); without one, a
// random key: reports are then taken only by the replica that resolved.
// previous keys are accepted too, for a rotation's overlap.
func newResolutionIDs(key []byte, previous [][]byte) *resolutionIDs {
	r := &resolutionIDs{key: deriveResolutionKey(key)}
	if len(key) == 0 {
		r.key = make([]byte, 32)
		_, _ = rand.Read(r.key)
	}
	for _, k := range previous {
		if len(k) > 0 {
			r.previous = append(r.previous, deriveResolutionKey(k))
		}
	}
	r.pool.New = func() any { return &resolutionScratch{mac: hmac.New(sha256.New, r.key)} }
	return r
}

// deriveResolutionKey is the MAC key of resolution ids under secret: a
// value signed for another use of the same secret never passes as one.
func deriveResolutionKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("keybroker resolution ids v2"))
	return m.Sum(nil)
}

func scopeByte(k ScopeKind) byte {
	switch k {
	case ScopeOrganization:
		return 'o'
	case ScopeHosted:
		return 'h'
	}
	return 'w'
}

func scopeOfByte(b byte) ScopeKind {
	switch b {
	case 'w':
		return ScopeWorkspace
	case 'o':
		return ScopeOrganization
	case 'h':
		return ScopeHosted
	}
	return ""
}

// make builds the id of a resolution of ref at version for caller, asked
// for workspace, in one allocation (the string).
func (r *resolutionIDs) make(workspace string, ref *KeyRef, version int, caller string, now time.Time) string {
	s := r.pool.Get().(*resolutionScratch)
	defer r.pool.Put(s)
	b := append(s.buf[:0], resolutionLayout)
	b = binary.BigEndian.AppendUint32(b, uint32(now.Unix()))
	b = binary.AppendUvarint(b, r.counter.Add(1))
	b = append(b, scopeByte(ref.ScopeKind))
	b = binary.AppendUvarint(b, uint64(version))
	b = append(b, workspace...)
	b = append(b, 0)
	b = append(b, ref.ScopeID...)
	b = append(b, 0)
	b = append(b, ref.Provider...)
	b = append(b, 0)
	b = append(b, ref.KeyID...)
	n := len(b)
	b = append(b, 0)
	b = append(b, caller...)
	s.mac.Reset()
	s.mac.Write(b)
	b = s.mac.Sum(b[:n])[:n+resolutionMACLen]
	out := append(s.out[:0], resolutionPrefix...)
	out = base64.RawURLEncoding.AppendEncode(out, b)
	return string(out)
}

// Resolved is what a resolution id says.
type Resolved struct {
	// Workspace is the workspace the key was resolved for: the reporter.
	Workspace string
	Ref       KeyRef
	Version   int
	IssuedAt  time.Time
}

// owned says whether the resolved key is the reporting workspace's own
// (its pool's), whose health its reports may change for everyone.
func (r Resolved) owned() bool {
	return r.Ref.ScopeKind == ScopeWorkspace && r.Ref.ScopeID == r.Workspace
}

// parse checks id against caller and returns what it names.
func (r *resolutionIDs) parse(id, caller string, now time.Time) (Resolved, error) {
	raw, ok := strings.CutPrefix(id, resolutionPrefix)
	if !ok || len(raw) > 600 {
		return Resolved{}, ErrUnknownResolution
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(raw)
	if err != nil || len(b) < 1+4+1+1+1+4+resolutionMACLen || b[0] != resolutionLayout {
		return Resolved{}, ErrUnknownResolution
	}
	payload, mac := b[:len(b)-resolutionMACLen], b[len(b)-resolutionMACLen:]
	if !r.verify(payload, caller, mac) {
		return Resolved{}, ErrUnknownResolution
	}
	issued := time.Unix(int64(binary.BigEndian.Uint32(payload[1:5])), 0)
	if now.Sub(issued) > ResolutionTTL || issued.Sub(now) > time.Minute {
		return Resolved{}, errors.Join(ErrUnknownResolution, errors.New("the resolution is older than an hour"))
	}
	rest := payload[5:]
	_, n := binary.Uvarint(rest)
	if n <= 0 || len(rest) < n+1 {
		return Resolved{}, ErrUnknownResolution
	}
	rest = rest[n:]
	scope := scopeOfByte(rest[0])
	version, n := binary.Uvarint(rest[1:])
	if scope == "" || n <= 0 {
		return Resolved{}, ErrUnknownResolution
	}
	parts := strings.Split(string(rest[1+n:]), "\x00")
	if len(parts) != 4 || parts[0] == "" {
		return Resolved{}, ErrUnknownResolution
	}
	return Resolved{Workspace: parts[0], Ref: KeyRef{ScopeKind: scope, ScopeID: parts[1], Provider: parts[2], KeyID: parts[3]},
		Version: int(version), IssuedAt: issued}, nil
}

// verify checks mac against payload and caller under the current key,
// then the previous ones.
func (r *resolutionIDs) verify(payload []byte, caller string, mac []byte) bool {
	for i := -1; i < len(r.previous); i++ {
		key := r.key
		if i >= 0 {
			key = r.previous[i]
		}
		m := hmac.New(sha256.New, key)
		m.Write(payload)
		m.Write([]byte{0})
		m.Write([]byte(caller))
		if hmac.Equal(m.Sum(nil)[:resolutionMACLen], mac) {
			return true
		}
	}
	return false
}
