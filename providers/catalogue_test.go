package providers_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/ids"
	"github.com/keybroker/keybroker/providers"
)

// TestEveryProviderIsComplete walks the catalogue and fails on an entry
// that lacks a piece: a forgotten dev credential, check, proxy endpoint,
// field schema or key header is caught here, not in production.
func TestEveryProviderIsComplete(t *testing.T) {
	all := providers.DefaultRegistry().All()
	if len(all) < 11 {
		t.Fatalf("the catalogue has %d providers", len(all))
	}
	for _, p := range all {
		t.Run(p.ID, func(t *testing.T) {
			if !ids.Valid(p.ID) || p.DisplayName == "" {
				t.Fatalf("id %q, display name %q", p.ID, p.DisplayName)
			}
			// The field schema.
			s := p.Credential
			if s.Kind == "" || len(s.Fields) == 0 {
				t.Fatalf("no credential kind or fields: %+v", s)
			}
			seen, vaultSeen, secrets := map[string]bool{}, map[string]bool{}, 0
			for _, f := range s.Fields {
				if f.Name == "" || f.VaultField == "" || seen[f.Name] || vaultSeen[f.VaultField] {
					t.Fatalf("field %+v: unnamed or named twice", f)
				}
				seen[f.Name], vaultSeen[f.VaultField] = true, true
				if f.Label == "" {
					t.Errorf("field %s has no label (forms show it)", f.Name)
				}
				if (f.Type == providers.FieldMap) != (f.MapLabels != [2]string{}) {
					t.Errorf("field %s: map labels %q on a field of type %q", f.Name, f.MapLabels, f.Type)
				}
				if f.Choice != "" && !slices.ContainsFunc(s.Choices, func(c providers.Choice) bool { return c.ID == f.Choice }) {
					t.Errorf("field %s belongs to choice %q, which the kind does not have", f.Name, f.Choice)
				}
				if f.Choice != "" && f.Required {
					t.Errorf("field %s of choice %s is required of every credential: the choice's Required says it", f.Name, f.Choice)
				}
				if f.Secret {
					secrets++
					if f.Hint == "" {
						t.Errorf("secret field %s has no format hint", f.Name)
					}
				}
			}
			if secrets == 0 {
				t.Error("the credential has no secret field")
			}
			// Each way of signing in has a label, fields, and requires
			// only its own fields.
			if (len(s.Choices) > 0) != (s.ChoicesLabel != "") || len(s.Choices) == 1 {
				t.Errorf("choices %+v asked as %q", s.Choices, s.ChoicesLabel)
			}
			for _, c := range s.Choices {
				var own []string
				for _, f := range s.Fields {
					if f.Choice == c.ID {
						own = append(own, f.Name)
					}
				}
				if c.ID == "" || c.Label == "" || len(c.Required) == 0 || len(own) == 0 {
					t.Errorf("choice %+v (fields %v)", c, own)
				}
				for _, r := range c.Required {
					if !slices.Contains(own, r) {
						t.Errorf("choice %s requires %s, not one of its fields %v", c.ID, r, own)
					}
				}
			}
			if s.Kind == providers.KindAPIKey && (len(s.Fields) != 1 || s.Fields[0].Name != providers.FieldAPIKey ||
				s.Fields[0].VaultField != providers.VaultFieldAPIKey || !s.Fields[0].Required) {
				t.Errorf("an api_key credential is one required field apiKey, kept in Vault as api_key: %+v", s.Fields)
			}
			if p.FormatHint() == "" {
				t.Error("no format hint")
			}
			// The dev credential passes the format rule, and round-trips
			// through the Vault fields.
			dev := p.Dev
			if dev.IsZero() {
				t.Fatal("no dev credential (keybroker dev would seed nothing)")
			}
			if err := p.Validate(dev); err != nil {
				t.Fatalf("the dev credential breaks the format rule: %v", err)
			}
			if back, err := s.FromVault(s.ToVault(dev)); err != nil || !back.Equal(dev) {
				t.Fatalf("the dev credential does not round-trip through Vault's fields: %v", err)
			}
			// The secret: the value of the first secret field the dev
			// credential fills (an api_key's key, Bedrock's access key id).
			secret := ""
			for _, f := range s.Fields {
				if f.Secret && dev.Field(f.Name) != "" {
					secret = dev.Field(f.Name)
					break
				}
			}
			if secret == "" {
				t.Fatal("the dev credential fills no secret field")
			}
			// Masking and the fingerprint hide it.
			if pv := s.Preview(dev); pv == "" || strings.Contains(pv, secret) {
				t.Errorf("preview %q", pv)
			}
			if fp := providers.Fingerprint([]byte("pepper-0123456789"), dev); len(fp) != 64 || strings.Contains(fp, secret) {
				t.Errorf("fingerprint %q", fp)
			}
			var logged strings.Builder
			slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "c", dev)
			js, _ := json.Marshal(dev)
			if out := fmt.Sprintf("%v %+v %#v %s %q %x", dev, dev, dev, dev, dev, dev) + logged.String() + string(js); strings.Contains(out, secret) {
				t.Errorf("the credential printed its secret: %s", out)
			}
			// How the credential goes into a request.
			if p.Authorize == nil {
				t.Fatal("no Authorize: the key would go nowhere")
			}
			// A provider whose Authorize takes only a derived credential
			// (a minted token) documents one in DevDerived, which holds
			// no long-lived secret; the token goes where the provider
			// reads it.
			sent, want := dev, secret
			if !p.DevDerived.IsZero() {
				if p.Derive == nil {
					t.Fatal("DevDerived without Derive")
				}
				sent, want = p.DevDerived, p.DevDerived.Field(providers.FieldAccessToken)
				for n, v := range p.DevDerived.Reveal() {
					if f, ok := s.Field(n); ok && f.Secret || v == secret {
						t.Errorf("the derived credential carries the long-lived secret field %s", n)
					}
				}
			}
			req, _ := http.NewRequest(http.MethodGet, "https://example.invalid/", nil)
			if err := p.Authorize(req, sent); err != nil {
				t.Fatalf("authorize: %v", err)
			}
			if got, ok := keyAsRead(p.ID, req); !ok || got != want || want == "" {
				t.Errorf("the key is not where %s reads it (the test's realAuth may lack the provider)", p.ID)
			}
			// The check, on the provider's base URL or, for a provider
			// whose address is in the credential, on the dev
			// credential's.
			base := p.Check.BaseURL
			if p.Check.BaseURLFor != nil {
				base = p.Check.BaseURLFor(dev)
			}
			u, err := url.Parse(base)
			if err != nil || u.Scheme != "https" || u.Host == "" || !strings.HasPrefix(p.Check.Path, "/") {
				t.Errorf("check %s %s", base, p.Check.Path)
			}
			// The proxy's endpoints.
			if len(p.Proxy.Endpoints) == 0 {
				t.Fatal("no proxy endpoints")
			}
			for _, ep := range p.Proxy.Endpoints {
				if !slices.Contains([]string{http.MethodGet, http.MethodPost}, ep.Method) || !strings.HasPrefix(ep.Path, "/") {
					t.Errorf("endpoint %s %s", ep.Method, ep.Path)
				}
			}
		})
	}
}

// TestRegistryIDsAreUnique: two entries with one id would shadow each
// other.
func TestRegistryIDsAreUnique(t *testing.T) {
	all := providers.DefaultRegistry().All()
	for i := 1; i < len(all); i++ {
		if all[i].ID == all[i-1].ID {
			t.Fatalf("%s is in the catalogue twice", all[i].ID)
		}
	}
}
