package providers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// The models a request names, read as the provider will read them (the
// credential proxy checks them against a proxy token's models, and the
// first picks the key; a provider's ModelName turns each into its model
// id). A JSON
// body is walked once, strictly, as the admin API's decoder reads its
// bodies: one JSON object and nothing after it, no object at any depth
// with two members of one name (a provider whose parser keeps the first
// would serve another model than the last one checked here), and, in the
// objects that name a model, no member whose name is "model" escaped or in
// another letter case ("Model", "mod\u0065l": one parser's model is
// another's unknown field). The walk does not decode what it steps over:
// a chat body's messages are most of its bytes.

// ModelFields are the places of an endpoint's body that name models
// (providers.Endpoint.Models), compiled for the walk. A place is a path:
// "" is the top-level object, "tools" its member tools, "tools[]" each
// element of that array, "tools[].model" the member model of each.
type ModelFields struct {
	// children[parent][name] is the path of member name of an object at
	// parent, for the members on the way to a model; elem[path] the path
	// of the elements of an array at path.
	children map[string]map[string]string
	elem     map[string]string
	// leaves are the paths that name a model; holders the paths of the
	// objects that hold one, with the member names that do.
	leaves  map[string]bool
	holders map[string][]string
	// required[path]: an object at path whose member when is the string
	// is must name its model (leaf): without one, the provider picks a
	// default the token's list may not hold ("tools[type=image_generation].model").
	required map[string]requirement
}

type requirement struct{ when, is, leaf string }

func CompileModelFields(specs []string) (*ModelFields, error) {
	f := &ModelFields{children: map[string]map[string]string{}, elem: map[string]string{}, leaves: map[string]bool{}, holders: map[string][]string{},
		required: map[string]requirement{}}
	for _, spec := range specs {
		parts := strings.Split(spec, ".")
		path := ""
		for i, part := range parts {
			var cond string
			if open := strings.IndexByte(part, '['); open >= 0 && strings.HasSuffix(part, "]") && part[open:] != "[]" {
				cond = part[open+1 : len(part)-1]
				part = part[:open] + "[]"
			}
			name, array := strings.CutSuffix(part, "[]")
			when, is, _ := strings.Cut(cond, "=")
			if !IsName(name) || (array && i == len(parts)-1) || cond != "" && (i != len(parts)-2 || !IsName(when) || is == "") {
				return nil, fmt.Errorf("the model field %q is not a path of names (tools[].model, tools[type=x].model)", spec)
			}
			if cond != "" {
				f.required[path+childSep(path)+name+"[]"] = requirement{when: when, is: is, leaf: parts[len(parts)-1]}
			}
			child := path + childSep(path) + name
			if f.children[path] == nil {
				f.children[path] = map[string]string{}
			}
			f.children[path][name] = child
			if i == len(parts)-1 {
				f.leaves[child] = true
				f.holders[path] = append(f.holders[path], name)
				break
			}
			path = child
			if array {
				f.elem[path] = path + "[]"
				path += "[]"
			}
		}
	}
	return f, nil
}

func childSep(path string) string {
	if path == "" {
		return ""
	}
	return "."
}

// FoundModel is a model a body names: where, and its value ("" and
// !isString when the member is not a string; missing when a required
// model is not named at all).
type FoundModel struct {
	Field, Value string
	IsString     bool
	Missing      bool
}

// BodyProblem is why a body is refused: AboutModel when the model it
// names is ambiguous (403 model_not_allowed), else the body is not one
// well-formed JSON object (400 malformed_json).
type BodyProblem struct {
	Msg        string
	AboutModel bool
}

// IsJSON says whether a Content-Type declares JSON.
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// ReadModels walks body for the models fields names.
func ReadModels(body []byte, fields *ModelFields) ([]FoundModel, *BodyProblem) {
	w := walker{b: body, f: fields}
	w.space()
	if !w.peek('{') {
		return nil, &BodyProblem{Msg: "the request body must be one JSON object"}
	}
	if w.object("", true, 1) {
		w.space()
		if w.i != len(w.b) {
			w.fail("the request body has data after its JSON object", false)
		}
	}
	if w.problem != nil {
		return nil, w.problem
	}
	return w.found, nil
}

