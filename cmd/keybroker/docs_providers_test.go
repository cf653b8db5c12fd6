package main

import (
	"strings"
	"testing"

	"github.com/keybroker/keybroker/providers"
)

// The providers reference names every provider of the catalogue, says how
// each sends its credential by field name, and never prints a credential.
func TestProviderReferenceCoversTheCatalogueAndShowsNoKey(t *testing.T) {
	var b strings.Builder
	reg := providers.DefaultRegistry()
	if err := writeProviderReference(&b, reg); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, p := range reg.All() {
		if !strings.Contains(out, "| "+p.DisplayName+" | `"+p.ID+"` |") || !strings.Contains(out, "### "+p.DisplayName+" (`"+p.ID+"`)") {
			t.Errorf("the reference has no row or section for %s", p.ID)
		}
		for _, f := range p.Credential.Fields {
			if secret := p.Dev.Field(f.Name); f.Secret && secret != "" && strings.Contains(out, secret) {
				t.Errorf("the reference prints %s's dev %s", p.ID, f.Name)
			}
		}
	}
	if !strings.Contains(out, "`Authorization: Bearer <apiKey>`") || !strings.Contains(out, "`X-Api-Key: <apiKey>`") {
		t.Errorf("the reference does not say how keys are sent:\n%s", out)
	}
}
