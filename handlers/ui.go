package handlers

import (
	"bytes"
	"compress/gzip"
	"embed"
	"net/http"
	"strings"

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

// uiFile serves an embedded file of the page (the route table lists them),
// gzip-compressed (once, at start) for a browser that accepts it: the
// page's first load stays well under its 150 KB budget (docs/ui.md).
func uiFile(name, contentType string) func(*server, *gin.Context) {
	b, err := uiFiles.ReadFile("ui/" + name)
	if err != nil {
		panic("handlers: embedded UI file missing: " + name)
	}
	gz := gzipped(b)
	return func(_ *server, c *gin.Context) {
		c.Header("Vary", "Accept-Encoding")
		if gz != nil && acceptsGzip(c.GetHeader("Accept-Encoding")) {
			c.Header("Content-Encoding", "gzip")
			c.Data(http.StatusOK, contentType, gz)
			return
		}
		c.Data(http.StatusOK, contentType, b)
	}
}

// gzipped is b compressed, or nil when that does not make it smaller.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil
	}
	if _, err := w.Write(b); err != nil {
		return nil
	}
	if err := w.Close(); err != nil || buf.Len() >= len(b) {
		return nil
	}
	return buf.Bytes()
}

// acceptsGzip reports whether an Accept-Encoding header takes gzip (and
// does not refuse it with q=0).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
