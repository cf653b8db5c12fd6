package handlers

import (
	"encoding/json"
	"testing"
)

// FuzzQuickCheckNamesAgreesWithTheDecoderWalk holds the allocation-free
// check to the token walk wherever it decides.
func FuzzQuickCheckNamesAgreesWithTheDecoderWalk(f *testing.F) {
	for _, seed := range []string{
		`{"workspace":"ws1","provider":"openai"}`,
		`{"workspace":"ws1","workspace":"ws2"}`,
		`{"Workspace":"ws1"}`,
		`{"apiKey":"a\"b","apiKey":"c"}`,
		`{"a":{"b":1,"b":2}}`,
		`{"models":["x","x"],"name":"n"}`,
		`{"a":[{"k":1},{"k":2}]}`,
		`[{"a":1,"a":2}]`,
		`{"a":1,}`,
		`{"a"`,
		``,
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{"workspace": true, "provider": true, "apiKey": true, "models": true, "name": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		// On invalid JSON the two may differ; the decoder refuses it
		// either way (400 malformed_json).
		quick, decided := quickCheckNames(body, known)
		if !decided || !json.Valid(body) {
			return
		}
		if slow := checkNames(body, known); (quick == "") != (slow == "") {
			t.Fatalf("%q: quick %q, walk %q", body, quick, slow)
		}
	})
}
