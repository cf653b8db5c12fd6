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
	var s vault.Secret
	var err error
	if version > 0 {
		s, err = b.reader.GetVersion(ctx, path, version)
	} else {
		s, err = b.reader.Get(ctx, path)
	}
	if err != nil {
		return providers.Credential{}, 0, err
	}
	p, ok := b.providers.Lookup(provider)
	if !ok {
		return providers.Credential{}, 0, fmt.Errorf("read %s: %w %q", path, ErrUnknownProvider, provider)
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
