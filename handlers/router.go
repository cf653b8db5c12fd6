package handlers

import (
	"log/slog"

	"github.com/gin-gonic/gin"
)

// Options are what the router needs from the rest of keybroker.
type Options struct {
	// Logger receives one line per failed request. Default: slog.Default().
	Logger *slog.Logger
	// Dependencies are checked by /readyz.
	Dependencies []Dependency
}

// NewRouter returns keybroker's HTTP handler.
func NewRouter(opts Options) *gin.Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.HandleMethodNotAllowed = true

	health := &healthHandler{deps: opts.Dependencies, log: opts.Logger}
	r.GET("/healthz", health.healthz)
	r.GET("/readyz", health.readyz)

	r.NoRoute(func(c *gin.Context) {
		renderError(c, opts.Logger, &Error{Status: 404, Code: "not_found", Message: "no such route"})
	})
	r.NoMethod(func(c *gin.Context) {
		renderError(c, opts.Logger, &Error{Status: 405, Code: "method_not_allowed", Message: "method not allowed on this route"})
	})
	return r
}
