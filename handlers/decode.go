package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads exactly one JSON object into v (a pointer to a struct),
// strictly: unknown fields, duplicate names (at any depth), names in
// another letter case than the documented one, trailing data and bodies
// over MaxBodyBytes are refused. encoding/json alone would take the last
// of two duplicates and match names case-insensitively, so a gateway in
// front reading the first value, or the exact name, would see another
// request than keybroker. The error is ready to render; it never quotes
// the body.
func decodeJSON(c *gin.Context, v any) *Error {
	body, err := io.ReadAll(c.Request.Body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errBodyTooLarge
	}
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "could not read the request body"}
	}
	known := fieldNames(v)
	msg, decided := quickCheckNames(body, known)
	if !decided {
		msg = checkNames(body, known)
	}
	if msg != "" {
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: msg}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	msg = "request body must be one JSON object"
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		msg = "request body is empty; expected a JSON object"
	case errors.As(err, &typeErr):
		msg = fmt.Sprintf("field %q has the wrong type", typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		msg = "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: msg}
}

// checkNames walks body's tokens: no object may repeat a name, and every
// name of the top-level object must be one of known exactly (a name that
// matches one only when letter case is ignored is refused; names known in
// no case are left to DisallowUnknownFields). It returns "" when the body
// passes, or is not valid JSON (the decoder then says why).
func checkNames(body []byte, known map[string]bool) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	// One frame per open object or array: the names seen in an object.
	type frame struct {
		names  map[string]bool
		object bool
		key    bool // the next token of an object is a name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return ""
				}
				stack[len(stack)-1].key = stack[len(stack)-1].object
				continue
			}
			name, _ := tok.(string)
			if top.names[name] {
				return fmt.Sprintf("duplicate field %q", name)
			}
			top.names[name] = true
			if len(stack) == 1 && !known[name] {
				for k := range known {
					if strings.EqualFold(k, name) {
						return fmt.Sprintf("unknown field %q (did you mean %q? names are case-sensitive)", name, k)
					}
				}
			}
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, object: true, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			return ""
		}
		// A value ended: in an object, a name comes next.
		stack[len(stack)-1].key = stack[len(stack)-1].object
	}
}

// quickCheckNames is checkNames without allocations for the bodies the API
// gets (small objects, names without escapes): the resolve path is hot.
// decided is false when the body is outside what it handles (escaped
// names, deep nesting, many names); checkNames then decides.
func quickCheckNames(body []byte, known map[string]bool) (msg string, decided bool) {
	const maxDepth, maxNames = 8, 16
	type frame struct {
		names     [maxNames][]byte
		n         int
		object    bool
		expectKey bool
	}
	var stack [maxDepth]frame
	depth := 0
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if depth == maxDepth {
				return "", false
			}
			stack[depth] = frame{object: c == '{', expectKey: c == '{'}
			depth++
		case '}', ']':
			if depth == 0 {
				return "", false
			}
			depth--
		case ',':
			if depth > 0 && stack[depth-1].object {
				stack[depth-1].expectKey = true
			}
		case '"':
			end := i + 1
			for end < len(body) && body[end] != '"' {
				if body[end] == '\\' {
					return "", false
				}
				end++
			}
			if end == len(body) {
				return "", true // unterminated: the decoder says so
			}
			s := body[i+1 : end]
			i = end
			if depth == 0 || !stack[depth-1].object || !stack[depth-1].expectKey {
				continue // a value
			}
			f := &stack[depth-1]
			f.expectKey = false
			for _, prev := range f.names[:f.n] {
				if bytes.Equal(prev, s) {
					return fmt.Sprintf("duplicate field %q", s), true
				}
			}
			if f.n == maxNames {
				return "", false
			}
			f.names[f.n] = s
			f.n++
			if depth == 1 && !known[string(s)] {
				for k := range known {
					if strings.EqualFold(k, string(s)) {
						return fmt.Sprintf("unknown field %q (did you mean %q? names are case-sensitive)", s, k), true
					}
				}
			}
		}
	}
	return "", true
}

var fieldNameCache sync.Map // reflect.Type → map[string]bool

// fieldNames returns the JSON names of the struct v points to.
func fieldNames(v any) map[string]bool {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if m, ok := fieldNameCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	if t.Kind() == reflect.Struct {
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch name {
			case "-":
				continue
			case "":
				name = f.Name
			}
			m[name] = true
		}
	}
	fieldNameCache.Store(t, m)
	return m
}
