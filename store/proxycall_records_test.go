package store_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
	"github.com/keybroker/keybroker/internal/fixtures/testenv/kbtest"
)

// Neither serving role may name a proxied call's id. The checks on the
// identifiers of proxied calls were regular expressions (7 µs a row); they
// are ltrim and octet_length now (1 µs). Whatever the
// serving roles insert, the database accepts exactly the identifiers the
// id rule accepts: edge cases, every ASCII character alone and after a
// letter, and a few hundred random strings over an
// alphabet of valid and invalid characters, each inserted by both roles'
// connections in turn as workspace, provider and key id.
func TestProxyCallIdentifiersFollowTheIDRule(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	kbtest.NewStore(t, dbURL)
	kbtest.NewResolverStore(t, dbURL)
	var conns []*pgx.Conn
	for _, url := range []string{testenv.RuntimeURL(t, dbURL), testenv.ResolverURL(t, dbURL)} {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		conns = append(conns, c)
	}

	// Neither serving role may name a row's id (only the identity gives it).
	for i, conn := range conns {
		_, err := conn.Exec(ctx, `INSERT INTO proxy_calls (id, at, workspace, provider, scope, key_id, key_version, status, duration_ms,
			byok, retried, bytes_out, caller, request_id) OVERRIDING SYSTEM VALUE
			VALUES (1000000000000, now(), 'ws1', 'openai', 'workspace', 'k', 1, 200, 1, true, false, 0, 'x', 'r')`)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("serving role %d named a proxied call's id: %v", i, err)
		}
	}

	rule := regexp.MustCompile(ids.Pattern)
	corpus := []string{"", "a", "0", "-", "_", "a-", "a_", "-a", "_a", "A", "aB", "a b", "a.b", "a\n", "\na", "é", "aé",
		"a\x00b", strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 62), "ws-1_x", "0123456789",
		"abcdefghijklmnopqrstuvwxyz", "a$", "^a", "a\t", "ａ"}
	for c := rune(1); c < 128; c++ { // every ASCII character, alone and after a letter
		corpus = append(corpus, string(c), "a"+string(c))
	}
	alphabet := []rune("az09_-A.Z é/\n")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		var b strings.Builder
		for range rng.IntN(70) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		corpus = append(corpus, b.String())
	}

	for i, s := range corpus {
		conn := conns[i%2]
		want := rule.MatchString(s)
		for _, column := range []string{"workspace", "provider", "key_id"} {
			values := map[string]string{"workspace": "ws1", "provider": "openai", "key_id": "main"}
			values[column] = s
			_, err := conn.Exec(ctx, `INSERT INTO proxy_calls (at, workspace, provider, scope, key_id, key_version, status, duration_ms,
				byok, retried, bytes_out, caller, request_id) VALUES (now(), $1, $2, 'workspace', $3, 1, 200, 1, true, false, 0, 'x', 'r')`,
				values["workspace"], values["provider"], values["key_id"])
			accepted := err == nil
			if column == "key_id" && s == "" {
				want = true // a call no key served
			}
			if err != nil && !strings.Contains(err.Error(), "proxy_calls_"+column+"_check") && !strings.Contains(err.Error(), "invalid byte sequence") {
				t.Fatalf("%s %q: refused for another reason: %v", column, s, err)
			}
			if accepted != want {
				t.Errorf("%s %q: accepted %v, the id rule says %v", column, s, accepted, want)
			}
			want = rule.MatchString(s)
		}
	}
}
