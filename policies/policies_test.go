package policies

import (
	"regexp"
	"strings"
	"testing"
)

func TestRenderFillsTheMountOnly(t *testing.T) {
	for _, name := range Names {
		hcl, err := Render(name, "byok-prod")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(hcl, "{{") || !strings.Contains(hcl, `"byok-prod/data/`) {
			t.Fatalf("%s:\n%s", name, hcl)
		}
	}
	for _, bad := range []string{"", "a\"b", "by ok", "byok/*", "by+ok", "a\n}"} {
		if _, err := Render(Writer, bad); err == nil {
			t.Errorf("mount %q accepted", bad)
		}
	}
}

// The writer must never be able to read key material: of the data paths,
// it reads the admin providers' alone (the admin credentials the
// lifecycle uses, never served).
func TestWriterHasNoReadOnData(t *testing.T) {
	hcl, _ := Render(Writer, "byok")
	blocks := strings.Split(hcl, "path ")
	reads := 0
	for _, b := range blocks {
		if strings.HasPrefix(b, `"byok/data/`) && strings.Contains(b, `"read"`) {
			if !adminDataPath.MatchString(b) {
				t.Fatalf("writer policy reads data:\n%s", b)
			}
			reads++
		}
	}
	if reads != 6 {
		t.Fatalf("the writer reads %d admin credential paths, want 6 (2 admin providers, 3 scopes)", reads)
	}
}

// adminDataPath is a data path of an admin provider's keys.
var adminDataPath = regexp.MustCompile(`^"byok/data/(workspaces/\+/|organizations/\+/|hosted/)providers/(openai-admin|anthropic-admin)/keys/\+"`)

// The reader must never read an admin credential: every data path of an
// admin provider is denied, in every scope.
func TestReaderDeniesTheAdminCredentials(t *testing.T) {
	hcl, _ := Render(Reader, "byok")
	denied := 0
	for _, b := range strings.Split(hcl, "path ") {
		if adminDataPath.MatchString(b) {
			if !strings.Contains(b, `capabilities = ["deny"]`) {
				t.Fatalf("reader policy grants an admin credential path:\n%s", b)
			}
			denied++
		}
	}
	if denied != 6 {
		t.Fatalf("the reader denies %d admin credential paths, want 6", denied)
	}
}
