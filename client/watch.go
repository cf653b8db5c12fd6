package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// WatchEvent is one event of GET /v1/resolve/watch: Type is hello (flush
// what you hold), invalidate (what can resolve for Scope/ScopeID/Provider,
// one key when KeyID is set, or a Workspace's settings, changed), flush
// (drop everything), heartbeat or revoked (the token was revoked: drop
// everything; the stream ends).
type WatchEvent struct {
	Type      string `json:"type"`
	Scope     string `json:"scope,omitempty"`
	ScopeID   string `json:"scopeId,omitempty"`
	Provider  string `json:"provider,omitempty"`
	KeyID     string `json:"keyId,omitempty"`
	Workspace string `json:"workspace,omitempty"`
}

// WatchStream is an open GET /v1/resolve/watch (resolver tokens).
type WatchStream struct {
	resp *http.Response
	sc   *bufio.Scanner
}

// Watch opens the stream of changes that can alter what this token
// resolves. It has no timeout of its own (the server sends heartbeats);
// cancel ctx or Close it to end it. A refused token is an *Error (401).
func (c *Client) Watch(ctx context.Context) (*WatchStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v1/resolve/watch", nil)
	if err != nil {
		return nil, fmt.Errorf("keybroker: watch: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/x-ndjson")
	// The client's own timeout bounds whole requests; a stream is not one.
	streams := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	resp, err := streams.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keybroker: watch: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		if resp.StatusCode >= 400 {
			return nil, apiError(resp)
		}
		return nil, fmt.Errorf("keybroker: watch answered %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	return &WatchStream{resp: resp, sc: sc}, nil
}

// Next waits for the next event. It returns an error when the stream
// ends (io.EOF-like: the server closed it, the context ended, the
// connection broke).
func (w *WatchStream) Next() (WatchEvent, error) {
	if !w.sc.Scan() {
		if err := w.sc.Err(); err != nil {
			return WatchEvent{}, fmt.Errorf("keybroker: watch stream: %w", err)
		}
		return WatchEvent{}, fmt.Errorf("keybroker: watch stream: %w", ErrStreamEnded)
	}
	var ev WatchEvent
	if err := json.Unmarshal(w.sc.Bytes(), &ev); err != nil {
		return WatchEvent{}, fmt.Errorf("keybroker: watch stream: a line that is not an event: %w", err)
	}
	return ev, nil
}

// Close ends the stream.
func (w *WatchStream) Close() error { return w.resp.Body.Close() }
