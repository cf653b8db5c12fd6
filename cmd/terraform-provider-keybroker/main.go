// Command terraform-provider-keybroker is the Terraform provider binary; it
// only serves the provider implemented in package terraform.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/keybroker/keybroker/internal/runtime/buildinfo"
	"github.com/keybroker/keybroker/terraform"
)

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers such as delve")
	flag.Parse()
	err := providerserver.Serve(context.Background(), terraform.New(buildinfo.Get().Version), providerserver.ServeOpts{
		Address: "registry.terraform.io/keybroker/keybroker",
		Debug:   *debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
