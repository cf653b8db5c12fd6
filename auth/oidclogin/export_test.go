package oidclogin

import (
	"context"
	"net/url"
)

// ExchangeForTest trades a callback's code for the raw ID token, without
// verifying it: the tests verify it as another client would.
func (rp *RP) ExchangeForTest(ctx context.Context, p Pending, q url.Values) (string, error) {
	return rp.exchange(ctx, p, q)
}
