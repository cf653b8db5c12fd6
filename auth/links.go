package auth

import (
	"strconv"

	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
)

// LinkSigner signs organization links with the admin keys (their subkey
// for links): linking a workspace to an organization gives the workspace's
// resolver tokens the organization's keys, so a link is a grant, and like a
// token row it must carry a signature the database cannot make.
type LinkSigner struct {
	ring *keyring.Ring
}

var _ broker.LinkSigner = (*LinkSigner)(nil)

// NewLinkSigner returns a signer over ring (the admin keys); nil for an
// empty ring.
func NewLinkSigner(ring *keyring.Ring) *LinkSigner {
	if ring.Empty() {
		return nil
	}
	return &LinkSigner{ring: ring.Derive("organization links")}
}

func linkMessage(workspace, organization string, generation int64) []byte {
	return []byte("keybroker organization link v2\x00" + workspace + "\x00" + organization + "\x00" + strconv.FormatInt(generation, 10))
}

// SignLink signs the link of workspace to organization, at the settings
// row's generation, with the current key.
func (l *LinkSigner) SignLink(workspace, organization string, generation int64) (string, []byte, error) {
	return l.ring.Sign(linkMessage(workspace, organization, generation))
}

// VerifyLink says whether signature, by key keyID, signs that link.
func (l *LinkSigner) VerifyLink(workspace, organization string, generation int64, keyID string, signature []byte) bool {
	return keyID != "" && l.ring.Verify(keyID, linkMessage(workspace, organization, generation), signature) == nil
}
