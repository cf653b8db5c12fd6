package handlers

import (
	"embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// The admin web page: plain HTML, CSS and one ES module, embedded; no CDN,
// no external fonts, no inline script. It talks to the v1 API with the
// bearer token the admin pastes (kept in sessionStorage only).
//
//go:embed ui/index.html ui/app.js ui/style.css ui/favicon.svg
var uiFiles embed.FS

// uiHeaders are set on every /ui/ answer.
func uiHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

func registerUI(r *gin.Engine) {
	serve := func(name, contentType string) gin.HandlerFunc {
		b, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			panic("handlers: embedded UI file missing: " + name)
		}
		return func(c *gin.Context) { c.Data(http.StatusOK, contentType, b) }
	}
	ui := r.Group("/ui", uiHeaders)
	for path, file := range map[string][2]string{
		"/":            {"index.html", "text/html; charset=utf-8"},
		"/app.js":      {"app.js", "text/javascript; charset=utf-8"},
		"/style.css":   {"style.css", "text/css; charset=utf-8"},
		"/favicon.svg": {"favicon.svg", "image/svg+xml"},
	} {
		h := serve(file[0], file[1])
		ui.GET(path, h)
		ui.HEAD(path, h) // monitors and link checkers ask with HEAD
	}
	// Browsers ask for /favicon.ico whatever the page says.
	r.GET("/favicon.ico", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/ui/favicon.svg") })
	r.GET("/ui", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/ui/") })
}
