package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// reference is what a provider's own parser reads: the exact member name,
// the last of that name winning, a string or nothing.
func reference(body []byte, name string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	var v string
	if json.Unmarshal(m[name], &v) != nil {
		return ""
	}
	return v
}

func TestTheModelIsReadAsTheProviderReadsIt(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o"},
		{` {"messages":[{"content":"{\"model\":\"o1\"}"}],"model" : "gpt-4o" } `, "gpt-4o"},
		{`{"messages":[{"model":"o1"}],"stream":true}`, ""},
		// The last member of the name wins, as in the providers' parsers.
		{`{"model":"gpt-4o","model":"o1-pro"}`, "o1-pro"},
		// Another case is another member: encoding/json would take it.
		{`{"model":"o1-pro","Model":"gpt-4o"}`, "o1-pro"},
		{`{"MODEL":"gpt-4o"}`, ""},
		// Escapes are read as the provider reads them.
		{`{"mod\u0065l":"gpt\u002d4o"}`, "gpt-4o"},
		{`{"model":"gpt-4o","mod\u0065l":"o1"}`, "o1"},
		{`{"model":null}`, ""},
		{`{"model":["gpt-4o"]}`, ""},
		{`{"model":"gpt-4o","model":7}`, ""},
		{`{"a":{"b":[1,2,{"c":"]}"}]},"model":"x"}`, "x"},
		{`{"n":-1.5e3,"t":true,"f":false,"z":null,"model":"x"}`, "x"},
		// Not one JSON object: nothing.
		{`{"model":"gpt-4o"}{"model":"o1"}`, ""},
		{`{"model":"gpt-4o"`, ""},
		{`{"model":"gpt-4o",}`, ""},
		{`["model","gpt-4o"]`, ""},
		{`"model"`, ""},
		{``, ""},
		{`{"model":"gpt` + "\n" + `4o"}`, ""},
		{`{model:"gpt-4o"}`, ""},
	} {
		if got := topLevelString([]byte(tc.body), "model"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.body, got, tc.want)
		}
		if json.Valid([]byte(tc.body)) && reference([]byte(tc.body), "model") != tc.want {
			t.Errorf("%s: the reference reads %q; the table is wrong", tc.body, reference([]byte(tc.body), "model"))
		}
	}
	if got := modelOf("openai", "/v1/chat/completions", "text/plain", []byte(`{"model":"gpt-4o"}`)); got != "" {
		t.Fatalf("a body that is not declared JSON named %q", got)
	}
	if got := modelOf("google", "/v1beta/models/gemini-2.0-flash:generateContent", "application/json", []byte(`{"model":"x"}`)); got != "gemini-2.0-flash" {
		t.Fatalf("Google's model from the path: %q", got)
	}
}

// On every valid JSON document the walk reads what the provider's parser
// would.
func FuzzTopLevelStringMatchesAFullParse(f *testing.F) {
	for _, seed := range []string{`{"model":"gpt-4o"}`, `{"a":[{"b":"}"}],"model":"x","model":"y"}`, `{"mod\u0065l":"\ud83d\ude00"}`,
		`{"Model":"a","model":"b","MODEL":"c"}`, `{"model":1}`, `[]`, `{}`, "{\"model\":\"\xff\"}", `{"\u006dodel":"x"} `} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := topLevelString(body, "model")
		if json.Valid(body) {
			if want := reference(body, "model"); got != want {
				t.Fatalf("%q: read %q, a full parse %q", body, got, want)
			}
		}
	})
}

// The walk beside encoding/json on a chat body of 64 KiB.
func BenchmarkModelOfALargeChatBody(b *testing.B) {
	var msgs []string
	for len(strings.Join(msgs, ",")) < 64<<10 {
		msgs = append(msgs, `{"role":"user","content":"`+strings.Repeat("lorem ipsum \\\"dolor\\\" sit amet, ", 8)+`"}`)
	}
	body := []byte(`{"messages":[` + strings.Join(msgs, ",") + `],"model":"gpt-4o","stream":true}`)
	b.Run("walk", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if topLevelString(body, "model") != "gpt-4o" {
				b.Fatal("no model")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var v struct {
				Model string `json:"model"`
			}
			if json.Unmarshal(body, &v) != nil || v.Model != "gpt-4o" {
				b.Fatal("no model")
			}
		}
	})
}
