package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestRefusedRequestsAreLoggedOncePerIntervalWithACount: a flood of 429
// answers from two addresses writes one line for each address's first,
// then, once the interval is over, one line per address with the count
// of the others; other answers keep their line each.
func TestRefusedRequestsAreLoggedOncePerIntervalWithACount(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var out bytes.Buffer
	lines := &accessLineWriter{out: &out}
	refusals := newRefusalLog(time.Hour, clock, func(t time.Time, attrs []slog.Attr) { lines.write(t, refusalLineMsg, attrs) })
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(requestID(), accessLogWith(slog.New(slog.DiscardHandler), false, false, lines, refusals))
	r.GET("/limited", func(c *gin.Context) { c.Status(http.StatusTooManyRequests) })
	r.GET("/ok", func(c *gin.Context) { c.Status(http.StatusOK) })
	call := func(path, addr string) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = addr + ":4711"
		r.ServeHTTP(httptest.NewRecorder(), req)
	}
	type line struct {
		Msg        string  `json:"msg"`
		Status     int     `json:"status"`
		Count      int     `json:"count"`
		RemoteAddr string  `json:"remote_addr"`
		LastRoute  string  `json:"last_route"`
		IntervalS  float64 `json:"interval_s"`
	}
	read := func() []line {
		var got []line
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var v line
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			got = append(got, v)
		}
		out.Reset()
		return got
	}

	for range 1000 {
		call("/limited", "192.0.2.1")
	}
	for range 300 {
		call("/limited", "192.0.2.2")
	}
	for range 3 {
		call("/ok", "192.0.2.1")
	}
	// An IPv6 host spreading its requests over its /64 is one address.
	for i := range 50 {
		call("/limited", fmt.Sprintf("[2001:db8:1:2::%x]", i+1))
	}
	got := read()
	if len(got) != 6 {
		t.Fatalf("%d lines for 1,300 refusals and 3 answers, want 2 + 3: %+v", len(got), got)
	}
	for i, want := range []struct {
		status int
		addr   string
	}{{429, "192.0.2.1"}, {429, "192.0.2.2"}, {200, "192.0.2.1"}, {200, "192.0.2.1"}, {200, "192.0.2.1"}, {429, "2001:db8:1:2::1"}} {
		if got[i].Msg != "http request" || got[i].Status != want.status || got[i].RemoteAddr != want.addr {
			t.Fatalf("line %d: %+v, want %d from %s", i, got[i], want.status, want.addr)
		}
	}

	// The interval ends: the next refusal writes the counts, and is the
	// first of the new interval.
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	call("/limited", "192.0.2.1")
	got = read()
	if len(got) != 4 {
		t.Fatalf("%d lines after the interval, want the three counts and the new first: %+v", len(got), got)
	}
	counts := map[string]int{}
	for _, l := range got[:3] {
		if l.Msg != refusalLineMsg || l.Status != 429 || l.LastRoute != "/limited" || l.IntervalS != 3600 {
			t.Fatalf("aggregated line %+v", l)
		}
		counts[l.RemoteAddr] = l.Count
	}
	if counts["192.0.2.1"] != 999 || counts["192.0.2.2"] != 299 || counts["2001:db8:1:2::/64"] != 49 {
		t.Fatalf("counts %v, want 999, 299 and 49 for the /64", counts)
	}
	if got[3].Msg != "http request" || got[3].Status != 429 {
		t.Fatalf("the new interval's first refusal: %+v", got[3])
	}
}
