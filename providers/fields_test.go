package providers

import (
	"errors"
	"strings"
	"testing"
)

// testCloud is a kind with string, map and several secret fields, known
// only to the tests.
var testCloud = Provider{ID: "testcloud", DisplayName: "TestCloud", Credential: Schema{Kind: "test_cloud", Fields: []Field{
	{Name: "region", VaultField: "region", Required: true},
	{Name: "modelMap", VaultField: "model_map", Type: FieldMap},
	{Name: "accessKeyId", VaultField: "access_key_id", Secret: true, Required: true},
	{Name: "secretAccessKey", VaultField: "secret_access_key", Secret: true, Required: true},
}}}

func TestMapFieldFromWireAndValidate(t *testing.T) {
	s := testCloud.Credential
	c, err := s.FromWire(map[string]any{"region": "eu-west-1", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t-value-1",
		"modelMap": map[string]any{"sonnet": "anthropic.claude", "haiku": "anthropic.haiku"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Field("modelMap"), `{"haiku":"anthropic.haiku","sonnet":"anthropic.claude"}`; got != want {
		t.Fatalf("map field stored as %s, want canonical %s", got, want)
	}
	if err := testCloud.Validate(c); err != nil {
		t.Fatalf("valid credential refused: %v", err)
	}
	if got := s.ToVault(c)["model_map"]; got != c.Field("modelMap") {
		t.Fatalf("Vault gets %q", got)
	}
	pub := s.Public(c)
	if _, ok := pub["accessKeyId"]; ok || pub["region"] != "eu-west-1" {
		t.Fatalf("Public = %v", pub)
	}
	if m, ok := pub["modelMap"].(map[string]string); !ok || m["sonnet"] != "anthropic.claude" {
		t.Fatalf("Public shows the map as %#v", pub["modelMap"])
	}
	if got := s.PublicJSON(c); strings.Contains(got, "s3cr3t") || !strings.Contains(got, `"modelMap":{"haiku"`) {
		t.Fatalf("PublicJSON = %s", got)
	}
	masks := s.Masks(c)
	if len(masks) != 2 || masks["secretAccessKey"] != MaskKey("s3cr3t-value-1") || strings.Contains(masks["secretAccessKey"], "s3cr3t-value-1") {
		t.Fatalf("Masks = %v", masks)
	}
}

func TestMapFieldRefusals(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"region": "eu-west-1", "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t-value-1"}
	}
	for _, tc := range []struct {
		name  string
		field any
		wire  bool // a *WireError (400), else a refusal (422)
		want  string
	}{
		{"a string for a map", `{"a":"b"}`, true, "modelMap must be an object of strings, not a string"},
		{"a number in the map", map[string]any{"a": 1.0}, true, `modelMap must be an object of strings: the value of "a" is not a string`},
		{"an empty value", map[string]any{"a": ""}, false, `TestCloud modelMap has an empty value for "a"`},
		{"an empty name", map[string]any{"": "x"}, false, "TestCloud modelMap has an empty name"},
		{"an array", []any{"x"}, true, "modelMap must be an object of strings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			f["modelMap"] = tc.field
			c, err := testCloud.Credential.FromWire(f)
			if err == nil {
				err = testCloud.Validate(c)
			}
			var we *WireError
			if errors.As(err, &we) {
				if we.Reason != tc.want || !tc.wire {
					t.Fatalf("got a wire error %q, want %q (wire %v)", we.Reason, tc.want, tc.wire)
				}
				return
			}
			if !errors.Is(err, ErrInvalidKey) || PublicReason(err) != tc.want || tc.wire {
				t.Fatalf("got %v, want a refusal %q", err, tc.want)
			}
		})
	}
	f := base()
	f["region"] = map[string]any{"x": "y"}
	if _, err := testCloud.Credential.FromWire(f); err == nil || err.Error() != "credential: region must be a string" {
		t.Fatalf("an object for a string field: %v", err)
	}
	// A credential made in Go with a map value that is not JSON.
	c := New("test_cloud", map[string]string{"region": "r", "accessKeyId": "a", "secretAccessKey": "s", "modelMap": "not json"})
	if err := testCloud.Validate(c); PublicReason(err) != "TestCloud modelMap must be an object of strings" {
		t.Fatalf("a map value that is not JSON: %v", err)
	}
}
