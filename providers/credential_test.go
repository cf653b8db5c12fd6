package providers_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/providers"
)

// A credential printed, logged or marshalled by mistake shows no secret;
// only the explicit accessors hand it out.
func TestCredentialNeverPrintsItsFields(t *testing.T) {
	const key, secret = "sk-proj-never-printed-0123456789", "the-client-secret-never-printed"
	for _, c := range []providers.Credential{providers.APIKey(key), providers.New("azure_openai", map[string]string{"apiKey": key, "clientSecret": secret})} {
		var text, js strings.Builder
		slog.New(slog.NewTextHandler(&text, nil)).Info("x", "credential", c)
		slog.New(slog.NewJSONHandler(&js, nil)).Info("x", "credential", c, "in", struct{ C providers.Credential }{c})
		m, err := json.Marshal(map[string]any{"c": c})
		if err != nil {
			t.Fatal(err)
		}
		type holder struct{ c providers.Credential } // an unexported field: fmt calls no method of it
		out := fmt.Sprintf("%v %+v %#v %s %q %x %d", c, c, c, c, c, c, c) + fmt.Sprint(c) + fmt.Sprintf("%+v", struct{ C providers.Credential }{c}) +
			fmt.Sprintf("%v %+v %#v", holder{c}, holder{c}, &holder{c}) +
			text.String() + js.String() + string(m)
		if strings.Contains(out, "never-printed") {
			t.Fatalf("a secret was printed: %s", out)
		}
		if !strings.Contains(out, "<redacted>") || !strings.Contains(out, c.Kind()) {
			t.Fatalf("the redacted form says nothing: %s", out)
		}
		if c.Field("apiKey") != key || c.Reveal()["apiKey"] != key {
			t.Fatal("the explicit accessors lost the key")
		}
	}
}

func TestCredentialIsCheckedAgainstItsSchema(t *testing.T) {
	p, _ := providers.DefaultRegistry().Lookup("openai")
	key := "sk-proj-" + strings.Repeat("a1B2", 10)
	if err := p.Validate(providers.APIKey(key)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]providers.Credential{
		"another kind":  providers.New("aws_bedrock", map[string]string{"apiKey": key}),
		"unknown field": providers.New(providers.KindAPIKey, map[string]string{"apiKey": key, "region": "eu"}),
		"no field":      providers.New(providers.KindAPIKey, nil),
		"empty key":     providers.APIKey(""),
	} {
		err := p.Validate(c)
		if !errors.Is(err, providers.ErrInvalidKey) || providers.PublicReason(err) == "" || strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The Vault fields: api_key, as keybroker has always written; a
	// secret without it names the fields it has, never their values.
	if got := p.Credential.ToVault(providers.APIKey(key)); len(got) != 1 || got["api_key"] != key {
		t.Fatalf("vault fields %v", got)
	}
	_, err := p.Credential.FromVault(map[string]string{"key": key})
	var mf *providers.MissingFieldError
	if !errors.As(err, &mf) || mf.Field != "api_key" || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), `"key"`) {
		t.Fatalf("a secret under another field: %v", err)
	}
	// Fingerprints: an api_key credential's is its key's; equal
	// credentials of several fields agree, different ones do not.
	pepper := []byte("pepper-0123456789")
	a := providers.New("x", map[string]string{"a": "1", "b": "2"})
	b := providers.New("x", map[string]string{"b": "2", "a": "1"})
	c := providers.New("x", map[string]string{"a": "12", "b": ""})
	if providers.Fingerprint(pepper, a) != providers.Fingerprint(pepper, b) || providers.Fingerprint(pepper, a) == providers.Fingerprint(pepper, c) || !a.Equal(b) || a.Equal(c) {
		t.Fatal("fingerprints of credentials with several fields")
	}
}
