// Package apidoc writes keybroker's OpenAPI document (handlers/openapi.json)
// from the two things that define the wire contract: the route table of
// package handlers (handlers.Routes: paths, methods, parameters, answers)
// and the request and answer types of package client, which the handlers
// encode and decode (their JSON fields, types, omitempty and Go comments).
// What Go types cannot say (enums, limits, API-facing descriptions) is in
// fields.go, checked against the types. `make generate` writes the
// document; `make lint` and this package's tests fail when it is stale.
package apidoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/handlers"
)

const clientPkg = "github.com/keybroker/keybroker/client"

// schemaNames renames a Go type in the document.
var schemaNames = map[string]string{"ErrorBody": "Error"}

// pathParams describe the path parameters by name, unless a route
// describes its own.
var pathParams = map[string]string{
	"ws":       "workspace id, [a-z0-9][a-z0-9_-]{0,62}",
	"org":      "organization id, [a-z0-9][a-z0-9_-]{0,62}",
	"provider": "provider id, [a-z0-9][a-z0-9_-]{0,62}",
	"key":      "key id, [a-z0-9][a-z0-9_-]{0,62}",
}

// standardErrors are the answers every authenticated /v1 route may give,
// written once in the document's components (under the names of
// standardNames) and referred to by every such route that does not say
// more of that status.
var standardErrors = []handlers.Answer{
	{Status: 400, Description: "bad input: malformed JSON, unknown field, invalid id, unknown provider"},
	{Status: 401, Description: "missing, unknown, revoked or expired token"},
	{Status: 403, Description: "the token's role may not do this"},
	{Status: 404, Description: "a route this server's mode does not serve"},
	{Status: 413, Description: "request body over 64 KiB"},
	{Status: 429, Description: "rate limited: the token is over its request rate, or the address failed authentication too often", Headers: []handlers.Header{{Name: "Retry-After", Description: "seconds"}}},
	{Status: 500, Description: "internal error"},
	{Status: 503, Description: "a dependency is unavailable", Headers: []handlers.Header{{Name: "Retry-After", Description: "seconds"}}},
}

var standardNames = map[int]string{400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotServed", 413: "TooLarge",
	429: "RateLimited", 500: "InternalError", 503: "Unavailable"}

