package broker

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keybroker/keybroker/providers"
)

func TestResolutionNeverPrintsTheKey(t *testing.T) {
	r := Resolution{Credential: providers.APIKey("sk-top-secret"), Source: SourceBYOK, IsBYOK: true, Version: 2}
	var logged, text strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("resolved", "r", r)
	slog.New(slog.NewTextHandler(&text, nil)).Info("resolved", "r", r, "credential", r.Credential)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.APIKey() != "sk-top-secret" {
		t.Fatal("the explicit accessor lost the key")
	}
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", r, r, r, r), fmt.Sprintf("%v %+v %#v %s %q %x", r.Credential, r.Credential, r.Credential, r.Credential, r.Credential, r.Credential),
		logged.String(), text.String(), string(js)} {
		if strings.Contains(out, "top-secret") {
			t.Fatalf("key printed: %s", out)
		}
	}
}