// maxDepth bounds the nesting of a body (encoding/json's own bound is
// 10,000; no provider's request comes near either).
const maxDepth = 512

// walker walks JSON bytes; every method leaves i past what it read.
type walker struct {
	b     []byte
	i     int
	f     *ModelFields
	found []FoundModel
	// names are the member names of the objects open, outermost first.
	names   [][]byte
	problem *BodyProblem
}

func (w *walker) fail(msg string, aboutModel bool) bool {
	if w.problem == nil {
		w.problem = &BodyProblem{Msg: msg, AboutModel: aboutModel}
	}
	return false
}

func (w *walker) malformed() bool { return w.fail("the request body is not valid JSON", false) }

func (w *walker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) peek(c byte) bool { return w.i < len(w.b) && w.b[w.i] == c }

func (w *walker) eat(c byte) bool {
	if w.peek(c) {
		w.i++
		return true
	}
	return false
}

// value steps over one value at path (tracked: path is on the way to a
// model).
func (w *walker) value(path string, tracked bool, depth int) bool {
	if depth > maxDepth {
		return w.fail(fmt.Sprintf("the request body is nested deeper than %d", maxDepth), false)
	}
	w.space()
	if w.i >= len(w.b) {
		return w.malformed()
	}
	switch w.b[w.i] {
	case '{':
		return w.object(path, tracked, depth)
	case '[':
		return w.array(path, tracked, depth)
	case '"':
		if _, _, ok := w.rawString(); !ok {
			return w.malformed()
		}
		return true
	case 't':
		return w.literal("true")
	case 'f':
		return w.literal("false")
	case 'n':
		return w.literal("null")
	}
	return w.number()
}

func (w *walker) object(path string, tracked bool, depth int) bool {
	w.i++ // {
	start := len(w.names)
	defer func() { w.names = w.names[:start] }()
	var many map[string]bool // the names, once an object has many
	var holds []string
	var req requirement
	var kind string // the value of req.when
	named := false  // req.leaf is a member
	if tracked {
		holds = w.f.holders[path]
		req = w.f.required[path]
	}
	// A required model that is not named is found missing.
	end := func() bool {
		if req.leaf != "" && kind == req.is && !named {
			w.found = append(w.found, FoundModel{Field: path + "." + req.leaf, Missing: true})
		}
		return true
	}
	w.space()
	if w.eat('}') {
		return end()
	}
	for {
		w.space()
		raw, escaped, ok := w.rawString()
		if !ok {
			return w.malformed()
		}
		name := raw[1 : len(raw)-1]
		if escaped || !utf8.Valid(name) {
			s, ok := unquote(raw)
			if !ok {
				return w.malformed()
			}
			name = []byte(s)
		}
		// A member of an object that names a model, called like the
		// model's member but not exactly: refused.
		for _, h := range holds {
			if bytes.EqualFold(name, []byte(h)) && (escaped || string(name) != h) {
				return w.fail(fmt.Sprintf("the body has a member %s: only %q, exactly and unescaped, names the model", quoteShort(string(raw)), h), true)
			}
		}
		if many != nil {
			if many[string(name)] {
				return w.duplicate(name, holds)
			}
			many[string(name)] = true
		} else {
			for _, prev := range w.names[start:] {
				if bytes.Equal(prev, name) {
					return w.duplicate(name, holds)
				}
			}
			w.names = append(w.names, name)
			if len(w.names)-start > 16 {
				many = make(map[string]bool, 32)
				for _, n := range w.names[start:] {
					many[string(n)] = true
				}
			}
		}
		child, childTracked := "", false
		if tracked {
			child, childTracked = w.f.children[path][string(name)]
		}
		w.space()
		if !w.eat(':') {
			return w.malformed()
		}
		w.space()
		if req.leaf != "" && string(name) == req.leaf {
			named = true
		}
		switch {
		case req.when != "" && string(name) == req.when && w.peek('"'):
			if kind, ok = w.str(); !ok {
				return w.malformed()
			}
		case childTracked && w.f.leaves[child] && w.peek('"'):
			s, ok := w.str()
			if !ok {
				return w.malformed()
			}
			w.found = append(w.found, FoundModel{Field: child, Value: s, IsString: true})
		case childTracked && w.f.leaves[child]:
			w.found = append(w.found, FoundModel{Field: child})
			if !w.value("", false, depth+1) {
				return false
			}
		default:
			if !w.value(child, childTracked, depth+1) {
				return false
			}
		}
		w.space()
		if w.eat(',') {
			continue
		}
		if w.eat('}') {
			return end()
		}
		return w.malformed()
	}
}