// Document builds the OpenAPI document.
func Document() (*openapi3.T, error) {
	g := &generator{schemas: openapi3.Schemas{}, used: map[string]bool{}, types: map[string]reflect.Type{}}
	var err error
	if g.comments, err = clientComments(); err != nil {
		return nil, err
	}
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{Title: "keybroker", Version: "1.0.0",
			Description: "Vault-backed BYOK secrets broker. Every route but /healthz, /readyz, /v1/openapi.json and the admin page's files needs Authorization: Bearer <token>. Errors are {\"error\":{\"code\",\"message\"}}. This document is generated from the route table and the wire types (make generate); do not edit it."},
		Servers:  openapi3.Servers{{URL: "/"}},
		Security: openapi3.SecurityRequirements{{"bearer": []string{}}},
		Components: &openapi3.Components{
			SecuritySchemes: openapi3.SecuritySchemes{"bearer": {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")}},
		},
		Paths: openapi3.NewPaths(),
	}
	doc.Components.Responses = openapi3.ResponseBodies{}
	for _, a := range standardErrors {
		resp, err := g.response(a)
		if err != nil {
			return nil, err
		}
		doc.Components.Responses[standardNames[a.Status]] = &openapi3.ResponseRef{Value: resp}
	}
	seen := map[string]bool{}
	for _, r := range handlers.Routes() {
		path, names := openAPIPath(r.Path)
		if seen[r.Method+" "+path] {
			return nil, fmt.Errorf("apidoc: %s %s is twice in the route table", r.Method, path)
		}
		seen[r.Method+" "+path] = true
		op, err := g.operation(r, names)
		if err != nil {
			return nil, fmt.Errorf("apidoc: %s %s: %w", r.Method, r.Path, err)
		}
		item := doc.Paths.Value(path)
		if item == nil {
			item = &openapi3.PathItem{}
			doc.Paths.Set(path, item)
		}
		item.SetOperation(r.Method, op)
	}
	doc.Components.Schemas = g.schemas
	for key := range fieldDocs {
		if !g.used[key] {
			return nil, fmt.Errorf("apidoc: fields.go describes %s, which no wire type of the document has", key)
		}
	}
	return doc, nil
}

// JSON is the document as handlers/openapi.json holds it.
func JSON() ([]byte, error) {
	doc, err := Document()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("apidoc: encode: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("apidoc: indent: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

var pathParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// openAPIPath turns the router's /a/:b/*c into /a/{b}/{c} and names the
// parameters.
func openAPIPath(p string) (string, []string) {
	var names []string
	for _, m := range pathParam.FindAllStringSubmatch(p, -1) {
		names = append(names, m[1])
	}
	return pathParam.ReplaceAllString(p, "{$1}"), names
}

type generator struct {
	schemas  openapi3.Schemas
	comments map[string]string // "Type" and "Type.Field" → Go doc comment
	used     map[string]bool   // fieldDocs keys applied
	types    map[string]reflect.Type
}

func (g *generator) operation(r handlers.Route, pathNames []string) (*openapi3.Operation, error) {
	op := &openapi3.Operation{OperationID: r.ID, Summary: r.Summary, Description: r.Description, Responses: openapi3.NewResponses()}
	if r.Public {
		op.Security = &openapi3.SecurityRequirements{}
	}
	own := map[string]handlers.Param{}
	for _, p := range r.Params {
		if p.In == "path" {
			own[p.Name] = p
		}
	}
	for _, name := range pathNames {
		p, ok := own[name]
		if !ok {
			desc, known := pathParams[name]
			if !known {
				return nil, fmt.Errorf("path parameter %q has no description (pathParams or the route's Params)", name)
			}
			p = handlers.Param{Name: name, In: "path", Description: desc}
		}
		delete(own, name)
		op.Parameters = append(op.Parameters, parameter(p, true))
	}
	if len(own) > 0 {
		return nil, fmt.Errorf("describes path parameters the path does not have: %v", own)
	}
	for _, p := range r.Params {
		if p.In != "path" {
			op.Parameters = append(op.Parameters, parameter(p, p.Required))
		}
	}
	switch {
	case r.RawBody:
		op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithContent(openapi3.Content{"*/*": openapi3.NewMediaType().WithSchema(&openapi3.Schema{})})}
	case r.Body != nil:
		s, err := g.schemaOf(reflect.TypeOf(r.Body))
		if err != nil {
			return nil, err
		}
		op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithContent(openapi3.NewContentWithJSONSchemaRef(s))}
	}
	have := map[int]bool{}
	for _, a := range r.Answers {
		resp, err := g.response(a)
		if err != nil {
			return nil, err
		}
		key := "default"
		if a.Status != 0 {
			if http.StatusText(a.Status) == "" {
				return nil, fmt.Errorf("answer status %d is not an HTTP status", a.Status)
			}
			key = strconv.Itoa(a.Status)
		}
		if op.Responses.Value(key) != nil {
			return nil, fmt.Errorf("answer %s is listed twice", key)
		}
		op.Responses.Set(key, &openapi3.ResponseRef{Value: resp})
		have[a.Status] = true
	}
	if !r.Public && strings.HasPrefix(r.Path, "/v1/") {
		for _, a := range standardErrors {
			if !have[a.Status] {
				op.Responses.Set(strconv.Itoa(a.Status), &openapi3.ResponseRef{Ref: "#/components/responses/" + standardNames[a.Status]})
			}
		}
	}
	return op, nil
}

func parameter(p handlers.Param, required bool) *openapi3.ParameterRef {
	s := openapi3.NewStringSchema()
	if p.Integer {
		s = openapi3.NewIntegerSchema()
	}
	s.Format, s.Pattern = p.Format, p.Pattern
	for _, e := range p.Enum {
		s.Enum = append(s.Enum, e)
	}
	if p.MaxLength > 0 {
		s.WithMaxLength(int64(p.MaxLength))
	}
	if p.Minimum != 0 || p.Maximum != 0 {
		s.WithMin(float64(p.Minimum)).WithMax(float64(p.Maximum))
	}
	return &openapi3.ParameterRef{Value: &openapi3.Parameter{Name: p.Name, In: p.In, Description: p.Description, Required: required,
		Schema: openapi3.NewSchemaRef("", s)}}
}

func (g *generator) response(a handlers.Answer) (*openapi3.Response, error) {
	resp := openapi3.NewResponse().WithDescription(a.Description)
	ct := a.ContentType
	if ct == "" {
		ct = "application/json"
	}
	var body *openapi3.SchemaRef
	switch b := a.Body.(type) {
	case handlers.NoBody:
	case handlers.AnyObject:
		body = openapi3.NewSchemaRef("", openapi3.NewObjectSchema())
	case handlers.Text:
		body = openapi3.NewSchemaRef("", openapi3.NewStringSchema())
	case nil:
		if a.Status >= 400 || a.Status == 0 {
			return g.response(handlers.Answer{Status: a.Status, Description: a.Description, Body: client.ErrorBody{}, Headers: a.Headers})
		}
	default:
		s, err := g.schemaOf(reflect.TypeOf(b))
		if err != nil {
			return nil, err
		}
		body = s
	}
	if body != nil {
		resp.Content = openapi3.Content{ct: openapi3.NewMediaType().WithSchemaRef(body)}
	}
	for _, h := range a.Headers {
		if resp.Headers == nil {
			resp.Headers = openapi3.Headers{}
		}
		s := openapi3.NewStringSchema()
		for _, e := range h.Enum {
			s.Enum = append(s.Enum, e)
		}
		resp.Headers[h.Name] = &openapi3.HeaderRef{Value: &openapi3.Header{Parameter: openapi3.Parameter{Description: h.Description, Schema: openapi3.NewSchemaRef("", s)}}}
	}
	return resp, nil
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	rawJSONType = reflect.TypeOf(json.RawMessage{})
)

// schemaOf is the schema of a Go type: a reference to a component for a
// named struct (of package client, or a type of keybroker's that a client
// type holds; added on first use), inline otherwise.
func (g *generator) schemaOf(t reflect.Type) (*openapi3.SchemaRef, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return openapi3.NewSchemaRef("", openapi3.NewDateTimeSchema()), nil
	case t == rawJSONType:
		return openapi3.NewSchemaRef("", &openapi3.Schema{}), nil
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return openapi3.NewSchemaRef("", openapi3.NewBytesSchema()), nil
	case t.Kind() == reflect.Struct:
		if t.Name() == "" || !strings.HasPrefix(t.PkgPath(), "github.com/keybroker/keybroker/") {
			return nil, fmt.Errorf("%s is not a named wire type of keybroker (package client)", t)
		}
		name := t.Name()
		if n, ok := schemaNames[name]; ok {
			name = n
		}
		if other, ok := g.types[name]; ok && other != t {
			return nil, fmt.Errorf("two wire types are named %s: %s and %s", name, other, t)
		}
		g.types[name] = t
		if _, done := g.schemas[name]; !done {
			g.schemas[name] = nil // a cycle refers to it meanwhile
			s, err := g.object(t, name)
			if err != nil {
				return nil, err
			}
			g.schemas[name] = openapi3.NewSchemaRef("", s)
		}
		return openapi3.NewSchemaRef("#/components/schemas/"+name, nil), nil
	}
	switch t.Kind() {
	case reflect.String:
		return openapi3.NewSchemaRef("", openapi3.NewStringSchema()), nil
	case reflect.Bool:
		return openapi3.NewSchemaRef("", openapi3.NewBoolSchema()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return openapi3.NewSchemaRef("", openapi3.NewIntegerSchema()), nil
	case reflect.Float32, reflect.Float64:
		return openapi3.NewSchemaRef("", openapi3.NewFloat64Schema()), nil
	case reflect.Slice, reflect.Array:
		items, err := g.schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		arr := openapi3.NewArraySchema()
		arr.Items = items
		return openapi3.NewSchemaRef("", arr), nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: a JSON object needs string keys", t)
		}
		v, err := g.schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		s := openapi3.NewObjectSchema()
		s.AdditionalProperties = openapi3.AdditionalProperties{Schema: v}
		return openapi3.NewSchemaRef("", s), nil
	case reflect.Interface:
		return openapi3.NewSchemaRef("", &openapi3.Schema{}), nil
	}
	return nil, fmt.Errorf("%s has no JSON schema here", t)
}

