package policies

import (
	"embed"
	"fmt"
	"regexp"
	"strings"
)

//go:embed *.hcl
var files embed.FS

// The policies keybroker ships.
const (
	Writer = "keybroker-writer"
	Reader = "keybroker-reader"
)

// Names lists the policies in a stable order.
var Names = []string{Writer, Reader}

// validMount is what a mount path may look like here: segments of letters,
// digits, '-' and '_' (no quotes, globs or "+" that would change a rule).
var validMount = regexp.MustCompile(`^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`)

// Render returns the HCL of policy name for the KV v2 mount.
func Render(name, mount string) (string, error) {
	mount = strings.Trim(mount, "/")
	if !validMount.MatchString(mount) {
		return "", fmt.Errorf("policies: mount %q may contain only letters, digits, '-', '_' and '/'", mount)
	}
	b, err := files.ReadFile(name + ".hcl")
	if err != nil {
		return "", fmt.Errorf("policies: no policy %q", name)
	}
	return strings.ReplaceAll(string(b), "{{mount}}", mount), nil
}
