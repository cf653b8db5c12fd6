package handlers

import (
	"embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// The admin web page: plain HTML, CSS and one ES module, embedded; no CDN,
// no external fonts, no inline script. It talks to the v1 API as the person
// signed in with their identity provider (the session cookie, with the
// CSRF header; /auth/config says whether people sign in here), or with the
// bearer token an admin pastes (kept in sessionStorage only).
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

// uiFile serves an embedded file of the page (the route table lists them).
func uiFile(name, contentType string) func(*server, *gin.Context) {
	b, err := uiFiles.ReadFile("ui/" + name)
	if err != nil {
		panic("handlers: embedded UI file missing: " + name)
	}
	return func(_ *server, c *gin.Context) { c.Data(http.StatusOK, contentType, b) }
}