func (w *walker) duplicate(name []byte, holds []string) bool {
	for _, h := range holds {
		if string(name) == h {
			return w.fail(fmt.Sprintf("the body names %q twice: a provider may serve either", h), true)
		}
	}
	return w.fail(fmt.Sprintf("the request body has two members named %s in one object", quoteShort(string(name))), false)
}

func (w *walker) array(path string, tracked bool, depth int) bool {
	w.i++ // [
	elem, elemTracked := "", false
	if tracked {
		elem, elemTracked = w.f.elem[path]
	}
	w.space()
	if w.eat(']') {
		return true
	}
	for {
		if !w.value(elem, elemTracked, depth+1) {
			return false
		}
		w.space()
		if w.eat(',') {
			continue
		}
		if w.eat(']') {
			return true
		}
		return w.malformed()
	}
}

func (w *walker) literal(lit string) bool {
	if !bytes.HasPrefix(w.b[w.i:], []byte(lit)) {
		return w.malformed()
	}
	w.i += len(lit)
	return true
}

// number steps over a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (w *walker) number() bool {
	w.eat('-')
	switch {
	case w.eat('0'):
	case w.i < len(w.b) && w.b[w.i] >= '1' && w.b[w.i] <= '9':
		w.digits()
	default:
		return w.malformed()
	}
	if w.eat('.') && !w.digits() {
		return w.malformed()
	}
	if w.eat('e') || w.eat('E') {
		if !w.eat('+') {
			w.eat('-')
		}
		if !w.digits() {
			return w.malformed()
		}
	}
	return true
}

func (w *walker) digits() bool {
	start := w.i
	for w.i < len(w.b) && w.b[w.i] >= '0' && w.b[w.i] <= '9' {
		w.i++
	}
	return w.i > start
}

// rawString reads a string's bytes, quotes included; escaped says whether
// it holds an escape. False when there is no well-formed string here.
func (w *walker) rawString() (raw []byte, escaped, ok bool) {
	if !w.eat('"') {
		return nil, false, false
	}
	start := w.i - 1
	for w.i < len(w.b) {
		switch c := w.b[w.i]; {
		case c == '"':
			w.i++
			return w.b[start:w.i], escaped, true
		case c == '\\':
			escaped = true
			if w.i+1 >= len(w.b) {
				return nil, false, false
			}
			switch w.b[w.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				w.i += 2
			case 'u':
				if w.i+5 >= len(w.b) {
					return nil, false, false
				}
				for _, h := range w.b[w.i+2 : w.i+6] {
					if !isHexDigit(h) {
						return nil, false, false
					}
				}
				w.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			w.i++
		}
	}
	return nil, false, false
}

// str reads a string and unescapes it.
func (w *walker) str() (string, bool) {
	raw, escaped, ok := w.rawString()
	if !ok {
		return "", false
	}
	if !escaped && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	return unquote(raw)
}

// unquote reads a string with escapes (or bytes that are not UTF-8),
// rare in a name or a model, as a provider's parser would: through
// encoding/json, on those few bytes only.
func unquote(raw []byte) (string, bool) {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	return v, true
}

// IsName reports whether s is a name as the catalogue writes them: of a
// body member in an Endpoint's Models, of a wildcard in its Path ({model})
// — a letter or '_', then letters, digits and '_'.
func IsName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// quoteShort quotes a caller's word in a message, cut to 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(s, "?"))
}
