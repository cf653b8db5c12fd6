package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
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

type healthHandler struct {
	deps []Dependency
	log  *slog.Logger
}

// healthz answers 200 while the process serves HTTP.
func (h *healthHandler) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz checks every dependency at once and answers 200 when all are
// usable, else 503 naming the ones that are not.
func (h *healthHandler) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), readinessTimeout)
	defer cancel()
	failures := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range h.deps {
		wg.Go(func() {
			if err := d.Check(ctx); err != nil {
				mu.Lock()
				failures[d.Name] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) == 0 {
		checks := make(map[string]string, len(h.deps))
		for _, d := range h.deps {
			checks[d.Name] = "ok"
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": checks})
		return
	}
	names := make([]string, 0, len(failures))
	causes := make([]error, 0, len(failures))
	for name, err := range failures {
		names = append(names, name)
		causes = append(causes, fmt.Errorf("%s: %w", name, err))
	}
	sort.Strings(names)
	renderError(c, h.log, &Error{
		Status:     http.StatusServiceUnavailable,
		Code:       "dependency_unavailable",
		Message:    "not ready: " + strings.Join(names, ", ") + " unavailable",
		RetryAfter: 5 * time.Second,
		Cause:      errors.Join(causes...),
	})
}
