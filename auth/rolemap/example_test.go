package rolemap_test

import (
	"fmt"
	"maps"
	"slices"

	"github.com/keybroker/keybroker/auth/rolemap"
)

func ExampleMap_Grants() {
	m, err := rolemap.Parse([]byte(`
rules:
  - group: kb-operators
    operator: true
  - group: "kb-ws-{ws}-admin"
    admin: {workspace: "{ws}"}
  - group: "kb-ws-{ws}-reader"
    reader: {workspace: "{ws}"}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	// The claims of a verified ID token, as encoding/json decodes them.
	g := m.Grants(map[string]any{
		"sub":    "00u1",
		"groups": []any{"kb-ws-payments-reader", "kb-ws-payments-admin", "kb-ws-search-reader", "staff"},
	})
	fmt.Println("operator:", g.Operator != nil)
	for _, ws := range slices.Sorted(maps.Keys(g.Workspaces)) {
		fmt.Printf("%s of workspace %s (%s)\n", g.Workspaces[ws].Role, ws, g.Workspaces[ws].From)
	}
	// Output:
	// operator: false
	// admin of workspace payments (rules[1]: group kb-ws-payments-admin)
	// reader of workspace search (rules[2]: group kb-ws-search-reader)
}

func ExampleParse() {
	_, err := rolemap.Parse([]byte(`
rules:
  - group: "kb-ws-{ws}-admin"
    admin: {organization: "{ws}"}
`))
	fmt.Println(err)
	// Output:
	// invalid role mapping: rules[0] (group "kb-ws-{ws}-admin"): admin.organization "{ws}": {ws} captures a workspace id; use {org} for an organization
}
