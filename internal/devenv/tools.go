package devenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// SetupHint is the command that builds or installs every tool devenv needs.
const SetupHint = "make tools (scripts/tools.sh)"

// ToolsDir is the folder scripts/tools.sh builds into:
// $KEYBROKER_TOOLS_DIR, else $HOME/.cache/keybroker/tools.
func ToolsDir() string {
	if d := os.Getenv("KEYBROKER_TOOLS_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "keybroker-tools")
	}
	return filepath.Join(home, ".cache", "keybroker", "tools")
}

// ErrToolMissing is returned (wrapped) when a binary cannot be found.
var ErrToolMissing = errors.New("tool not found")

// FindTool returns the path of a tool built by scripts/tools.sh (vault,
// terraform, tofu): first in ToolsDir()/bin, then on $PATH.
func FindTool(name string) (string, error) {
	// KEYBROKER_VAULT_BIN picks another Vault build (make test-compat runs
	// the Vault tests against the newest release this way).
	if name == "vault" {
		if p := os.Getenv("KEYBROKER_VAULT_BIN"); p != "" {
			if !isExecutable(p) {
				return "", fmt.Errorf("%w: KEYBROKER_VAULT_BIN=%s is not an executable", ErrToolMissing, p)
			}
			return p, nil
		}
	}
	p := filepath.Join(ToolsDir(), "bin", name)
	if isExecutable(p) {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is neither in %s nor on PATH; build it with %s",
		ErrToolMissing, name, filepath.Join(ToolsDir(), "bin"), SetupHint)
}

// PostgresTool returns the path of a PostgreSQL program (initdb, postgres,
// pg_dump).
func PostgresTool(name string) (string, error) { return findPostgresTool(name) }

// findPostgresTool returns the path of a PostgreSQL server program (initdb,
// postgres). Debian installs them under /usr/lib/postgresql/<major>/bin,
// which is not on $PATH; the newest major wins.
func findPostgresTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: PostgreSQL's %s is neither on PATH nor under /usr/lib/postgresql/*/bin; install it with %s",
		ErrToolMissing, name, SetupHint)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
