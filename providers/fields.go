package providers

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// FromWire builds a credential of the schema's kind from the fields of a
// write's "credential" object: a string for a string field, an object of
// strings for a map field (kept as canonical JSON, MapValue). A field of
// the wrong JSON type is a *WireError (naming the field, never a value);
// Validate checks the rest.
func (s Schema) FromWire(fields map[string]any) (Credential, error) {
	out := make(map[string]string, len(fields))
	for name, v := range fields {
		f, known := s.Field(name)
		switch v := v.(type) {
		case string:
			if known && f.Type == FieldMap {
				return Credential{}, wireError("%s must be an object of strings, not a string", name)
			}
			out[name] = v
		case map[string]any:
			if !known || f.Type != FieldMap {
				return Credential{}, wireError("%s must be a string", name)
			}
			m := make(map[string]string, len(v))
			for k, e := range v {
				str, ok := e.(string)
				if !ok {
					return Credential{}, wireError("%s must be an object of strings: the value of %q is not a string", name, k)
				}
				m[k] = str
			}
			out[name] = MapValue(m)
		default:
			if known && f.Type == FieldMap {
				return Credential{}, wireError("%s must be an object of strings", name)
			}
			return Credential{}, wireError("%s must be a string", name)
		}
	}
	return Credential{kind: s.Kind, v: &values{m: out}}, nil
}

// WireError says that a field of a write's credential has the wrong JSON
// type: the body is malformed (400), as a string where a number was
// expected would be. It names the field, never a value.
type WireError struct{ Reason string }

func (e *WireError) Error() string { return "credential: " + e.Reason }

func wireError(format string, args ...any) error {
	return &WireError{Reason: fmt.Sprintf(format, args...)}
}

// MapValue is m as a map field's value: canonical JSON, keys sorted, no
// spaces.
func MapValue(m map[string]string) string {
	if m == nil {
		m = map[string]string{}
	}
	b, _ := json.Marshal(m) // a map[string]string always encodes, keys sorted
	return string(b)
}

// ParseMap reads a map field's value (canonical JSON of an object of
// strings).
func ParseMap(v string) (map[string]string, bool) {
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// checkMap checks a map field's value: an object of non-empty strings
// with non-empty keys.
func checkMap(label, v string) error {
	m, ok := ParseMap(v)
	if !ok {
		return refuse("%s must be an object of strings", label)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" {
			return refuse("%s has an empty name", label)
		}
		if m[k] == "" {
			return refuse("%s has an empty value for %q", label, k)
		}
	}
	return nil
}

// Public is c's non-secret fields as an answer shows them: a string field
// as a string, a map field as an object.
func (s Schema) Public(c Credential) map[string]any {
	out := map[string]any{}
	for _, f := range s.Fields {
		v, ok := c.fields()[f.Name]
		if !ok || f.Secret {
			continue
		}
		if f.Type == FieldMap {
			if m, ok := ParseMap(v); ok {
				out[f.Name] = m
			}
			continue
		}
		out[f.Name] = v
	}
	return out
}

// PublicJSON is Public as canonical JSON (for the metadata store).
func (s Schema) PublicJSON(c Credential) string {
	b, _ := json.Marshal(s.Public(c))
	return string(b)
}

// Masks is the masked preview of each secret field c has (Field.Mask).
func (s Schema) Masks(c Credential) map[string]string {
	out := map[string]string{}
	for _, f := range s.Fields {
		if v, ok := c.fields()[f.Name]; ok && f.Secret {
			out[f.Name] = f.Mask(v)
		}
	}
	return out
}
