package testenv

import (
	"bytes"
	"os/exec"
	"sync"
	"testing"

	"github.com/keybroker/keybroker/internal/devenv"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers: a place for
// logs that a test searches afterwards.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// AssertDumpLacks dumps the database at dbURL with pg_dump and fails the
// test if any of secrets appears in it.
func AssertDumpLacks(t testing.TB, dbURL string, secrets []string) {
	t.Helper()
	pgDump, err := devenv.PostgresTool("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pgDump, "--data-only", "--dbname="+dbURL).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v: %s", err, out)
	}
	if len(out) < 100 {
		t.Fatalf("pg_dump printed almost nothing: %q", out)
	}
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("the database dump contains a secret (%s...)", s[:min(6, len(s))])
		}
	}
}
