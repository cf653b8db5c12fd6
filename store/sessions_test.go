package store_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/auth/session"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
	"github.com/keybroker/keybroker/internal/runtime/keyring"
	"github.com/keybroker/keybroker/store"
)

func sessionService(t *testing.T, st session.Store, logs *testenv.SyncBuffer) *session.Service {
	t.Helper()
	ring, err := keyring.Parse(kbtest.AdminTokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.NewService(st, session.Options{Keys: ring, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSessionRowsGrantsCannotChangeAndAnEndIsFinal: with the admin pods'
// database secret (the runtime role) an attacker may touch and end a
// session, nothing else: not widen its grants, move its expiry, rename
// its person, swap its hash or signature, delete it, or undo an end. A
// row changed behind the trigger's back (the owner lifting it) is refused
// by its signature.
func TestSessionRowsGrantsCannotChangeAndAnEndIsFinal(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	logs := &testenv.SyncBuffer{}
	s := sessionService(t, kbtest.NewStore(t, ownerURL), logs)
	runtime, err := pgx.Connect(ctx, testenv.RuntimeURL(t, ownerURL))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.Close(ctx)
	owner := testenv.NewPoolFor(t, ownerURL)

	reader := session.Grants{Workspaces: map[string]session.Grant{"ws1": {Role: session.RoleReader, From: []string{"group:kb-ws-ws1-reader"}}}}
	tok, rec, err := s.Create(ctx, session.Person{Issuer: "https://idp.example.com", Subject: "u-1", Name: "Ann"}, reader, session.ViaPage)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE sessions SET grants = '{"operator": true}' WHERE id = $1`,
		`UPDATE sessions SET grants = jsonb_set(grants, '{workspaces,ws1,role}', '"admin"') WHERE id = $1`,
		`UPDATE sessions SET expires_at = expires_at + interval '1 year' WHERE id = $1`,
		`UPDATE sessions SET subject = 'u-2', name = 'Bea' WHERE id = $1`,
		`UPDATE sessions SET via = 'cli' WHERE id = $1`,
		`UPDATE sessions SET token_hash = sha256('kbs_mine'::bytea) WHERE id = $1`,
		`UPDATE sessions SET key_id = 'other', signature = signature WHERE id = $1`,
		`DELETE FROM sessions WHERE id = $1`,
	} {
		_, err := runtime.Exec(ctx, q, rec.ID)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the runtime role ran %q: %v", q, err)
		}
	}
	if _, err := runtime.Exec(ctx, `TRUNCATE sessions`); err == nil {
		t.Error("the runtime role truncated sessions")
	}
	// Its idle expiry may move (a touch), never past the absolute one.
	if _, err := runtime.Exec(ctx, `UPDATE sessions SET idle_expires_at = expires_at + interval '1 hour' WHERE id = $1`, rec.ID); err == nil {
		t.Error("the runtime role moved a session's idle expiry past its expiry")
	}
	if _, err := runtime.Exec(ctx, `UPDATE sessions SET last_seen_at = now(), idle_expires_at = expires_at WHERE id = $1`, rec.ID); err != nil {
		t.Fatalf("the runtime role touches sessions (keybroker's admin side does): %v", err)
	}
	if got, err := s.Authenticate(ctx, tok); err != nil || !got.IdleExpiresAt.Equal(rec.ExpiresAt) {
		t.Fatalf("after the touch: %v %v", got, err)
	}
	// Not even the owner changes what the signature covers while the
	// trigger stands.
	if _, err := owner.Exec(ctx, `UPDATE sessions SET grants = '{"operator": true}' WHERE id = $1`, rec.ID); err == nil ||
		!strings.Contains(err.Error(), "only a touch or an end") {
		t.Fatalf("the owner widened a session's grants: %v", err)
	}
	// Behind the trigger's back, a widened row is refused by its signature
	// and reported; so is one whose expiry moved.
	for i, q := range []string{
		`UPDATE sessions SET grants = jsonb_set(grants, '{workspaces,ws1,role}', '"admin"') WHERE id = $1`,
		`UPDATE sessions SET grants = $2::jsonb, expires_at = expires_at + interval '1 year', idle_expires_at = expires_at + interval '1 year' WHERE id = $1`,
	} {
		args := []any{rec.ID}
		if i == 1 {
			g, _ := reader.Canonical()
			args = append(args, string(g))
		}
		if _, err := owner.Exec(ctx, `ALTER TABLE sessions DISABLE TRIGGER sessions_touch_or_end_only`); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Exec(ctx, `ALTER TABLE sessions ENABLE TRIGGER sessions_touch_or_end_only`); err != nil {
			t.Fatal(err)
		}
		fresh := sessionService(t, kbtest.NewStore(t, ownerURL), logs)
		if got, err := fresh.Authenticate(ctx, tok); !errors.Is(err, session.ErrUnauthenticated) {
			t.Fatalf("a changed row (%s) authenticated as %v with grants %+v: %v", q, got, got.Grants, err)
		}
	}
	if !strings.Contains(logs.String(), "did not sign") || !strings.Contains(logs.String(), rec.ID) {
		t.Fatalf("the changed row was not reported:\n%s", logs.String())
	}

	// An end is final, whoever writes.
	if err := s.End(ctx, rec.ID, "signed out"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE sessions SET ended_at = NULL, ended_reason = '' WHERE id = $1`,
		`UPDATE sessions SET ended_at = now() + interval '1 year' WHERE id = $1`,
		`UPDATE sessions SET last_seen_at = now(), idle_expires_at = expires_at WHERE id = $1`,
	} {
		for name, exec := range map[string]func(context.Context, string, ...any) error{
			"runtime": func(ctx context.Context, q string, args ...any) error {
				_, err := runtime.Exec(ctx, q, args...)
				return err
			},
			"owner": func(ctx context.Context, q string, args ...any) error {
				_, err := owner.Exec(ctx, q, args...)
				return err
			},
		} {
			if err := exec(ctx, q, rec.ID); err == nil || !strings.Contains(err.Error(), "an end is final") {
				t.Errorf("the %s role ran %q on an ended session: %v", name, q, err)
			}
		}
	}
	// A session ends with a reason.
	_, rec2, err := s.Create(ctx, session.Person{Issuer: "https://idp.example.com", Subject: "u-1"}, reader, session.ViaCLI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.Exec(ctx, `UPDATE sessions SET ended_at = now() WHERE id = $1`, rec2.ID); err == nil {
		t.Error("a session ended without a reason")
	}
}

// TestSessionStoreRoundTrip: what the store keeps is what it returns,
// grants included, in the order the store promises.
func TestSessionStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := kbtest.NewStore(t, testenv.DatabaseURL(t))
	s := sessionService(t, st, &testenv.SyncBuffer{})
	p := session.Person{Issuer: "https://idp.example.com", Subject: "ü-1 <x> & \"y\"", Name: "Zoë", Email: "z@example.com"}
	g := session.Grants{Operator: true, OperatorFrom: []string{"group:ops", "claim:role=admin"},
		Workspaces:    map[string]session.Grant{"ws2": {Role: session.RoleReader}, "ws1": {Role: session.RoleAdmin, From: []string{"group:a", "group:b"}}},
		Organizations: map[string]session.Grant{"acme": {Role: session.RoleAdmin}}}
	var made []session.Record
	for _, via := range []session.Via{session.ViaPage, session.ViaCLI} {
		tok, rec, err := s.Create(ctx, p, g, via)
		if err != nil {
			t.Fatal(err)
		}
		h := session.Hash(tok)
		got, err := st.SessionByHash(ctx, h[:])
		if err != nil {
			t.Fatal(err)
		}
		gotG, _ := got.Grants.Canonical()
		wantG, _ := g.Canonical()
		if got.ID != rec.ID || got.Person != p || string(gotG) != string(wantG) || got.Via != via || !got.CreatedAt.Equal(rec.CreatedAt) ||
			!got.ExpiresAt.Equal(rec.ExpiresAt) || got.KeyID != rec.KeyID || !s.Signed(got) {
			t.Fatalf("stored %v %+v, read %v %+v", rec, rec.Grants, got, got.Grants)
		}
		made = append(made, rec)
	}
	list, err := st.ListSessions(ctx, p.Issuer, p.Subject)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := st.SessionByHash(ctx, make([]byte, 32)); err == nil {
		t.Fatal("an unknown hash found a session")
	}
	if err := st.EndSession(ctx, made[0].ID, time.Now(), "x"); err != nil {
		t.Fatal(err)
	}
	ended, err := st.EndSessions(ctx, p.Issuer, p.Subject, time.Now(), "y")
	if err != nil || len(ended) != 1 || ended[0] != made[1].ID {
		t.Fatalf("EndSessions ended %v (%v), want only the one still active", ended, err)
	}
}

// TestTheEndOfASessionIsAnnounced: ending a session, or all of a person's,
// announces each id on the invalidation channel (replicas then read the
// session again instead of trusting what they remember).
func TestTheEndOfASessionIsAnnounced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := kbtest.NewStore(t, testenv.DatabaseURL(t))
	s := sessionService(t, st, &testenv.SyncBuffer{})
	heard := make(chan string, 8)
	listening := make(chan struct{}, 1)
	go func() {
		_ = st.ListenInvalidations(ctx, store.InvalidationHandler{
			Invalidate: func(inv store.Invalidation) {
				if inv.SessionID != "" {
					heard <- inv.SessionID
				}
			},
			Listening: func() { listening <- struct{}{} },
		}, slog.New(slog.DiscardHandler))
	}()
	<-listening
	p := session.Person{Issuer: "https://idp.example.com", Subject: "announced"}
	g := session.Grants{Workspaces: map[string]session.Grant{"ws1": {Role: session.RoleReader}}}
	var ids []string
	for range 3 {
		_, rec, err := s.Create(ctx, p, g, session.ViaPage)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	if err := s.End(ctx, ids[0], "signed out"); err != nil {
		t.Fatal(err)
	}
	if got := <-heard; got != ids[0] {
		t.Fatalf("heard %s, want %s", got, ids[0])
	}
	if _, err := s.EndAllFor(ctx, p.Issuer, p.Subject, "roles changed"); err != nil {
		t.Fatal(err)
	}
	got := []string{<-heard, <-heard}
	slices.Sort(got)
	want := []string{ids[1], ids[2]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("heard %v, want %v", got, want)
	}
}

// TestAssertionUsesAreRecordedOnceAndPruned: the first use of a platform's
// jti is recorded (its hash only), a second is not the first, the same
// jti of another platform is; records past their expiry are pruned.
func TestAssertionUsesAreRecordedOnceAndPruned(t *testing.T) {
	ctx := context.Background()
	ownerURL := testenv.DatabaseURL(t)
	st := kbtest.NewStore(t, ownerURL)
	now := time.Now()
	for _, tc := range []struct {
		platform, jti string
		until         time.Time
		first         bool
	}{
		{"plat", "jti-1", now.Add(time.Minute), true},
		{"plat", "jti-1", now.Add(time.Minute), false},
		{"other", "jti-1", now.Add(time.Minute), true},
		// Expired by the database's clock: not recorded, not the first.
		{"plat", "jti-2", now.Add(-2 * time.Minute), false},
	} {
		first, err := st.FirstAssertionUse(ctx, tc.platform, tc.jti, tc.until)
		if err != nil || first != tc.first {
			t.Fatalf("%s/%s: first %v %v, want %v", tc.platform, tc.jti, first, err, tc.first)
		}
	}
	// A use recorded long ago (written here as the owner) is pruned; a live
	// one is kept.
	owner, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, `INSERT INTO assertion_uses VALUES ('plat', sha256('jti-3'), now() - interval '6 minutes')`); err != nil {
		t.Fatal(err)
	}
	if n, err := st.PruneAssertionUses(ctx); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if first, err := st.FirstAssertionUse(ctx, "plat", "jti-1", now.Add(time.Minute)); err != nil || first {
		t.Fatalf("a live use after the prune: %v %v", first, err)
	}
}

// BenchmarkFirstAssertionUse is the write an admin replica adds to each
// platform assertion (the verify itself is auth/assertion's benchmark).
func BenchmarkFirstAssertionUse(b *testing.B) {
	ctx := context.Background()
	st := kbtest.NewStore(b, testenv.DatabaseURL(b))
	until := time.Now().Add(5 * time.Minute)
	i := 0
	for b.Loop() {
		i++
		if _, err := st.FirstAssertionUse(ctx, "plat", "jti-"+strconv.Itoa(i), until); err != nil {
			b.Fatal(err)
		}
	}
}
