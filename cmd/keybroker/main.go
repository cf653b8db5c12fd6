// Command keybroker is the one keybroker binary: the HTTP server (serve), a
// local environment for development (dev) and the operator commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		// Errors of the API client already start with "keybroker: ".
		fmt.Fprintln(os.Stderr, "keybroker:", strings.TrimPrefix(err.Error(), "keybroker: "))
		os.Exit(1)
	}
}
