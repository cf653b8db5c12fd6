package auth

import (
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// LifecycleSigner signs the rows of rotations and revocations at the
// provider with the admin keys (their subkey for lifecycle rows): such a
// row makes keybroker delete or deactivate keys at the provider, so like a
// token row or an organization link it must carry a signature the
// database cannot make.
type LifecycleSigner struct {
	ring *keyring.Ring
}

var _ broker.LifecycleSigner = (*LifecycleSigner)(nil)

// NewLifecycleSigner returns a signer over ring (the admin keys); nil for
// an empty ring.
func NewLifecycleSigner(ring *keyring.Ring) *LifecycleSigner {
	if ring.Empty() {
		return nil
	}
	return &LifecycleSigner{ring: ring.Derive("lifecycle rows")}
}

// SignLifecycle signs msg with the current key.
func (l *LifecycleSigner) SignLifecycle(msg []byte) (string, []byte, error) { return l.ring.Sign(msg) }

// VerifyLifecycle says whether signature, by key keyID, signs msg.
func (l *LifecycleSigner) VerifyLifecycle(keyID string, msg, signature []byte) bool {
	return keyID != "" && l.ring.Verify(keyID, msg, signature) == nil
}
