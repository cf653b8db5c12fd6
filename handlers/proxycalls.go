package handlers

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/broker"
	"github.com/keybroker/keybroker/client"
)

// ProxyCallStore is where the records of proxied calls are read.
type ProxyCallStore interface {
	QueryProxyCalls(ctx context.Context, q broker.ProxyCallQuery) ([]broker.ProxyCall, error)
}

const (
	defaultProxyCallLimit = 100
	maxProxyCallLimit     = 1000
)

// listProxyCalls answers a workspace's proxied calls: its readers and
// admins see what the proxy did with their keys.
func (s *server) listProxyCalls(c *gin.Context) {
	r, ok := s.open(c, opening{action: auth.ActionReadKeys})
	if !ok {
		return
	}
	s.proxyCallPage(c, r.scope.ID)
}

// listAllProxyCalls answers every workspace's proxied calls: the
// operator's billing export.
func (s *server) listAllProxyCalls(c *gin.Context) {
	if _, ok := s.open(c, opening{action: auth.ActionGlobalUsage}); !ok {
		return
	}
	s.proxyCallPage(c, "")
}

// proxyCallPage answers a page of proxied calls of workspace ("" for
// all), newest first, with the optional filters provider, since and until
// (RFC 3339).
func (s *server) proxyCallPage(c *gin.Context, workspace string) {
	bad := func(msg string) {
		renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg})
	}
	q := broker.ProxyCallQuery{Workspace: workspace, Provider: c.Query("provider")}
	var ok bool
	if q.Limit, ok = s.pageLimit(c, defaultProxyCallLimit, maxProxyCallLimit); !ok {
		return
	}
	if q.Before, ok = s.idCursor(c); !ok {
		return
	}
	if q.Provider != "" {
		if _, known := s.keys.Providers().Lookup(q.Provider); !known {
			renderError(c, s.log, &Error{Status: http.StatusBadRequest, Code: "unknown_provider", Message: "no such provider: see GET /v1/providers"})
			return
		}
	}
	for name, t := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if v := c.Query(name); v != "" {
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				bad(name + " must be an RFC 3339 time (2026-12-01T00:00:00Z)")
				return
			}
			*t = at
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		bad("since must be before until")
		return
	}
	want := q.Limit
	q.Limit++ // one more says whether there is a next page
	calls, err := s.proxyCalls.QueryProxyCalls(c.Request.Context(), q)
	if err != nil {
		renderError(c, s.log, domainError(err))
		return
	}
	page := client.ProxyCallPage{Calls: make([]client.ProxyCall, 0, min(len(calls), want))}
	for i, pc := range calls {
		if i == want {
			page.NextCursor = strconv.FormatInt(calls[i-1].ID, 10)
			break
		}
		page.Calls = append(page.Calls, client.ProxyCall{ID: strconv.FormatInt(pc.ID, 10), At: pc.At.UTC(), Workspace: pc.Workspace,
			Provider: pc.Provider, Scope: pc.Scope, KeyID: pc.KeyID, KeyVersion: pc.KeyVersion, Status: pc.Status,
			DurationMs: float64(pc.Duration.Microseconds()) / 1000, BytesOut: pc.BytesOut, BYOK: pc.BYOK, Retried: pc.Retried,
			Caller: pc.Caller, RequestID: pc.RequestID})
	}
	c.JSON(http.StatusOK, page)
}
