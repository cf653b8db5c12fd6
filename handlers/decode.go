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

	"github.com/keybroker/keybroker/client"
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
	return withBody(c, func(body []byte) *Error { return decodeBody(body, v, true) })
}

// decodeResolveRequest is decodeJSON for the resolve route: the body every
// client sends is parsed by hand (parseResolveRequest), anything else as
// decodeJSON decodes it.
func decodeResolveRequest(c *gin.Context, req *client.ResolveRequest) *Error {
	return withBody(c, func(body []byte) *Error {
		if parseResolveRequest(body, req) {
			return nil
		}
		*req = client.ResolveRequest{}
		return decodeBody(body, req, true)
	})
}

// withBody reads the request's body into a pooled buffer and gives it to
// decode; every string decoded from it is a copy, so the buffer can serve
// the next request.
func withBody(c *gin.Context, decode func(body []byte) *Error) *Error {
	buf := bodyBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledBody {
			bodyBuffers.Put(buf)
		}
	}()
	body, err := readBody((*buf)[:0], c.Request.Body)
	*buf = body[:0]
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return errBodyTooLarge
		}
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "could not read the request body"}
	}
	return decode(body)
}

// decodeBody is decodeJSON of a body read; fast allows json.Unmarshal
// where the names are already checked (decodeJSON always allows it; the
// tests hold both ways to the same answers).
func decodeBody(body []byte, v any, fast bool) *Error {
	info := fieldsOf(v)
	msg, decided, allKnown := quickCheckNames(body, info.names)
	if msg != "" {
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: msg}
	}
	if fast && decided && allKnown && info.flat {
		// The names are checked (each known exactly, none twice) and the
		// struct holds no nested object whose names would need checking:
		// json.Unmarshal decodes the rest, with no decoder to allocate, and
		// refuses trailing data itself. A body it refuses goes on to the
		// decoder below, which says why in the same words as always.
		if json.Unmarshal(body, v) == nil {
			return nil
		}
		reflect.ValueOf(v).Elem().SetZero()
	}
	if !decided {
		msg = checkNames(body, info.names)
	}
	if msg != "" {
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: msg}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	return decodeError(err)
}

// decodeError says what is wrong with a body the decoder refused, without
// quoting it.
func decodeError(err error) *Error {
	msg := "request body must be one JSON object"
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

var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledBody = 16 << 10

// readBody appends r to buf (io.ReadAll into a buffer that is kept).
func readBody(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
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
//
// allKnown says that every top-level name is one of known exactly.
func quickCheckNames(body []byte, known map[string]bool) (msg string, decided, allKnown bool) {
	const maxDepth, maxNames = 8, 16
	type frame struct {
		names     [maxNames][]byte
		n         int
		object    bool
		expectKey bool
	}
	var stack [maxDepth]frame
	depth := 0
	allKnown = true
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if depth == maxDepth {
				return "", false, false
			}
			stack[depth] = frame{object: c == '{', expectKey: c == '{'}
			depth++
		case '}', ']':
			if depth == 0 {
				return "", false, false
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
					return "", false, false
				}
				end++
			}
			if end == len(body) {
				return "", true, false // unterminated: the decoder says so
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
					return fmt.Sprintf("duplicate field %q", s), true, false
				}
			}
			if f.n == maxNames {
				return "", false, false
			}
			f.names[f.n] = s
			f.n++
			if depth == 1 && !known[string(s)] {
				allKnown = false
				for k := range known {
					if strings.EqualFold(k, string(s)) {
						return fmt.Sprintf("unknown field %q (did you mean %q? names are case-sensitive)", s, k), true, false
					}
				}
			}
		}
	}
	return "", true, allKnown
}

var fieldCache sync.Map // reflect.Type → *fields

// fields are what decodeJSON knows of a request type: its JSON names, and
// whether it is flat (fields of strings, numbers, booleans, pointers to
// them and slices of strings only: no nested object).
type fields struct {
	names map[string]bool
	flat  bool
}

// fieldsOf returns the fields of the struct v points to.
func fieldsOf(v any) *fields {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if f, ok := fieldCache.Load(t); ok {
		return f.(*fields)
	}
	info := &fields{names: map[string]bool{}, flat: t.Kind() == reflect.Struct}
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
			info.names[name] = true
			if f.Anonymous || !scalar(f.Type) {
				info.flat = false
			}
		}
	}
	fieldCache.Store(t, info)
	return info
}

// scalar: a string, number or boolean, a pointer to one, or a slice of
// strings (not []byte, which json.RawMessage is).
func scalar(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice {
		return t.Elem().Kind() == reflect.String
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}
