package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/keybroker/keybroker/auth"
	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// BenchmarkAuthenticate compares a session's check with an API token's,
// over the real PostgreSQL, on one replica:
//
//   - hit: the session (token) was read within Options.Fresh: no statement;
//   - read: every check reads the row again (the clock moves by Fresh
//     each time): one SELECT, no touch;
//   - touch: every check writes the last use (the clock moves by a
//     minute each time): one UPDATE ... RETURNING, a committed write;
//   - busy-page: a request a second with the default options: one
//     statement per 10 s, a touch (an UPDATE that reads the row) a minute.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	const fresh = 10 * time.Second
	// run benchmarks the check setup returns (made anew for each run, so
	// that -count runs do not age one session past its lifetime).
	run := func(name string, step time.Duration, setup func() func() error) {
		b.Run(name, func(b *testing.B) {
			check := setup()
			b.ReportAllocs()
			for b.Loop() {
				e.clock.Add(step)
				if err := check(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	long := session.Limits{Idle: 7 * 24 * time.Hour, Lifetime: 7 * 24 * time.Hour}
	noTouch := e.service(b, session.Options{Page: long, CLI: long, TouchEvery: 3 * 24 * time.Hour})
	busy := e.service(b, session.Options{Page: long})
	sessionCheck := func(s *session.Service) func() func() error {
		return func() func() error {
			tok, _, err := s.Create(ctx, alice, wsAdmin, session.ViaPage)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, tok); err != nil {
				b.Fatal(err)
			}
			return func() error { _, err := s.Authenticate(ctx, tok); return err }
		}
	}
	tokens := auth.NewService(kbtest.NewStore(b, e.url), auth.Options{Keys: kbtest.RowKeys(), Now: e.clock.Now,
		TrustWithoutStore: -1})
	apiTok, _, err := tokens.Create(ctx, auth.CreateRequest{Via: auth.ViaCLI, Role: auth.RoleAdmin, Workspaces: []string{"ws1"},
		CreatedBy: "bench", NoExpiry: true})
	if err != nil {
		b.Fatal(err)
	}
	tokenCheck := func() func() error {
		return func() error { _, err := tokens.Authenticate(ctx, apiTok); return err }
	}

	run("session/hit", 0, sessionCheck(noTouch))
	run("token/hit", 0, tokenCheck)
	run("session/read", fresh, sessionCheck(noTouch))
	run("token/read", fresh, tokenCheck)
	run("session/touch", time.Minute, sessionCheck(busy))
	run("session/busy-page", time.Second, sessionCheck(busy))
}
