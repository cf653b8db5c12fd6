package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/keybroker/keybroker/providers"
	"github.com/keybroker/keybroker/vault"
)

// readCredential reads the credential of provider at path with the reader
// identity: the current version, or version when > 0. A secret that lacks
// a field its provider's credential kind requires is a
// *vault.NoValueFieldError (also vault.ErrNotFound: there is nothing to
// serve).
func (b *Broker) readCredential(ctx context.Context, provider, path string, version int) (providers.Credential, int, error) {
	p, ok := b.providers.Lookup(provider)
	if !ok {
		return providers.Credential{}, 0, fmt.Errorf("read %s: %w %q", path, ErrUnknownProvider, provider)
	}
	// An admin credential (openai-admin, ...) is read with the writer
	// identity, the only one whose policy may: the reader's (execution
	// pods) denies the admin providers' paths (docs/security.md).
	kv := b.reader
	if p.AdminOf != "" {
		kv = b.adminReader()
	}
	if kv == nil {
		return providers.Credential{}, 0, fmt.Errorf("read %s: %w: no Vault identity of this replica may read it", path, ErrNotConfigured)
	}
	var s vault.Secret
	var err error
	if version > 0 {
		s, err = kv.GetVersion(ctx, path, version)
	} else {
		s, err = kv.Get(ctx, path)
	}
	if err != nil {
		return providers.Credential{}, 0, err
	}
	c, err := p.Credential.FromVault(s.Data)
	var mf *providers.MissingFieldError
	if errors.As(err, &mf) {
		fields := make([]string, len(mf.Have))
		for i, h := range mf.Have {
			fields[i] = strconv.Quote(h)
		}
		return providers.Credential{}, 0, fmt.Errorf("read secret at %s: %w", path, &vault.NoValueFieldError{Field: mf.Field, Fields: fields})
	}
	if err != nil {
		return providers.Credential{}, 0, fmt.Errorf("read secret at %s: %w", path, err)
	}
	return c, s.Version, nil
}

// missingField is the field a *vault.NoValueFieldError names ("" for
// another error).
func missingField(err error) string {
	var nf *vault.NoValueFieldError
	if errors.As(err, &nf) {
		return nf.Field
	}
	return ""
}

// adminReader reads admin credentials: the writer identity (its policy
// grants read of the admin providers' keys alone); nil without one.
func (b *Broker) adminReader() KeyReader {
	r, _ := b.writer.(KeyReader)
	return r
}
