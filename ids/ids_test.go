package ids_test

import (
	"strings"
	"testing"

	"github.com/keybroker/keybroker/ids"
)

func TestValidAgreesWithThePattern(t *testing.T) {
	cases := []string{"", "a", "0", "ws1", "my-ws_2", "-a", "_a", "A", "aB", "a b", "a/b", "a.b", "é", "a\x00",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a-", "a_", "9-9"}
	valid := 0
	for _, s := range cases {
		got, want := ids.Valid(s), ids.Regexp.MatchString(s)
		if got != want {
			t.Errorf("Valid(%q) = %v, the pattern says %v", s, got, want)
		}
		if got {
			valid++
		}
	}
	if valid == 0 || valid == len(cases) {
		t.Fatalf("the cases do not exercise both answers (%d of %d valid)", valid, len(cases))
	}
}

func FuzzValidAgreesWithThePattern(f *testing.F) {
	f.Add("ws1")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, s string) {
		if ids.Valid(s) != ids.Regexp.MatchString(s) {
			t.Fatalf("Valid(%q) disagrees with %s", s, ids.Pattern)
		}
	})
}

func TestMessageNamesTheRule(t *testing.T) {
	if got := ids.Message("workspace"); got != "workspace id must match [a-z0-9][a-z0-9_-]{0,62}" {
		t.Fatalf("Message = %q", got)
	}
}

func TestValidKnownCases(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "ws-1_x": true, "0abc": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "_a": false, "A": false, "a/b": false, "a.b": false, strings.Repeat("a", 64): false, "é": false,
	} {
		if ids.Valid(id) != want {
			t.Errorf("Valid(%q) = %v", id, !want)
		}
	}
}
