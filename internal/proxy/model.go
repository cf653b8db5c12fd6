package proxy

import (
	"encoding/json"
	"mime"
	"strings"
)

// modelOf reads the model a call names: "model" in a JSON body (OpenAI,
// Anthropic, Mistral and the OpenAI-compatible APIs), or the path segment
// after /models/ (Google: /v1beta/models/gemini-2.0-flash:generateContent).
// "" when it names none, or the body was not kept.
func modelOf(provider, escapedPath, contentType string, body []byte) string {
	if provider == "google" {
		if _, rest, ok := strings.Cut(escapedPath, "/models/"); ok {
			m, _, _ := strings.Cut(rest, ":")
			m, _, _ = strings.Cut(m, "/")
			return m
		}
	}
	if len(body) == 0 {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return ""
	}
	var v struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Model
}
