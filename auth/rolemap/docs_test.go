package rolemap_test

import (
	"os"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth/rolemap"
)

// TestTheDocsExamplesParse holds every YAML example of the section "The
// role mapping file" of docs/identity.md to the parser.
func TestTheDocsExamplesParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/identity.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## The role mapping file\n")
	if !ok {
		t.Fatal("docs/identity.md has no section \"The role mapping file\"")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	examples := 0
	for rest := section; ; {
		_, after, found := strings.Cut(rest, "```yaml\n")
		if !found {
			break
		}
		body, next, closed := strings.Cut(after, "```\n")
		if !closed {
			t.Fatal("an unclosed yaml block")
		}
		rest = next
		examples++
		if _, err := rolemap.Parse([]byte(body)); err != nil {
			t.Errorf("example %d:\n%s\n%v", examples, body, err)
		}
	}
	if examples < 8 {
		t.Fatalf("%d yaml examples", examples)
	}
}

// TestTheProviderGuidesMappingsParse holds the mapping of each provider's
// guide (docs/identity-providers.md) to the parser.
func TestTheProviderGuidesMappingsParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/identity-providers.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := 0
	for rest := string(doc); ; {
		_, after, found := strings.Cut(rest, "```yaml\n")
		if !found {
			break
		}
		body, next, closed := strings.Cut(after, "```\n")
		if !closed {
			t.Fatal("an unclosed yaml block")
		}
		rest = next
		examples++
		if _, err := rolemap.Parse([]byte(body)); err != nil {
			t.Errorf("example %d:\n%s\n%v", examples, body, err)
		}
	}
	if examples != 5 {
		t.Fatalf("%d yaml examples, want one per provider (5)", examples)
	}
}
