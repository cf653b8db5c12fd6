package policies

import (
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

// The writer must never be able to read key material.
func TestWriterHasNoReadOnData(t *testing.T) {
	hcl, _ := Render(Writer, "byok")
	blocks := strings.Split(hcl, "path ")
	for _, b := range blocks {
		if strings.HasPrefix(b, `"byok/data/`) && strings.Contains(b, `"read"`) {
			t.Fatalf("writer policy reads data:\n%s", b)
		}
	}
}
