package rolemap_test

import (
	"os"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/auth/rolemap"
)

// parseYAMLBlocks holds every ```yaml block of text to the parser and
// returns how many there were.
func parseYAMLBlocks(t *testing.T, text string) int {
	t.Helper()
	examples := 0
	for rest := text; ; {
		_, after, found := strings.Cut(rest, "```yaml\n")
		if !found {
			return examples
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
}

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
	if n := parseYAMLBlocks(t, section); n < 8 {
		t.Fatalf("%d yaml examples", n)
	}
}

// TestTheProviderGuidesMappingsParse holds the mapping of each provider's
// guide (docs/identity-providers.md) to the parser.
func TestTheProviderGuidesMappingsParse(t *testing.T) {
	doc, err := os.ReadFile("../../docs/identity-providers.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := parseYAMLBlocks(t, string(doc)); n != 5 {
		t.Fatalf("%d yaml examples, want one per provider (5)", n)
	}
}
