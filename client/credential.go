package client

import (
	"context"
	"net/http"
)

// PutCredential rotates a key, or creates it with the default settings,
// from the credential's fields by name (a map field as a map[string]string
// or map[string]any), for providers of any kind. With expectedVersion > 0
// it is sent as If-Match; with check the provider is asked first (as
// PutCheckedKey). created is true on 201.
func (c *Client) PutCredential(ctx context.Context, ref KeyRef, credential map[string]any, expectedVersion int, check bool) (meta KeyMetadata, created bool, err error) {
	path := ref.path()
	if check {
		path += "?verify=true"
	}
	resp, err := c.do(ctx, http.MethodPut, path, ifMatch(expectedVersion), PutKeyRequest{Credential: credential}, &meta)
	if err != nil {
		return KeyMetadata{}, false, err
	}
	return meta, resp.StatusCode == http.StatusCreated, nil
}
