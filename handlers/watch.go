package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/internal/runtime/watch"
)

// defaultHeartbeat is how often an idle watch stream says it is alive.
const defaultHeartbeat = 15 * time.Second

// watchRetryAfter is the Retry-After of a stream refused by a cap: streams
// end when their clients go, so room comes back within moments.
const watchRetryAfter = 5 * time.Second

// settingsMirror is the broker's in-memory copy of the workspaces'
// settings: what a resolve on this replica reads (broker.Broker).
type settingsMirror interface {
	MirroredSettings(workspace string) (broker.Settings, bool)
}

// watchResolve is GET /v1/resolve/watch: a newline-delimited JSON stream of
// the changes that can alter what this resolver token resolves (keys
// written, rotated, rolled back or deleted; pools, health and settings),
// opened with a hello (flush what you hold) and kept alive by heartbeats.
// A revoked token ends it with a revoked event; a watcher that does not
// keep up is cut off (its client reconnects and flushes). A token holds
// a bounded number of streams on a replica, and a replica a bounded
// number in all: past either, 429 too_many_streams with Retry-After.
func (s *server) watchResolve(c *gin.Context) {
	r, ok := s.open(c, opening{resolver: true})
	if !ok {
		return
	}
	p := r.principal
	w, err := s.hub.Subscribe(p.TokenID)
	if err != nil {
		renderError(c, s.log, tooManyStreams(s.hub, err))
		return
	}
	defer s.hub.Unsubscribe(w)
	reach := s.watchReach(p)
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
	// pass writes ev when the token may hear of it, keeping what the
	// token's workspaces resolve from up to date first.
	pass := func(ev watch.Event) bool {
		reach.update(ev)
		if !reach.allows(ev) {
			return true
		}
		return write(ev)
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
			if !pass(ev) || ev.Type == watch.TypeRevoked {
				return
			}
		case <-w.Done:
			// Cut off or revoked: what is buffered still goes out (a
			// revoked event last), then the stream ends.
			for {
				select {
				case ev := <-w.C:
					if !pass(ev) {
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

func tooManyStreams(hub *watch.Hub, err error) *Error {
	perToken, perReplica := hub.Limits()
	msg := "this replica holds as many watch streams as it may (" + strconv.Itoa(perReplica) + "); retry later"
	if errors.Is(err, watch.ErrTokenLimit) {
		msg = "this token holds as many watch streams as it may on this replica (" + strconv.Itoa(perToken) +
			"); close one, or share one stream per process (the libraries do), and retry later"
	}
	return &Error{Status: http.StatusTooManyRequests, Code: "too_many_streams", Message: msg, RetryAfter: watchRetryAfter}
}

// watchReach is what a resolver token's stream carries: everything for a
// token of every workspace; for a token limited to some workspaces, only
// what those workspaces resolve from — their own scopes, the
// organizations they inherit from, and the hosted pools when one of them
// may fall back to hosted keys — as this replica's settings say now. A
// change of one of those workspaces' settings (a relink) or a flush reads
// them again before the next event is judged.
type watchReach struct {
	all        bool
	workspaces []string
	settings   func(workspace string) (broker.Settings, bool)
	orgs       map[string]bool
	hosted     bool
}

func (s *server) watchReach(p auth.Principal) *watchReach {
	r := &watchReach{all: len(p.Workspaces) == 0, workspaces: p.Workspaces}
	if r.all {
		return r
	}
	if m, ok := s.keys.(settingsMirror); ok {
		r.settings = m.MirroredSettings
	}
	r.read()
	return r
}

// read takes the workspaces' settings from the mirror. Until the mirror
// is loaded, no organization or hosted event passes: none can serve yet
// (resolve answers 503), and the load is followed by a flush, which reads
// them again.
func (r *watchReach) read() {
	r.orgs, r.hosted = map[string]bool{}, false
	if r.settings == nil {
		return
	}
	for _, ws := range r.workspaces {
		st, loaded := r.settings(ws)
		if !loaded {
			return
		}
		if org := st.InheritsFrom(); org != "" {
			r.orgs[org] = true
		}
		r.hosted = r.hosted || st.HostedFallback
	}
}

// update reads the settings again when ev may have changed them: a
// settings change of one of the token's workspaces, or a flush (the
// replica reloaded every workspace's settings). The hub publishes an
// event after the replica applied it, so the mirror already holds it.
func (r *watchReach) update(ev watch.Event) {
	if r.all {
		return
	}
	if ev.Type == watch.TypeFlush || ev.Type == watch.TypeInvalidate && ev.Workspace != "" && slices.Contains(r.workspaces, ev.Workspace) {
		r.read()
	}
}

// allows says whether the token hears of ev. Events that name no scope
// (hello, flush, heartbeat, revoked) go to every stream; an invalidation
// of a scope the token's workspaces do not resolve from goes to none of
// them — it would name another tenant's organization or workspace.
func (r *watchReach) allows(ev watch.Event) bool {
	if r.all || ev.Type != watch.TypeInvalidate {
		return true
	}
	if ev.Workspace != "" {
		return slices.Contains(r.workspaces, ev.Workspace)
	}
	switch broker.ScopeKind(ev.Scope) {
	case broker.ScopeWorkspace:
		return slices.Contains(r.workspaces, ev.ScopeID)
	case broker.ScopeOrganization:
		return r.orgs[ev.ScopeID]
	case broker.ScopeHosted:
		return r.hosted
	}
	return false
}
