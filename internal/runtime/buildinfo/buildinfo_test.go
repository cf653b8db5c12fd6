package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestStampedValuesWinOverTheToolchainsRecord(t *testing.T) {
	recorded := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
			{Key: "vcs.modified", Value: "false"},
		}}, true
	}
	got := read("v2.0.0", "fedcba9876543210fedcba9876543210fedcba98", "2026-12-01T09:00:00Z", recorded)
	if got.Version != "v2.0.0" || got.Commit != "fedcba9876543210fedcba9876543210fedcba98" || got.Date != "2026-12-01T09:00:00Z" || got.Modified {
		t.Fatalf("stamped: %+v", got)
	}
	got = read("", "", "", recorded)
	if got.Version != "v9.9.9" || got.Commit != "0123456789abcdef0123456789abcdef01234567" || got.Date != "2026-11-30T10:00:00Z" {
		t.Fatalf("from the build record: %+v", got)
	}
	if s := got.String(); !strings.HasPrefix(s, "v9.9.9 (commit 0123456789ab, committed 2026-11-30T10:00:00Z, go") {
		t.Fatalf("String: %s", s)
	}
}

func TestAnUnstampedDevelBuildSaysDevAndADirtyTreeSaysModified(t *testing.T) {
	devel := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: "abc"}}}, true
	}
	got := read("", "", "", devel)
	if got.Version != "dev" || !got.Modified || !strings.Contains(got.String(), "commit abc, modified") {
		t.Fatalf("devel: %+v %s", got, got)
	}
	if got := read("v2.0.0-1-gabc-dirty", "", "", func() (*debug.BuildInfo, bool) { return nil, false }); !got.Modified || got.Commit != "" {
		t.Fatalf("dirty version: %+v", got)
	}
}
