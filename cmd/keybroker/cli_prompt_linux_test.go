//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/keybroker/keybroker/client"
	"github.com/keybroker/keybroker/internal/fixtures/testenv"
)

// openPTY opens a pseudo-terminal: the side a person types on (ptmx) and
// the terminal a command reads (pts).
func openPTY(t *testing.T) (ptmx, pts *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var n, unlock uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// runOnTerminal runs keybroker with a terminal as stdin on which typed was
// typed beforehand, and returns stdout and stderr.
func runOnTerminal(t *testing.T, env []string, typed string, args ...string) (string, string) {
	t.Helper()
	ptmx, pts := openPTY(t)
	if _, err := ptmx.WriteString(typed); err != nil {
		t.Fatal(err)
	}
	cmd := keybroker(args...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("keybroker %s: %v, stdout=%s stderr=%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

func TestCLIPromptsForEachSecretFieldOnATerminal(t *testing.T) {
	api := startCLIServer(t, "ws1")

	// Bedrock's secret fields, prompted in the schema's order: the key
	// pair typed, the Bedrock API key left out with Enter.
	accessKeyID := "AKIA" + strings.ToUpper(testenv.RandomID(t) + testenv.RandomID(t))[:16]
	secretKey := (testenv.RandomID(t) + testenv.RandomID(t) + testenv.RandomID(t) + testenv.RandomID(t))[:40]
	out, msg := runOnTerminal(t, api, accessKeyID+"\n"+secretKey+"\n\n",
		"keys", "add", "--json", "--workspace", "ws1", "--provider", "bedrock", "--field", "region=eu-west-1")
	noSecret(t, "keys add on a terminal", []string{out, msg}, accessKeyID, secretKey)
	for _, prompt := range []string{"bedrock's accessKeyId (", "bedrock's secretAccessKey (", "bedrock's bedrockApiKey ("} {
		if !strings.Contains(msg, prompt) {
			t.Fatalf("keys add prompted %q, not %q", msg, prompt)
		}
	}
	var meta client.KeyMetadata
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.Kind != "aws_bedrock" || meta.Fields["region"] != "eu-west-1" ||
		meta.Masked["accessKeyId"] != accessKeyID[:6]+"..."+accessKeyID[16:] || meta.Masked["secretAccessKey"] == "" || meta.Masked["bedrockApiKey"] != "" {
		t.Fatalf("keys add on a terminal printed %q (%v)", out, err)
	}

	// An api_key provider prompts for its key as it always has.
	k := "sk-proj-cli-" + testenv.RandomID(t) + testenv.RandomID(t)
	out, msg = runOnTerminal(t, api, k+"\n", "keys", "rotate", "--json", "--workspace", "ws1", "--provider", "openai")
	noSecret(t, "keys rotate on a terminal", []string{out, msg}, k)
	meta = client.KeyMetadata{}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || !strings.Contains(msg, "API key for openai (not echoed)") || meta.MaskedKey != k[:6]+"..."+k[len(k)-4:] {
		t.Fatalf("keys rotate on a terminal printed %q and said %q (%v)", out, msg, err)
	}
}
