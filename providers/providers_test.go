package providers

import (
	"errors"
	"strings"
	"testing"
)

func TestMaskKey(t *testing.T) {
	for key, want := range map[string]string{
		"":                         "••••••••",
		"abcdefgh":                 "••••••••",
		"abcdefghi":                "abcd...fghi",
		"abcdefghijkl":             "abcd...ijkl",
		"abcdefghijklm":            "abcdef...jklm",
		"sk-proj-0123456789abcdef": "sk-pro...cdef",
	} {
		if got := MaskKey(key); got != want {
			t.Errorf("MaskKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestFingerprintNeedsThePepper(t *testing.T) {
	a := Fingerprint([]byte("pepper-one-0123456"), APIKey("sk-same-key"))
	b := Fingerprint([]byte("pepper-one-0123456"), APIKey("sk-same-key"))
	c := Fingerprint([]byte("pepper-two-0123456"), APIKey("sk-same-key"))
	d := Fingerprint([]byte("pepper-one-0123456"), APIKey("sk-other-key"))
	if a != b || a == c || a == d || len(a) != 64 || strings.Contains(a, "same") {
		t.Fatalf("fingerprints: %s %s %s %s", a, b, c, d)
	}
}

func TestRealKeyShapesAreAccepted(t *testing.T) {
	reg := DefaultRegistry()
	for provider, key := range map[string]string{
		"openai":    "sk-proj-Ab3_x-" + strings.Repeat("Z9y8", 35),
		"anthropic": "sk-ant-api03-" + strings.Repeat("aB3-_", 18) + "AA",
		"google":    "AIzaSyD-" + strings.Repeat("x", 31),
		"mistral":   "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF",
		"exa":       "3f2b6c1e-8a4d-4f7b-9c2e-5d1a0b9e8f7c",
		"xai":       "xai-" + strings.Repeat("Ab3", 26),
		"zai":       "0123456789abcdef0123456789abcdef.AbCdEfGhIjKlMnOp",
		"moonshot":  "sk-" + strings.Repeat("aB3", 16),
		"fireworks": "fw_" + strings.Repeat("aB3", 8),
		"together":  strings.Repeat("0a1b2c3d", 8),
		"baseten":   "AbCd1234.0123456789abcdefABCDEF0123456789",
	} {
		p, ok := reg.Lookup(provider)
		if !ok {
			t.Fatalf("provider %s missing", provider)
		}
		if err := p.Validate(APIKey(key)); err != nil {
			t.Errorf("%s: a real-looking key was refused: %v", provider, err)
		}
	}
}

func TestKeyRuleErrorsNeverQuoteTheKey(t *testing.T) {
	p, _ := DefaultRegistry().Lookup("openai")
	for _, key := range []string{"sk-secret part two here", "xx-secretsecretsecretsecret", "sk-secret" + "\u00e9" + "secretsecretsecret", "sk-sec"} {
		err := p.Validate(APIKey(key))
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("%q: %v", key, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error quotes the key: %v", err)
		}
	}
}

// TestFormatHintsMatchTheRules: what a hint promises, the rule enforces.
func TestFormatHintsMatchTheRules(t *testing.T) {
	reg := DefaultRegistry()
	for _, tc := range []struct{ provider, key, why string }{
		{"mistral", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0e", "31 characters, the hint says 32"},
		{"mistral", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eFG", "33 characters"},
		{"exa", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "not hexadecimal"},
		{"exa", "3f2b6c1e8a4d-4f7b-9c2e-5d1a0b9e8f7c-", "dashes in the wrong places"},
		{"openai", "sk-ant-api03-" + strings.Repeat("a", 40), "an Anthropic key"},
		{"moonshot", "sk-ant-api03-" + strings.Repeat("a", 40), "an Anthropic key"},
		{"openai", "sk-admin-" + strings.Repeat("a", 40), "an OpenAI admin key (it belongs in openai-admin, never resolved)"},
		{"google", "AIza" + strings.Repeat("x", 36), "40 characters, the hint says 39"},
		{"zai", "0123456789abcdef.0123.456789", "two dots"},
		{"baseten", ".0123456789abcdef0123456789", "a dot first"},
		{"xai", "sk-" + strings.Repeat("a", 30), "no xai- prefix"},
		{"fireworks", "fw-" + strings.Repeat("a", 30), "fw- is not fw_"},
	} {
		p, _ := reg.Lookup(tc.provider)
		if err := p.Validate(APIKey(tc.key)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s %s: accepted", tc.provider, tc.why)
		}
	}
	for _, p := range reg.All() {
		if p.Check.BaseURL == "" || p.Check.Path == "" || p.Authorize == nil || p.FormatHint() == "" {
			t.Errorf("%s: the registry entry lacks its check or hint: %+v", p.ID, p.Check)
		}
	}
}

// A provider id with a '-' names its variables with '_', which a shell can
// set.
func TestEnvironmentNamesOfAProviderWithADash(t *testing.T) {
	if got := EnvName("azure-openai"); got != "KEYBROKER_PROVIDER_AZURE_OPENAI_BASE_URL" {
		t.Fatalf("EnvName: %s", got)
	}
	got, err := MintEndpointsFromEnv(DefaultRegistry(), []string{"KEYBROKER_PROVIDER_AZURE_OPENAI_ENTRA_URL=http://127.0.0.1:9/entra"})
	if err != nil || got["azure-openai"]["entra"] != "http://127.0.0.1:9/entra" {
		t.Fatalf("MintEndpointsFromEnv: %v %v", got, err)
	}
}
