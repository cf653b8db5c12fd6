package broker

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestResolutionNeverPrintsTheKey(t *testing.T) {
	r := Resolution{APIKey: "sk-top-secret", Source: SourceBYOK, IsBYOK: true, Version: 2}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("resolved", "r", r)
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", r, r, r, r), logged.String()} {
		if strings.Contains(out, "top-secret") {
			t.Fatalf("key printed: %s", out)
		}
	}
}
