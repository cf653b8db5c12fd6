package handlers

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// pageLimit reads a listing's ?limit: def when absent, else 1 to max. It
// answers 400 and returns false when the value is not one of those.
func (s *server) pageLimit(c *gin.Context, def, max int) (int, bool) {
	l := c.Query("limit")
	if l == "" {
		return def, true
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > max {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "limit must be an integer from 1 to " + strconv.Itoa(max)})
		return 0, false
	}
	return n, true
}

// idCursor reads a listing's ?cursor, the last id of the previous page (0
// when absent: the newest page). It answers 400 and returns false when the
// value is not one.
func (s *server) idCursor(c *gin.Context) (int64, bool) {
	cur := c.Query("cursor")
	if cur == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(cur, 10, 64)
	if err != nil || n <= 0 {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "cursor must be a previous page's nextCursor"})
		return 0, false
	}
	return n, true
}
