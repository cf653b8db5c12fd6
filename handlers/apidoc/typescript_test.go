package apidoc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/internal/fixtures/devenv"
)

// TestTheTypeScriptLibraryMatchesTheDocument writes the served document's
// schemas as TypeScript interfaces and compiles clients/typescript/wire/
// wire.check.ts against them and the library's own interfaces with the
// library's compiler (pinned in clients/typescript/wire/package-lock.json,
// installed outside the checkout): a field one side has and the other
// lacks, or a type the other side cannot take, fails with the compiler's
// message naming it.
func TestTheTypeScriptLibraryMatchesTheDocument(t *testing.T) {
	lib, err := filepath.Abs(filepath.Join("..", "..", "clients", "typescript"))
	if err != nil {
		t.Fatal(err)
	}
	tsc := installWireTools(t, filepath.Join(lib, "wire"))
	doc, err := openapi3.NewLoader().LoadFromData(handlers.OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	decls, err := typeScriptOf(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "openapi.d.ts"), decls, 0o600); err != nil {
		t.Fatal(err)
	}
	// The library's own settings (clients/typescript/tsconfig.json), with
	// the document's module mapped to the file written above.
	tsconfig := map[string]any{
		"compilerOptions": map[string]any{
			"target": "ES2022", "module": "ESNext", "moduleResolution": "Bundler", "lib": []string{"ES2022"},
			"types": []string{"node"}, "typeRoots": []string{filepath.Join(tsc, "..", "..", "..", "@types")},
			"strict": true, "exactOptionalPropertyTypes": true, "noEmit": true, "skipLibCheck": false,
			"paths": map[string][]string{"keybroker-openapi": {filepath.Join(dir, "openapi.d.ts")}},
		},
		"files": []string{filepath.Join(lib, "wire", "wire.check.ts")},
	}
	b, err := json.Marshal(tsconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	node, err := devenv.FindTool("node")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, tsc, "-p", filepath.Join(dir, "tsconfig.json"), "--pretty", "false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the TypeScript library's wire types disagree with the OpenAPI document (tsc: %v):\n%s\nthe document's types:\n%s", err, out, decls)
	}
}

// installWireTools installs the pinned compiler (and Node's types) of
// clients/typescript/wire into the tools folder, once per lock file, and
// returns tsc's script.
func installWireTools(t *testing.T, wire string) string {
	t.Helper()
	npm, err := devenv.FindTool("npm")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join(wire, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(wire, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(devenv.ToolsDir(), "npm-wire-check")
	tsc := filepath.Join(prefix, "node_modules", "typescript", "bin", "tsc")
	if have, err := os.ReadFile(filepath.Join(prefix, "package-lock.json")); err == nil && bytes.Equal(have, lock) {
		if _, err := os.Stat(tsc); err == nil {
			return tsc
		}
	}
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"package.json": manifest, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(prefix, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = prefix
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", prefix, err, out)
	}
	return tsc
}

// typeScriptOf writes the document's component schemas as TypeScript
// declarations: an interface per object schema (optional unless
// required), literal unions for enums, "| null" when nullable.
func typeScriptOf(doc *openapi3.T) ([]byte, error) {
	var names []string
	for name := range doc.Components.Schemas {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("// Written from handlers/openapi.json by handlers/apidoc's tests.\n")
	for _, name := range names {
		s := doc.Components.Schemas[name].Value
		if !s.Type.Is("object") || s.Properties == nil {
			ts, err := tsType(doc.Components.Schemas[name])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(&b, "export type %s = %s;\n", name, ts)
			continue
		}
		body, err := tsObject(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(&b, "export interface %s %s\n", name, body)
	}
	return []byte(b.String()), nil
}

func tsObject(s *openapi3.Schema) (string, error) {
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	var props []string
	for p := range s.Properties {
		props = append(props, p)
	}
	sort.Strings(props)
	var b strings.Builder
	b.WriteString("{\n")
	for _, p := range props {
		ts, err := tsType(s.Properties[p])
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		opt := "?"
		if required[p] {
			opt = ""
		}
		fmt.Fprintf(&b, "  %s%s: %s;\n", p, opt, ts)
	}
	b.WriteString("}")
	return b.String(), nil
}

func tsType(ref *openapi3.SchemaRef) (string, error) {
	if ref.Ref != "" {
		return strings.TrimPrefix(ref.Ref, "#/components/schemas/"), nil
	}
	s := ref.Value
	var ts string
	switch {
	case len(s.AllOf) == 1:
		inner, err := tsType(s.AllOf[0])
		if err != nil {
			return "", err
		}
		ts = inner
	case len(s.Enum) > 0:
		var lits []string
		for _, e := range s.Enum {
			if e == nil {
				lits = append(lits, "null")
				continue
			}
			lit, err := json.Marshal(e)
			if err != nil {
				return "", err
			}
			lits = append(lits, string(lit))
		}
		ts = strings.Join(lits, " | ")
	case s.Type.Is("string"):
		ts = "string"
	case s.Type.Is("integer"), s.Type.Is("number"):
		ts = "number"
	case s.Type.Is("boolean"):
		ts = "boolean"
	case s.Type.Is("array"):
		items, err := tsType(s.Items)
		if err != nil {
			return "", err
		}
		ts = "(" + items + ")[]"
	case s.Type.Is("object") && s.Properties != nil:
		obj, err := tsObject(s)
		if err != nil {
			return "", err
		}
		ts = obj
	case s.Type.Is("object") && s.AdditionalProperties.Schema != nil:
		v, err := tsType(s.AdditionalProperties.Schema)
		if err != nil {
			return "", err
		}
		ts = "Record<string, " + v + ">"
	case s.Type == nil || s.Type.Is("object"):
		ts = "unknown"
	default:
		return "", fmt.Errorf("no TypeScript type for schema type %v", s.Type)
	}
	if s.Nullable && !strings.Contains(ts, "null") {
		ts += " | null"
	}
	return ts, nil
}
