package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/keybroker/keybroker/client"
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
		quick, decided, _ := quickCheckNames(body, known)
		if !decided || !json.Valid(body) {
			return
		}
		if slow := checkNames(body, known); (quick == "") != (slow == "") {
			t.Fatalf("%q: quick %q, walk %q", body, quick, slow)
		}
	})
}

// FuzzTheFastDecodeAgreesWithTheDecoder holds decodeJSON's json.Unmarshal
// path (names checked beforehand) to the strict decoder's: the same
// refusal, or the same value; and what parseResolveRequest accepts, the
// decoder accepts as the same request.
func FuzzTheFastDecodeAgreesWithTheDecoder(f *testing.F) {
	for _, seed := range []string{
		`{"workspace":"ws1","provider":"openai"}`,
		`{"workspace":"ws1","provider":"openai","model":"gpt-4o"}`,
		`{"workspace":"ws1","provider":"openai"} {}`,
		`{"workspace":"ws1","provider":"openai"}x`,
		`{"workspace":1}`,
		`{"workspace":null}`,
		`{"Workspace":"ws1"}`,
		`{"other":"x"}`,
		`{"workspace":"\u0077s1"}`,
		`null`,
		`[]`,
		`"s"`,
		` `,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, strict, byHand client.ResolveRequest
		ef, es := decodeBody(body, &fast, true), decodeBody(body, &strict, false)
		if parseResolveRequest(body, &byHand) && (es != nil || byHand != strict) {
			t.Fatalf("%q: parsed by hand as %+v, the decoder says %v, %+v", body, byHand, es, strict)
		}
		switch {
		case (ef == nil) != (es == nil):
			t.Fatalf("%q: fast %v, strict %v", body, ef, es)
		case ef != nil && ef.Message != es.Message:
			t.Fatalf("%q: fast says %q, strict %q", body, ef.Message, es.Message)
		case ef == nil && !reflect.DeepEqual(fast, strict):
			t.Fatalf("%q: fast %+v, strict %+v", body, fast, strict)
		}
	})
}

func TestResolveRequestsTakeTheFastDecode(t *testing.T) {
	if info := fieldsOf(&client.ResolveRequest{}); !info.flat {
		t.Fatal("client.ResolveRequest is not flat: the resolve path would take the decoder")
	}
	type nested struct {
		A struct{ B string } `json:"a"`
	}
	type raw struct {
		R json.RawMessage `json:"r"`
	}
	for _, v := range []any{&nested{}, &raw{}} {
		if fieldsOf(v).flat {
			t.Errorf("%T counts as flat", v)
		}
	}
}

// FuzzTheResolveAnswerEncodesAsEncodingJSON holds the hand-written encoder
// to encoding/json's bytes, for any strings and numbers.
func FuzzTheResolveAnswerEncodesAsEncodingJSON(f *testing.F) {
	f.Add("sk-proj-abc", "api_key", "byok", true, 3, "workspace", "default", "fp", "res_1", "", 30, "", "", "", "", int64(0))
	f.Add("a\"b\\c<d>&e\u2028\u2029\x00\x1f\x7f\xff\xfe", "k<i>nd", "hosted", false, -1, "o", "k\n\t\r\b\f", "", "", "no_workspace_key", 0,
		"se<s>sion", "t\"o\x00k\xff", "m\u2028ap", "k&v", int64(1764633600123456789))
	f.Add("é😀\xed\xa0\x80", "", "", false, 0, "", "", "", "", "", -5, "a", "", "a", "b", int64(-1))
	f.Fuzz(func(t *testing.T, key, kind, source string, byok bool, version int, scope, keyID, fp, resID, reason string, ttl int,
		field, value, mapField, mapValue string, expiresUnixNano int64) {
		r := client.ResolveResponse{APIKey: key, Kind: kind, Source: source, IsBYOK: byok, Version: version, Scope: scope, KeyID: keyID,
			Fingerprint: fp, ResolutionID: resID, FallbackReason: reason, TTLSeconds: ttl}
		// A credential of string fields and a map field; an expiry, in
		// UTC as the server sends it.
		if field != "" {
			r.Credential = map[string]any{field: value, "z" + field: "2" + value}
			if mapField != "" {
				r.Credential[mapField] = map[string]string{mapValue: value, "": mapValue}
			}
		}
		if expiresUnixNano > 0 {
			r.ExpiresAt = time.Unix(0, expiresUnixNano).UTC()
			r.KeyExpiresAt = time.Unix(0, expiresUnixNano/2).UTC()
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		if got := appendResolveAnswer(nil, &r); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("hand-written %q\nencoding/json %q", got, want.Bytes())
		}
	})
}

// FuzzTheAccessLineIsSlogsJSON holds keybroker's access-line formatter to
// the bytes of slog's JSONHandler for the same record.
func FuzzTheAccessLineIsSlogsJSON(f *testing.F) {
	f.Add("POST", "/v1/resolve", 200, int64(1234), "1a2b3c4d5", "127.0.0.1", "tok_0123456789abcdef", int64(1764633600123456789))
	f.Add("M&<>\"\\\n\t\x01\u2028\u2029\xff", "(no route)", 404, int64(0), "", "::1", "é😀", int64(-1))
	f.Add("GET", "/v1/workspaces/:ws/keys", 500, int64(999999999), "x", "", "", int64(0))
	f.Fuzz(func(t *testing.T, method, route string, status int, micros int64, requestID, addr, token string, unixNano int64) {
		if micros < 0 {
			micros = -micros
		}
		// Durations are logged in milliseconds with microsecond precision.
		micros %= 1e12
		when := time.Unix(0, unixNano)
		attrs := []slog.Attr{slog.String("method", method), slog.String("route", route), slog.Int("status", status),
			slog.Float64("duration_ms", float64(micros)/1000), slog.String("request_id", requestID), slog.String("remote_addr", addr),
			slog.String("token_id", token)}
		var want bytes.Buffer
		r := slog.NewRecord(when, slog.LevelInfo, "http request", 0)
		r.AddAttrs(attrs...)
		if err := slog.NewJSONHandler(&want, nil).Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if got := appendAccessLine(nil, when, "http request", attrs); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("keybroker %s\nslog      %s", got, want.Bytes())
		}
	})
}
