package providers

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// KindAPIKey is the credential kind of a provider that takes one API key.
// The kinds with several fields (azure_openai, aws_bedrock, gcp_vertex)
// are each a Schema of their own, in their family's file.
const KindAPIKey = "api_key"

// FieldAPIKey is the one field of an api_key credential, in the API;
// VaultFieldAPIKey its data field in the Vault secret (the one keybroker
// has always written, so keys written by earlier versions read unchanged).
const (
	FieldAPIKey      = "apiKey"
	VaultFieldAPIKey = "api_key"
)

// Field is one field of a credential kind.
type Field struct {
	// Name is the field's name in the API and in a Credential ("apiKey").
	Name string
	// VaultField is the data field of the Vault secret that holds it.
	VaultField string
	// Secret fields are never shown, logged or stored outside Vault: the
	// metadata keeps a masked preview of each.
	Secret bool
	// Required fields must be present and not empty.
	Required bool
	// Hint tells an admin what a value looks like; the rule checks
	// exactly that.
	Hint string
	// Type is how the API writes the value: a string, or an object of
	// strings (FieldMap).
	Type FieldType
	// Label is the field's name in words, for forms ("Secret access
	// key").
	Label string
	// Choice, when set, is the id of the Schema.Choices entry the field
	// belongs to: it is given only when that way of signing in is.
	Choice string
	// File says the value is a document an admin picks from disk (a
	// service-account key file) rather than types.
	File bool
	// MapLabels are the words of a map field's names and values
	// ("Model", "Deployment").
	MapLabels [2]string
	rule      *keyRule
	// valid, when set instead of rule, checks a value that is no token (a
	// URL, a JSON document, a map): label names the field in messages.
	valid func(label, v string) error
	// preview, when set, is the field's masked preview (a document whose
	// first and last characters say nothing: a service-account file
	// shows its account); default MaskKey.
	preview func(v string) string
}

// Choice is one of a kind's ways of signing in.
type Choice struct {
	// ID names it in Field.Choice; Label says it in words.
	ID, Label string
	// Required are the fields this way needs (of those whose Choice is
	// ID).
	Required []string
}

// Mask is the masked preview of the field's value v that the metadata
// keeps and the answers show.
func (f Field) Mask(v string) string {
	if f.preview != nil {
		if m := f.preview(v); m != "" {
			return m
		}
	}
	return MaskKey(v)
}

// Schema is a provider's credential kind and its fields.
type Schema struct {
	Kind   string
	Fields []Field
	// Choices are the kind's ways of signing in when it has several
	// (Azure's API key or Entra client credentials): a credential uses
	// exactly one, and gives only the fields whose Choice is its ID.
	// ChoicesLabel asks the question ("How keybroker signs in to AWS").
	Choices      []Choice
	ChoicesLabel string
	// Validate, when set, checks what the fields' own rules cannot: the
	// kinds that take one of two ways of authenticating (Azure's apiKey or
	// Entra client credentials) require exactly one. It runs after every
	// field passed its rule, and its error (a *RefusalError) names fields,
	// never values.
	Validate func(c Credential) error
}

// apiKey is the schema of a provider that takes one API key, whose format
// hint and rule are the provider's.
func apiKey(hint string, rule keyRule) Schema {
	return Schema{Kind: KindAPIKey, Fields: []Field{{Name: FieldAPIKey, VaultField: VaultFieldAPIKey, Secret: true, Required: true, Hint: hint, Label: "API key", rule: &rule}}}
}

// Field returns the field called name.
func (s Schema) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// validate checks c against the schema: its kind, no field the kind does
// not have, every required field present, every field's rule. The error
// names fields and rules, never a value. what names the credential in
// messages ("OpenAI").
func (s Schema) validate(what string, c Credential) error {
	if c.kind != s.Kind {
		return refuse("%s takes a credential of kind %s, not %q", what, s.Kind, c.kind)
	}
	for _, name := range c.names() {
		if _, ok := s.Field(name); !ok {
			return refuse("%s credentials have no field %q (fields: %s)", what, name, strings.Join(s.names(), ", "))
		}
	}
	for _, f := range s.Fields {
		v, ok := c.fields()[f.Name]
		if !ok && !f.Required {
			continue
		}
		label := what + " " + f.Name
		if s.Kind == KindAPIKey {
			label = what + " key" // the messages of keybroker v1 and v2
		}
		switch {
		case f.Type == FieldMap:
			if err := checkMap(label, v); err != nil {
				return err
			}
			if f.valid != nil {
				if err := f.valid(label, v); err != nil {
					return err
				}
			}
		case f.rule != nil:
			if err := f.rule.check(label, v); err != nil {
				return err
			}
		case v == "":
			return refuse("%s is empty", label)
		case f.valid != nil:
			if err := f.valid(label, v); err != nil {
				return err
			}
		}
	}
	if s.Validate != nil {
		return s.Validate(c)
	}
	return nil
}

func (s Schema) names() []string {
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = f.Name
	}
	return out
}

// ToVault is c as the data fields of its Vault secret.
func (s Schema) ToVault(c Credential) map[string]string {
	out := make(map[string]string, len(c.fields()))
	for _, f := range s.Fields {
		if v, ok := c.fields()[f.Name]; ok {
			out[f.VaultField] = v
		}
	}
	return out
}

