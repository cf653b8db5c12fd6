// Command keybroker-openapi prints keybroker's OpenAPI document, generated
// from the route table and the wire types (package handlers/apidoc).
// `make generate` writes it to handlers/openapi.json, which the server
// embeds and serves at /v1/openapi.json.
package main

import (
	"fmt"
	"os"

	"github.com/keybroker/keybroker/handlers/apidoc"
)

func main() {
	b, err := apidoc.JSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, "keybroker-openapi:", err)
		os.Exit(1)
	}
}
