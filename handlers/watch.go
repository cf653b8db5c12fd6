package handlers

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/watch"
)

// defaultHeartbeat is how often an idle watch stream says it is alive.
const defaultHeartbeat = 15 * time.Second

// watchResolve is GET /v1/resolve/watch: a newline-delimited JSON stream of
// the changes that can alter what this resolver token resolves (keys
// written, rotated, rolled back or deleted; pools, health and settings),
// opened with a hello (flush what you hold) and kept alive by heartbeats.
// A revoked token ends it with a revoked event; a watcher that does not
// keep up is cut off (its client reconnects and flushes).
func (s *server) watchResolve(c *gin.Context) {
	p, _ := principalOf(c)
	if p.Role != auth.RoleResolver {
		s.authorize(c, auth.ActionResolve, broker.Scope{}, "")
		return
	}
	w := s.hub.Subscribe(p.TokenID)
	defer s.hub.Unsubscribe(w)
	rc := http.NewResponseController(c.Writer)
	h := c.Writer.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // proxies must not hold lines back
	c.Status(http.StatusOK)
	enc := json.NewEncoder(c.Writer)
	write := func(ev watch.Event) bool {
		// Each line gets its own write deadline: the server's
		// WriteTimeout would otherwise end every stream after 30 s.
		_ = rc.SetWriteDeadline(time.Now().Add(s.heartbeat + 10*time.Second))
		if enc.Encode(ev) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(watch.Event{Type: watch.TypeHello}) {
		return
	}
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case ev := <-w.C:
			if !mayWatch(p, ev) {
				continue
			}
			if !write(ev) || ev.Type == watch.TypeRevoked {
				return
			}
		case <-w.Done:
			// Cut off or revoked: what is buffered still goes out (a
			// revoked event last), then the stream ends.
			for {
				select {
				case ev := <-w.C:
					if mayWatch(p, ev) && !write(ev) {
						return
					}
				default:
					return
				}
			}
		case <-tick.C:
			if !write(watch.Event{Type: watch.TypeHeartbeat}) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// mayWatch says whether a resolver limited to some workspaces hears of ev:
// other workspaces' events are not its business (organizations' and hosted
// pools may serve any workspace, so it hears of those).
func mayWatch(p auth.Principal, ev watch.Event) bool {
	if len(p.Workspaces) == 0 {
		return true
	}
	switch {
	case ev.Workspace != "":
		return slices.Contains(p.Workspaces, ev.Workspace)
	case ev.Scope == string(broker.ScopeWorkspace):
		return slices.Contains(p.Workspaces, ev.ScopeID)
	}
	return true
}
