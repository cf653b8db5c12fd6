package store

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/ids"
)

// TestMigrationsCheckIDsWithTheOneRule holds the SQL CHECK constraints on
// id columns to package ids' pattern: the schema cannot drift from the rule
// the code applies.
func TestMigrationsCheckIDsWithTheOneRule(t *testing.T) {
	check := regexp.MustCompile(`CHECK \((workspace|organization|provider|key_id) ~ '([^']*)'\)`)
	found := 0
	err := fs.WalkDir(migrations, "migrations", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sql") {
			return err
		}
		sql, err := fs.ReadFile(migrations, path)
		if err != nil {
			return err
		}
		for _, m := range check.FindAllStringSubmatch(string(sql), -1) {
			found++
			if m[2] != ids.Pattern {
				t.Errorf("%s: CHECK on %s uses %q, not the id rule %q", path, m[1], m[2], ids.Pattern)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("found no id CHECK in the migrations: this test would prove nothing")
	}
}
