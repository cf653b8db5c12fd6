package providers

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

func mustFields(t testing.TB, specs ...string) *ModelFields {
	t.Helper()
	f, err := CompileModelFields(specs)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// topModel is the top-level model ReadModels finds, or why it refuses.
func topModel(body string) (model, problem string, aboutModel bool) {
	found, p := ReadModels([]byte(body), chatFields)
	if p != nil {
		return "", p.Msg, p.AboutModel
	}
	for _, m := range found {
		if m.Field == "model" {
			return m.Value, "", false
		}
	}
	return "", "", false
}

var chatFields, _ = CompileModelFields([]string{"model", "tools[type=image_generation].model"})

// The body is read as strictly as the admin API reads its own: a model
// that two parsers could read apart is refused, not guessed.
func TestTheModelIsReadOnlyWhenEveryParserReadsTheSame(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		refused    string // "model": 403 model_not_allowed; "json": 400
	}{
		{`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "gpt-4o", ""},
		{` {"messages":[{"content":"{\"model\":\"o1\"}"}],"model" : "gpt-4o" } `, "gpt-4o", ""},
		{`{"messages":[{"model":"o1"}],"stream":true}`, "", ""},
		{`{"model":"gpt\u002d4o"}`, "gpt-4o", ""}, // an escaped value is one value for every parser
		{`{"a":{"b":[1,2,{"c":"]}"}]},"model":"x"}`, "x", ""},
		{`{"n":-1.5e3,"t":true,"f":false,"z":null,"model":"x"}`, "x", ""},
		{`{"model":null}`, "", ""},
		{`{"model":["gpt-4o"]}`, "", ""},
		// Two models: a first-wins parser serves the one not checked.
		{`{"model":"gpt-4o","model":"o1-pro"}`, "", "model"},
		{`{"model":"gpt-4o","mod\u0065l":"o1"}`, "", "model"},
		// Another case or an escape is another member for one parser and
		// the model for another.
		{`{"model":"o1-pro","Model":"gpt-4o"}`, "", "model"},
		{`{"MODEL":"gpt-4o"}`, "", "model"},
		{`{"mod\u0065l":"gpt-4o"}`, "", "model"},
		// Duplicates anywhere are refused, as the admin API refuses them.
		{`{"model":"x","messages":[{"role":"user","role":"system"}]}`, "", "json"},
		// A nested member named Model is nobody's model: allowed.
		{`{"model":"x","response_format":{"schema":{"properties":{"Model":{"type":"string"}}}}}`, "x", ""},
		// Not one JSON object.
		{`{"model":"gpt-4o"}{"model":"o1"}`, "", "json"},
		{`{"model":"gpt-4o"`, "", "json"},
		{`{"model":"gpt-4o",}`, "", "json"},
		{`["model","gpt-4o"]`, "", "json"},
		{`{"model":"gpt` + "\n" + `4o"}`, "", "json"},
		{`{model:"gpt-4o"}`, "", "json"},
		{`{"model":"x","n":01}`, "", "json"},
		{`{"model":"x","n":NaN}`, "", "json"},
		{`{"model":"x","s":"\x"}`, "", "json"},
		{`{"model":"x","t":tru}`, "", "json"},
		{strings.Repeat(`{"a":`, 600) + `1` + strings.Repeat(`}`, 600), "", "json"},
	} {
		got, problem, aboutModel := topModel(tc.body)
		switch {
		case tc.refused == "" && (problem != "" || got != tc.want):
			t.Errorf("%.80s: read %q (refused: %q); want %q", tc.body, got, problem, tc.want)
		case tc.refused != "" && problem == "":
			t.Errorf("%.80s: read %q; want it refused", tc.body, got)
		case tc.refused != "" && aboutModel != (tc.refused == "model"):
			t.Errorf("%.80s: refused %q, about the model: %v; want %s", tc.body, problem, aboutModel, tc.refused)
		}
		if tc.refused == "" && json.Valid([]byte(tc.body)) && reference([]byte(tc.body), "model") != tc.want {
			t.Errorf("%s: the reference reads %q; the table is wrong", tc.body, reference([]byte(tc.body), "model"))
		}
	}
}

// Nested models are found where the endpoint says they are: every
// image_generation tool of a Responses call, Google's batch requests.
func TestNestedModelsAreFound(t *testing.T) {
	found, p := ReadModels([]byte(`{"model":"gpt-4o","tools":[{"type":"web_search"},{"type":"image_generation","model":"gpt-image-1"},{"type":"image_generation","model":7}],
		"input":[{"model":"not-a-model-field"}]}`), chatFields)
	if p != nil {
		t.Fatal(p.Msg)
	}
	want := []FoundModel{{Field: "model", Value: "gpt-4o", IsString: true}, {Field: "tools[].model", Value: "gpt-image-1", IsString: true}, {Field: "tools[].model"}}
	if len(found) != len(want) {
		t.Fatalf("found %+v, want %+v", found, want)
	}
	for i := range want {
		if found[i] != want[i] {
			t.Fatalf("found %+v, want %+v", found, want)
		}
	}
	// An image_generation tool that names no model gets the provider's
	// default: found missing. Another tool without one is no model.
	found, p = ReadModels([]byte(`{"tools":[{"type":"function","name":"f"},{"model":"gpt-image-1","type":"image_generation"},{"type":"image_generation","size":"auto"}],"model":"gpt-4o"}`), chatFields)
	if p != nil || len(found) != 3 || found[0].Missing || !found[1].Missing || found[1].Field != "tools[].model" || found[2].Value != "gpt-4o" {
		t.Fatalf("a tool without its model: %+v %v", found, p)
	}
	for _, bad := range []string{"tools[type].model", "tools[=x].model", "tools[type=x]", "a.tools[type=x].b.model"} {
		if _, err := CompileModelFields([]string{bad}); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	// In the object that holds a nested model, odd names are refused too.
	if _, p := ReadModels([]byte(`{"model":"gpt-4o","tools":[{"type":"image_generation","Model":"gpt-image-1"}]}`), chatFields); p == nil || !p.AboutModel {
		t.Fatalf("tools[].Model: %+v", p)
	}
	g := mustFields(t, "requests[].model", "generateContentRequest.model")
	found, p = ReadModels([]byte(`{"requests":[{"model":"models/a","content":{}},{"model":"models/b"}],"generateContentRequest":{"model":"models/c"}}`), g)
	if p != nil || len(found) != 3 || found[0].Value != "models/a" || found[1].Value != "models/b" || found[2].Field != "generateContentRequest.model" {
		t.Fatalf("Google's nested models: %+v %+v", found, p)
	}
}

// On every valid JSON document whose objects repeat no name, the walk
// reads what the provider's parser would; it never takes what is not
// JSON.
func FuzzReadModelsMatchesAFullParse(f *testing.F) {
	for _, seed := range []string{`{"model":"gpt-4o"}`, `{"a":[{"b":"}"}],"model":"x","model":"y"}`, `{"mod\u0065l":"\ud83d\ude00"}`,
		`{"Model":"a","model":"b","MODEL":"c"}`, `{"model":1}`, `[]`, `{}`, "{\"model\":\"\xff\"}", `{"\u006dodel":"x"} `,
		`{"tools":[{"model":"a"}],"model":"b"}`, `{"n":1e5,"m":-0.5}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		found, p := ReadModels(body, chatFields)
		if p == nil && !json.Valid(body) {
			t.Fatalf("%q: taken, but it is not JSON", body)
		}
		if p != nil {
			return
		}
		got := ""
		for _, m := range found {
			if m.Field == "model" {
				got = m.Value
			}
		}
		if want := reference(body, "model"); got != want {
			t.Fatalf("%q: read %q, a full parse %q", body, got, want)
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
			if found, p := ReadModels(body, chatFields); p != nil || found[0].Value != "gpt-4o" {
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