// object is the schema of a wire struct: its JSON fields (embedded
// structs' included), required unless omitempty or omitzero, null allowed
// for a pointer that is always sent, no other field allowed.
func (g *generator) object(t reflect.Type, name string) (*openapi3.Schema, error) {
	s := openapi3.NewObjectSchema().WithoutAdditionalProperties()
	s.Properties = openapi3.Schemas{}
	s.Description = g.comments[t.Name()]
	if d, ok := fieldDocs[name]; ok {
		g.used[name] = true
		s.Description = d.Description
	}
	if err := g.fields(t, t, name, s); err != nil {
		return nil, err
	}
	sort.Strings(s.Required)
	return s, nil
}

func (g *generator) fields(t, owner reflect.Type, name string, s *openapi3.Schema) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		jsonName, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && !hasTag {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if err := g.fields(et, et, name, s); err != nil {
				return err
			}
			continue
		}
		if jsonName == "" {
			jsonName = f.Name
		}
		ref, err := g.schemaOf(f.Type)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
		}
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		if !optional {
			s.Required = append(s.Required, jsonName)
		}
		d, ok := fieldDocs[name+"."+jsonName]
		if ok {
			g.used[name+"."+jsonName] = true
		}
		desc := g.comments[owner.Name()+"."+f.Name]
		if d.Description != "" {
			desc = d.Description
		}
		nullable := f.Type.Kind() == reflect.Pointer && !optional || d.Nullable
		if ref.Ref != "" {
			// A reference cannot carry siblings in OpenAPI 3.0: keep it bare
			// unless something must be said of the field.
			if desc == "" && !nullable {
				s.Properties[jsonName] = ref
				continue
			}
			ref = openapi3.NewSchemaRef("", &openapi3.Schema{AllOf: openapi3.SchemaRefs{ref}})
		} else {
			ref = openapi3.NewSchemaRef("", copySchema(ref.Value))
		}
		v := ref.Value
		v.Description, v.Nullable = desc, nullable
		if d.Enum != nil {
			v.Enum = d.Enum
		}
		v.Min, v.Max = d.Minimum, d.Maximum
		if d.MaxLength > 0 {
			v.WithMaxLength(int64(d.MaxLength))
		}
		if d.MaxItems > 0 {
			v.WithMaxItems(int64(d.MaxItems))
		}
		v.MinItems = d.MinItems
		if d.Pattern != "" {
			v.Pattern = d.Pattern
		}
		if d.Format != "" {
			v.Format = d.Format
		}
		if (d.ItemMaxLength > 0 || d.ItemMinLength > 0) && v.Items != nil && v.Items.Value != nil {
			items := copySchema(v.Items.Value)
			if d.ItemMaxLength > 0 {
				items.WithMaxLength(int64(d.ItemMaxLength))
			}
			items.MinLength = d.ItemMinLength
			v.Items = openapi3.NewSchemaRef("", items)
		}
		s.Properties[jsonName] = ref
	}
	return nil
}

func copySchema(s *openapi3.Schema) *openapi3.Schema {
	c := *s
	return &c
}

// clientComments reads the Go doc comments of package client's types and
// their fields, the descriptions of schemas fields.go does not describe.
func clientComments() (map[string]string, error) {
	pkg, err := build.Import(clientPkg, ".", build.FindOnly)
	if err != nil {
		return nil, fmt.Errorf("apidoc: find package client: %w", err)
	}
	entries, err := os.ReadDir(pkg.Dir)
	if err != nil {
		return nil, fmt.Errorf("apidoc: read package client: %w", err)
	}
	fset := token.NewFileSet()
	out := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("apidoc: read package client: %w", err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				text := ts.Doc.Text()
				if text == "" && len(gd.Specs) == 1 {
					text = gd.Doc.Text()
				}
				out[ts.Name.Name] = sentence(text)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, field := range st.Fields.List {
					text := field.Doc.Text()
					if text == "" {
						text = field.Comment.Text()
					}
					for _, n := range field.Names {
						out[ts.Name.Name+"."+n.Name] = sentence(text)
					}
				}
			}
		}
	}
	return out, nil
}

// sentence joins a comment's lines.
func sentence(text string) string {
	return strings.Join(strings.Fields(text), " ")
}
