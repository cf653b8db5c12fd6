package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// TestAnAssertionReplayedToAnotherReplicaIsRefused: two admin replicas
// accept the same platform's assertions; an assertion used at one is
// refused at the other (and at the first again), while a new one passes;
// Postgres keeps only the jti's hash; a pod's database role cannot record
// (or so block) a use; no assertion reaches the logs.
func TestAnAssertionReplayedToAnotherReplicaIsRefused(t *testing.T) {
	g := newApproleGround(t, nil)
	platform := newTestPlatform(t, "https://platform.replicas.test", "ws-replicas")
	a, logsA := startServe(t, g.modeEnv(t, "admin", "KEYBROKER_PLATFORMS_FILE="+platform.registrations))
	b, logsB := startServe(t, g.modeEnv(t, "admin", "KEYBROKER_PLATFORMS_FILE="+platform.registrations))

	pemBytes, err := os.ReadFile(platform.privateKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := parsed.(*ecdsa.PrivateKey)
	sign := func() string {
		raw, err := client.SignAssertion(key, "k1", client.AssertionClaims{Issuer: platform.issuer, Audience: "keybroker",
			Subject: "user-7", Name: "Rita Replica", Workspaces: map[string]string{platform.workspace: "reader"}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	list := func(addr, raw string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/v1/workspaces/"+platform.workspace+"/keys", nil)
		req.Header.Set("Authorization", "Bearer "+raw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	raw := sign()
	if status, body := list(a, raw); status != http.StatusOK {
		t.Fatalf("the first use at replica A: %d %s", status, body)
	}
	if status, body := list(b, raw); status != http.StatusUnauthorized || !strings.Contains(body, "replayed") {
		t.Fatalf("the replay at replica B: %d %s", status, body)
	}
	if status, body := list(a, raw); status != http.StatusUnauthorized || !strings.Contains(body, "replayed") {
		t.Fatalf("the replay at replica A: %d %s", status, body)
	}
	if status, body := list(b, sign()); status != http.StatusOK {
		t.Fatalf("a new assertion at replica B: %d %s", status, body)
	}

	// Postgres holds the hashes of the two jti (the replayed one and the
	// new one at B), not the assertions.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, g.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM assertion_uses WHERE platform = 'ts-platform' AND length(jti_hash) = 32 AND expires_at > now()`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("assertion_uses rows: %d %v", n, err)
	}
	// With the admin pods' database role a live use cannot be forgotten
	// (only expired ones are deleted); a pod's role may neither record a
	// use nor delete one.
	admin, err := pgx.Connect(ctx, testenv.RuntimeURL(t, g.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `INSERT INTO assertion_uses VALUES ('ts-platform', sha256('forever'), 'infinity')`); err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Fatalf("the runtime role records a use that never expires: %v", err)
	}
	fresh := sign()
	if status, body := list(a, fresh); status != http.StatusOK {
		t.Fatalf("a third assertion at replica A: %d %s", status, body)
	}
	if tag, err := admin.Exec(ctx, `DELETE FROM assertion_uses`); err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("the runtime role deletes live uses: %v %v", tag, err)
	}
	if status, body := list(b, fresh); status != http.StatusUnauthorized || !strings.Contains(body, "replayed") {
		t.Fatalf("its replay at replica B (which never saw it) after the delete: %d %s", status, body)
	}
	pod, err := pgx.Connect(ctx, testenv.ResolverURL(t, g.dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close(ctx)
	if _, err := pod.Exec(ctx, `INSERT INTO assertion_uses (platform, jti_hash, expires_at) VALUES ('ts-platform', sha256('x'), now() + interval '1 minute')`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role records a use: %v", err)
	}
	if _, err := pod.Exec(ctx, `DELETE FROM assertion_uses`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("the resolver role deletes uses: %v", err)
	}

	sig := raw[strings.LastIndex(raw, ".")+1:]
	for _, logs := range []string{logsA.String(), logsB.String()} {
		if strings.Contains(logs, sig) {
			t.Fatal("an assertion is in a replica's log")
		}
	}
}
