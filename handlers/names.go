package handlers

import (
	"github.com/gin-gonic/gin"
)

// actorNames maps the actors among subjects ("token:tok_…") whose token
// has a description to it, so that people read "CI deploy" rather than a
// token id. The names are a courtesy: a failed lookup is logged and the
// answer goes out with the ids alone.
func (s *server) actorNames(c *gin.Context, subjects ...string) map[string]string {
	names, err := s.tokens.Names(c.Request.Context(), subjects)
	if err != nil {
		s.log.WarnContext(c.Request.Context(), "could not look up the actors' token descriptions", "error", err, "request_id", requestIDOf(c))
		return nil
	}
	return names
}