// FromVault reads a credential from the data fields of its Vault secret.
// A required field that is missing or empty is a *MissingFieldError,
// which names the fields the secret has (never their values).
func (s Schema) FromVault(data map[string]string) (Credential, error) {
	fields := make(map[string]string, len(s.Fields))
	for _, f := range s.Fields {
		v, ok := data[f.VaultField]
		if f.Required && v == "" {
			return Credential{}, &MissingFieldError{Field: f.VaultField, Have: slices.Sorted(maps.Keys(data))}
		}
		if ok {
			fields[f.Name] = v
		}
	}
	return Credential{kind: s.Kind, v: &values{m: fields}}, nil
}

// MissingFieldError says that a Vault secret lacks a field its credential kind
// requires (written around keybroker under another name).
type MissingFieldError struct {
	// Field is the Vault data field that is missing; Have the fields the
	// secret has (names only).
	Field string
	Have  []string
}

func (e *MissingFieldError) Error() string {
	return fmt.Sprintf("the secret has no field %q (%s)", e.Field, e.HaveText())
}

// HaveText lists the fields the secret has, quoted ("no fields" when none).
func (e *MissingFieldError) HaveText() string {
	if len(e.Have) == 0 {
		return "no fields"
	}
	q := make([]string, len(e.Have))
	for i, h := range e.Have {
		q[i] = strconv.Quote(h)
	}
	return "fields: " + strings.Join(q, ", ")
}

// Preview is the masked preview of c's first secret field that c has
// (Azure's apiKey, or its clientSecret), which the metadata keeps
// (MaskKey).
func (s Schema) Preview(c Credential) string {
	for _, f := range s.Fields {
		if v, ok := c.fields()[f.Name]; ok && f.Secret {
			return MaskKey(v)
		}
	}
	return ""
}

// EchoesMask reports whether a secret field of c is its own masked
// preview: a UI or a script echoing the mask back instead of a key.
func (s Schema) EchoesMask(c Credential) bool {
	for _, f := range s.Fields {
		if v, ok := c.fields()[f.Name]; ok && f.Secret && (MaskKey(v) == v || f.Mask(v) == v) {
			return true
		}
	}
	return false
}

// Credential is a provider credential: a kind and named fields. It is a
// value (copies share nothing a caller can change). String, GoString,
// LogValue and MarshalJSON never show a field's value: only Field,
// APIKey and Reveal hand one out, explicitly.
type Credential struct {
	kind string
	// v is behind a pointer so that even a Credential inside another
	// value's unexported field, which fmt prints without calling its
	// methods, shows an address and no value.
	v *values
}

type values struct{ m map[string]string }

func (c Credential) fields() map[string]string {
	if c.v == nil {
		return nil
	}
	return c.v.m
}

// New is a credential of kind with fields (copied).
func New(kind string, fields map[string]string) Credential {
	return Credential{kind: kind, v: &values{m: maps.Clone(fields)}}
}

// APIKey is an api_key credential holding key.
func APIKey(key string) Credential {
	return Credential{kind: KindAPIKey, v: &values{m: map[string]string{FieldAPIKey: key}}}
}

// Kind is the credential's kind ("api_key").
func (c Credential) Kind() string { return c.kind }

// IsZero reports whether c holds nothing.
func (c Credential) IsZero() bool { return c.kind == "" && len(c.fields()) == 0 }

// Field returns the value of the field called name ("" when absent).
func (c Credential) Field(name string) string { return c.fields()[name] }

// APIKey returns the key of an api_key credential ("" for other kinds).
func (c Credential) APIKey() string {
	if c.kind != KindAPIKey {
		return ""
	}
	return c.fields()[FieldAPIKey]
}

// Reveal returns every field with its value: for the resolve answer, the
// Vault write and the provider's request, never for a log or an error.
func (c Credential) Reveal() map[string]string { return maps.Clone(c.fields()) }

// Equal reports whether c and o are the same credential.
func (c Credential) Equal(o Credential) bool {
	return c.kind == o.kind && maps.Equal(c.fields(), o.fields())
}

func (c Credential) names() []string { return slices.Sorted(maps.Keys(c.fields())) }

// canonical is c as one byte string, for the fingerprint: an api_key
// credential's key itself (fingerprints of keys written by earlier
// versions stay the same); for other kinds, the kind and each field, in
// the order of their names, length-prefixed.
func (c Credential) canonical() []byte {
	if c.kind == KindAPIKey && len(c.fields()) == 1 {
		return []byte(c.fields()[FieldAPIKey])
	}
	var b []byte
	put := func(s string) { b = strconv.AppendInt(b, int64(len(s)), 10); b = append(b, ':'); b = append(b, s...) }
	put(c.kind)
	for _, n := range c.names() {
		put(n)
		put(c.fields()[n])
	}
	return b
}

const redacted = "<redacted>"

func (c Credential) String() string {
	var b strings.Builder
	b.WriteString("providers.Credential{Kind:")
	b.WriteString(c.kind)
	for _, n := range c.names() {
		b.WriteString(" " + n + ":" + redacted)
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String: %#v shows no value either.
func (c Credential) GoString() string { return c.String() }

// Format makes every verb print String, so that no verb (%x, %d) reaches
// the fields.
func (c Credential) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue implements slog.LogValuer: the kind and the field names.
func (c Credential) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", c.kind)}
	for _, n := range c.names() {
		attrs = append(attrs, slog.String(n, redacted))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON writes the kind and each field as "<redacted>": a
// credential that reaches a JSON encoder by mistake leaks nothing. The
// resolve answer writes the fields it must carry from Reveal.
func (c Credential) MarshalJSON() ([]byte, error) {
	fields := make(map[string]string, len(c.fields()))
	for n := range c.fields() {
		fields[n] = redacted
	}
	return json.Marshal(struct {
		Kind   string            `json:"kind"`
		Fields map[string]string `json:"fields"`
	}{c.kind, fields})
}
