package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/singleflight"
)

// Dependency is something keybroker needs to serve: Vault, PostgreSQL.
type Dependency struct {
	// Name is shown in /readyz answers ("vault", "postgres").
	Name string
	// Check returns nil when the dependency is usable.
	Check func(ctx context.Context) error
}

// readinessTimeout bounds each dependency check of /readyz.
const readinessTimeout = 2 * time.Second

// readinessMaxAge is how long a readiness result is answered before the
// dependencies are checked again: a burst of probes (or an unauthenticated
// caller) costs at most one round of checks per second.
const readinessMaxAge = time.Second

type healthHandler struct {
	deps []Dependency
	log  *slog.Logger
	now  func() time.Time

	sf     singleflight.Group
	mu     sync.Mutex
	last   readiness
	lastAt time.Time
}

// readiness is one round of checks.
type readiness struct {
	failures map[string]error
}

func newHealthHandler(deps []Dependency, log *slog.Logger) *healthHandler {
	return &healthHandler{deps: deps, log: log, now: time.Now}
}

// healthz answers 200 while the process serves HTTP.
func (h *healthHandler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 when every dependency is usable, else 503 naming the
// ones that are not, from a result at most readinessMaxAge old; concurrent
// calls share one round of checks.
func (h *healthHandler) readyz(c *gin.Context) {
	r := h.current(c.Request.Context())
	if len(r.failures) == 0 {
		checks := make(map[string]string, len(h.deps))
		for _, d := range h.deps {
			checks[d.Name] = "ok"
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": checks})
		return
	}
	names := make([]string, 0, len(r.failures))
	for name := range r.failures {
		names = append(names, name)
	}
	sort.Strings(names)
	// The cause was logged once, when the check found it (see check).
	c.Header("Retry-After", "5")
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, errorBody{Error: errorDetail{Code: "dependency_unavailable",
		Message: "not ready: " + strings.Join(names, ", ") + " unavailable"}})
}

func (h *healthHandler) current(ctx context.Context) readiness {
	h.mu.Lock()
	if !h.lastAt.IsZero() && h.now().Sub(h.lastAt) < readinessMaxAge {
		r := h.last
		h.mu.Unlock()
		return r
	}
	h.mu.Unlock()
	v, _, _ := h.sf.Do("readyz", func() (any, error) {
		// The round outlives the request that started it: others wait on it.
		return h.check(context.WithoutCancel(ctx)), nil
	})
	return v.(readiness)
}

// check runs every dependency check at once, and logs a dependency's
// failure when it starts failing or its cause changes, not per probe.
func (h *healthHandler) check(ctx context.Context) readiness {
	ctx, cancel := context.WithTimeout(ctx, readinessTimeout)
	defer cancel()
	r := readiness{failures: make(map[string]error)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range h.deps {
		wg.Go(func() {
			if err := d.Check(ctx); err != nil {
				mu.Lock()
				r.failures[d.Name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	h.mu.Lock()
	prev := h.last
	h.last, h.lastAt = r, h.now()
	h.mu.Unlock()
	for name, err := range r.failures {
		if old, was := prev.failures[name]; !was || old.Error() != err.Error() {
			h.log.WarnContext(ctx, "readiness: dependency unavailable", "dependency", name, "cause", err.Error())
		}
	}
	for name := range prev.failures {
		if _, still := r.failures[name]; !still {
			h.log.InfoContext(ctx, "readiness: dependency available again", "dependency", name)
		}
	}
	return r
}
