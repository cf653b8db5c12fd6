package testenv

import (
	"bufio"
	"io"
	"os"

	"github.com/keybroker/keybroker/internal/devenv"
)

// redactStdout passes everything the tests print (t.Log, failure messages
// quoting a child's output, the servers' log tails) through
// devenv.Redact: the test log of a run never shows a bearer token, a Vault
// token or a database password, even when a test fails and prints what it
// saw. It returns the function that restores stdout and waits for the
// filter to drain.
func redactStdout() func() {
	real := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	os.Stdout = w
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadString('\n')
			if len(line) > 0 {
				_, _ = io.WriteString(real, devenv.Redact(line))
			}
			if err != nil {
				return
			}
		}
	}()
	return func() {
		os.Stdout = real
		w.Close()
		<-done
	}
}
