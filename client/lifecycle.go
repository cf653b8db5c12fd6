package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// The key lifecycle (docs/lifecycle.md): rotation and revocation at the
// provider, a scope's rotateAfter, and where a key is used.

// RotateKey rotates a key at its provider with the scope's admin
// credential; grace (nil: the server's default) is how long the old key
// lives there. The answer is the rotation in its grace step.
func (c *Client) RotateKey(ctx context.Context, ref KeyRef, grace *time.Duration) (Rotation, error) {
	var req RotateRequest
	if grace != nil {
		s := int(*grace / time.Second)
		req.GraceSeconds = &s
	}
	var out Rotation
	_, err := c.do(ctx, http.MethodPost, ref.path()+"/rotate", nil, req, &out)
	return out, err
}

// Rotations lists a key's rotations, newest first.
func (c *Client) Rotations(ctx context.Context, ref KeyRef) ([]Rotation, error) {
	var out RotationList
	_, err := c.do(ctx, http.MethodGet, ref.path()+"/rotations", nil, nil, &out)
	return out.Rotations, err
}

// RevokeKey deletes a key from its pool and revokes it at its provider;
// the answer says what the provider did (or that it is asked again).
func (c *Client) RevokeKey(ctx context.Context, ref KeyRef, expectedVersion int, destroy bool) (Revocation, error) {
	path := ref.path() + "?revokeAtProvider=true"
	if destroy {
		path += "&destroy=true"
	}
	var out Revocation
	_, err := c.do(ctx, http.MethodDelete, path, ifMatch(expectedVersion), nil, &out)
	return out, err
}

// KeyUsage says where a key is used since since (zero: the server's
// default, 30 days).
func (c *Client) KeyUsage(ctx context.Context, ref KeyRef, since time.Time) (KeyUsage, error) {
	path := ref.path() + "/usage"
	if !since.IsZero() {
		path += "?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))
	}
	var out KeyUsage
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// Lifecycle returns a scope's lifecycle settings.
func (c *Client) Lifecycle(ctx context.Context, scope Scope) (LifecycleSettings, error) {
	var out LifecycleSettings
	_, err := c.do(ctx, http.MethodGet, scope.path()+"/lifecycle", nil, nil, &out)
	return out, err
}

// PutLifecycle sets a scope's rotateAfter ("90d", "36h"; "" for none).
func (c *Client) PutLifecycle(ctx context.Context, scope Scope, rotateAfter string) (LifecycleSettings, error) {
	var out LifecycleSettings
	_, err := c.do(ctx, http.MethodPut, scope.path()+"/lifecycle", nil, LifecycleSettings{RotateAfter: rotateAfter}, &out)
	return out, err
}
