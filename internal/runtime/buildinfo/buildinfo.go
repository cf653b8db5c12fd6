// Package buildinfo owns what a keybroker binary says about itself: its
// version, the commit it was built from and when that commit was made.
// The release build stamps them with -ldflags (make build, make image);
// a plain `go build` or `go install` falls back to what the Go toolchain
// records in the binary (the module version and the VCS revision and
// time).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set with -ldflags "-X github.com/keybroker/keybroker/internal/buildinfo.version=v2.0.0 ...".
var (
	version string
	commit  string
	date    string
)

// Info describes a build.
type Info struct {
	// Version is a semantic version ("v2.0.0", "v2.0.0-3-gabc1234-dirty"),
	// or "dev" when nothing says more.
	Version string `json:"version"`
	// Commit is the full VCS revision ("" when unknown); Modified says the
	// work tree had uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Date is the commit's time (RFC 3339, UTC): the build is
	// reproducible, so it carries no build-time clock.
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"goVersion"`
}

var (
	once sync.Once
	info Info
)

// Get returns the binary's build information.
func Get() Info {
	once.Do(func() { info = read(version, commit, date, debug.ReadBuildInfo) })
	return info
}

func read(version, commit, date string, readBuild func() (*debug.BuildInfo, bool)) Info {
	out := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if bi, ok := readBuild(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if out.Commit == "" {
					out.Commit = s.Value
				}
			case "vcs.time":
				if out.Date == "" {
					out.Date = s.Value
				}
			case "vcs.modified":
				out.Modified = s.Value == "true"
			}
		}
		if out.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			out.Version = bi.Main.Version
		}
	}
	if out.Version == "" {
		out.Version = "dev"
	}
	if strings.HasSuffix(out.Version, "-dirty") {
		out.Modified = true
	}
	return out
}

// String is the one line `keybroker version` prints.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	var parts []string
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if i.Modified {
			c += ", modified"
		}
		parts = append(parts, "commit "+c)
	}
	if i.Date != "" {
		parts = append(parts, "committed "+i.Date)
	}
	parts = append(parts, i.GoVersion)
	b.WriteString(" (" + strings.Join(parts, ", ") + ")")
	return b.String()
}
