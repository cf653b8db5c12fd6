package handlers

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keybroker/keybroker/client"
)

// appendResolveAnswer appends r as encoding/json would encode it (the
// same bytes, newline included: a test holds the two equal), without
// reflection: the resolve answer is the hot path's only output.
func appendResolveAnswer(b []byte, r *client.ResolveResponse) []byte {
	b = append(b, `{"apiKey":`...)
	b = appendJSONString(b, r.APIKey)
	if r.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, r.Kind)
	}
	if len(r.Credential) > 0 {
		b = append(b, `,"credential":`...)
		b = appendCredential(b, r.Credential)
	}
	if !r.ExpiresAt.IsZero() {
		b = append(b, `,"expiresAt":"`...)
		b = r.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"source":`...)
	b = appendJSONString(b, r.Source)
	b = append(b, `,"isBYOK":`...)
	b = strconv.AppendBool(b, r.IsBYOK)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, r.Scope)
	b = append(b, `,"keyId":`...)
	b = appendJSONString(b, r.KeyID)
	if r.Fingerprint != "" {
		b = append(b, `,"fingerprint":`...)
		b = appendJSONString(b, r.Fingerprint)
	}
	b = append(b, `,"resolutionId":`...)
	b = appendJSONString(b, r.ResolutionID)
	if r.FallbackReason != "" {
		b = append(b, `,"fallbackReason":`...)
		b = appendJSONString(b, r.FallbackReason)
	}
	if r.TTLSeconds != 0 {
		b = append(b, `,"ttlSeconds":`...)
		b = strconv.AppendInt(b, int64(r.TTLSeconds), 10)
	}
	if !r.KeyExpiresAt.IsZero() {
		b = append(b, `,"keyExpiresAt":"`...)
		b = r.KeyExpiresAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// appendCredential appends a resolve answer's credential as encoding/json
// encodes a map: names sorted, each value a string or an object of
// strings (a map field); anything else, which keybroker never puts
// there, through encoding/json itself.
func appendCredential(b []byte, fields map[string]any) []byte {
	b = append(b, '{')
	for i, name := range slices.Sorted(maps.Keys(fields)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		switch v := fields[name].(type) {
		case string:
			b = appendJSONString(b, v)
		case map[string]string:
			b = append(b, '{')
			for j, k := range slices.Sorted(maps.Keys(v)) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendJSONString(b, v[k])
			}
			b = append(b, '}')
		default:
			j, err := json.Marshal(v)
			if err != nil {
				j = []byte("null")
			}
			b = append(b, j...)
		}
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// plainForSlog and plainForJSON mark the bytes a JSON string holds as
// they are: printable ASCII but for the quote and the backslash, and, for
// encoding/json (HTML-safe), but for <, > and &.
var plainForSlog, plainForJSON = func() (slog, json [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		slog[c] = c != '"' && c != '\\'
		json[c] = slog[c] && c != '<' && c != '>' && c != '&'
	}
	return slog, json
}()

// appendJSONString appends s quoted as encoding/json quotes a string by
// default: HTML-safe (<, > and & escaped), U+2028 and U+2029 escaped,
// invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte { return appendJSONText(b, s, true) }

// appendJSONText quotes s as encoding/json does (encodingJSON) or as
// slog's JSONHandler does, which escapes neither <, > and & nor \b and
// \f by their short names.
func appendJSONText(b []byte, s string, encodingJSON bool) []byte {
	plain := &plainForSlog
	if encodingJSON {
		plain = &plainForJSON
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = appendShortEscape(b, 'b', c, encodingJSON)
			case '\f':
				b = appendShortEscape(b, 'f', c, encodingJSON)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendShortEscape escapes \b or \f: by its short name for encoding/json,
// as \u00XX for slog.
func appendShortEscape(b []byte, name, c byte, encodingJSON bool) []byte {
	if encodingJSON {
		return append(b, '\\', name)
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// answerBuffers hold resolve answers while they are written.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// parseResolveRequest reads the body resolve gets from every client —
// {"workspace":"…","provider":"…","model":"…"}: those names at most once
// each, in any order, values plain strings (printable ASCII, no escapes),
// whitespace anywhere JSON allows it — without reflection. ok is false
// for anything else, which decodeJSON then decodes (and refuses or
// accepts) as always; a fuzz test holds the two to the same answers.
func parseResolveRequest(body []byte, req *client.ResolveRequest) (ok bool) {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	var seen [3]bool
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	for {
		name, next, ok := plainString(body, i)
		if !ok {
			return false
		}
		i = skipSpace(body, next)
		if i == len(body) || body[i] != ':' {
			return false
		}
		value, next, ok := plainString(body, skipSpace(body, i+1))
		if !ok {
			return false
		}
		var field int
		switch string(name) {
		case "workspace":
			field, req.Workspace = 0, string(value)
		case "provider":
			field, req.Provider = 1, string(value)
		case "model":
			field, req.Model = 2, string(value)
		default:
			return false
		}
		if seen[field] {
			return false
		}
		seen[field] = true
		i = skipSpace(body, next)
		if i == len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// plainString reads a JSON string of printable ASCII without escapes at
// body[i], returning its contents and the index after its closing quote.
func plainString(body []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(body) || body[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			return body[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipSpace(body []byte, i int) int {
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	return i
}
