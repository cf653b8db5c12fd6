package handlers_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// handlers and auth speak in the records of auth and broker, never in
// PostgreSQL rows: neither reaches package store, directly or through
// another package (docs/architecture.md: arrows point down).
func TestHandlersAndAuthDoNotReachTheStore(t *testing.T) {
	const store = "github.com/keybroker/keybroker/store"
	for _, pkg := range []string{"github.com/keybroker/keybroker/handlers", "github.com/keybroker/keybroker/auth"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, "github.com/keybroker/keybroker/broker") {
			t.Fatalf("go list -deps %s does not list broker: %s", pkg, out)
		}
		if slices.Contains(deps, store) {
			t.Errorf("%s reaches %s", pkg, store)
		}
	}
}
