package apidoc_test

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keybroker/keybroker/handlers"
	"github.com/keybroker/keybroker/handlers/apidoc"
	"github.com/keybroker/keybroker/internal/runtime/proxy"
)

// TestTheDocumentIsValidOpenAPI loads the generated document as a client
// would and validates it with kin-openapi.
func TestTheDocumentIsValidOpenAPI(t *testing.T) {
	b, err := apidoc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the generated document is not valid OpenAPI: %v", err)
	}
	// Every authenticated /v1 operation describes the error answers and
	// the bearer scheme applies to it; the public ones say they need none.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security != nil {
				continue
			}
			for _, status := range []int{401, 403, 429, 500} {
				if op.Responses.Status(status) == nil && strings.HasPrefix(path, "/v1/") {
					t.Errorf("%s %s does not document %d", method, path, status)
				}
			}
		}
	}
}

// TestTheCommittedDocumentIsCurrent: handlers/openapi.json (what the
// server serves) is what the route table and the wire types generate.
func TestTheCommittedDocumentIsCurrent(t *testing.T) {
	b, err := apidoc.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, handlers.OpenAPIDocument) {
		t.Fatal("handlers/openapi.json is stale: run `make generate` and commit it")
	}
}

type stubKeys struct{ handlers.KeyService }

func (stubKeys) CacheTTL() time.Duration { return time.Minute }

type stubTokens struct{ handlers.Authenticator }

type stubCalls struct{ handlers.ProxyCallStore }

// TestEveryServedRouteIsDocumented compares, both ways, the routes a
// router registers in each mode with everything configured against the
// document's operations: a route added to the router outside the route
// table, or an operation the router does not serve, fails.
func TestEveryServedRouteIsDocumented(t *testing.T) {
	doc, err := apidoc.Document()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, mode := range []handlers.Mode{handlers.ModeAll, handlers.ModeAdmin, handlers.ModeResolver, handlers.ModeProxy} {
		r := handlers.NewRouter(handlers.Options{Mode: mode, Keys: stubKeys{}, Tokens: stubTokens{}, ProxyCalls: stubCalls{}, Proxy: &proxy.Proxy{}})
		for _, rt := range r.Routes() {
			key := rt.Method + " " + ginToOpenAPI(rt.Path)
			served[key] = true
			if !documented[key] {
				t.Errorf("mode %s serves %s, which the document does not describe", mode, key)
			}
		}
	}
	var missing []string
	for key := range documented {
		if !served[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the document describes routes no mode serves: %v", missing)
	}
	if len(served) < 60 {
		t.Fatalf("the routers served %d routes; keybroker has more than that", len(served))
	}
}

func ginToOpenAPI(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// TestPoolRoutesAreDescribedOnceForEveryScope: the three scopes' pool
// routes have the same operations, answers and body schemas.
func TestPoolRoutesAreDescribedOnceForEveryScope(t *testing.T) {
	doc, err := apidoc.Document()
	if err != nil {
		t.Fatal(err)
	}
	shape := func(prefix string) map[string]string {
		out := map[string]string{}
		for path, item := range doc.Paths.Map() {
			rest, ok := strings.CutPrefix(path, prefix)
			if !ok || !strings.HasPrefix(rest, "/providers/") && rest != "/audit" {
				continue
			}
			for method, op := range item.Operations() {
				var statuses []string
				for status := range op.Responses.Map() {
					statuses = append(statuses, status)
				}
				sort.Strings(statuses)
				out[method+" "+rest] = strings.Join(statuses, ",")
			}
		}
		return out
	}
	ws := shape("/v1/workspaces/{ws}")
	if len(ws) < 10 {
		t.Fatalf("the workspace pool has %d operations", len(ws))
	}
	for _, prefix := range []string{"/v1/organizations/{org}", "/v1/hosted"} {
		other := shape(prefix)
		for k, v := range ws {
			if other[k] != v {
				t.Errorf("%s%s answers %q, the workspace's %q", prefix, k, other[k], v)
			}
		}
		if len(other) != len(ws) {
			t.Errorf("%s has %d pool operations, workspaces %d", prefix, len(other), len(ws))
		}
	}
}
