package walrepl

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

// validJSONCases are the corners where a hand-written validator can part
// from encoding/json: numbers, escapes, control characters, bytes that are
// not UTF-8, whitespace, trailing bytes, nesting depth.
var validJSONCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `1`, `-`, `01`, `-01`, `1.`, `1.5`, `.5`, `1e`, `1e5`, `1E+5`, `1e-05`, `1.5e3x`,
	`-1.0E-0`, `2.`, `+1`, `1 2`, `true`, `tru`, `truex`, `false`, `null`, `nul`, `NaN`, `[1,]`, `[,1]`, `[1 2]`,
	`{"a":1,}`, `{"a" 1}`, `{"a":}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":1}}`, `[[]]]`, " \t\r\n{}\n ", "\v{}", "{}\x00",
	`"\u00e9"`, `"\u00G0"`, `"\u00e"`, `"\x"`, `"\/\b\f\n\r\t\\\""`, `"\'"`, `"a` + "\x1f" + `"`, "\"a\x7f\"", "\"\xff\xfe\"",
	"\"\xc3\xa9\"", `"abc`, `"abc\`, `{"id":"b64-1-2-3","kind":"load","agent":"bench","pad":"xxxx"}`,
	`[{"a":[{"b":null}]},{"c":-1.25e+10}]`, `{"":""}`, "\xef\xbb\xbf{}",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	strings.Repeat("[", 10001),
}

func TestValidJSON_matchesEncodingJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, encoding/json says %v", c, got, want)
		}
	}
}

// FuzzValidJSON holds validJSON to encoding/json's verdict on any input.
//
//	go test -run XXX -fuzz FuzzValidJSON -fuzztime 2m ./walrepl
func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		if len(c) < 1000 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// The bench's event: 256 bytes, an id and a long string.
var benchEvent = []byte(`{"id":"b64-12-345-67","kind":"load","agent":"bench","pad":"` + strings.Repeat("x", 196) + `"}`)

func BenchmarkValidJSON(b *testing.B) {
	b.Run("walrepl", func(b *testing.B) {
		b.SetBytes(int64(len(benchEvent)))
		for b.Loop() {
			if !validJSON(benchEvent) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(benchEvent)))
		for b.Loop() {
			if !json.Valid(benchEvent) {
				b.Fatal("invalid")
			}
		}
	})
}

// jsonSpecial8 finds a quote, a backslash or a control character at any of
// the eight positions, among any neighbours, and nothing else.
func TestJSONSpecial8_everyByteEveryPosition(t *testing.T) {
	for _, fill := range []byte{'x', 0x20, 0x7f, 0x80, 0xff, '!', '#', '[', ']'} {
		for c := 0; c < 256; c++ {
			for p := 0; p < 8; p++ {
				w := make([]byte, 8)
				for i := range w {
					w[i] = fill
				}
				w[p] = byte(c)
				want := c < 0x20 || c == '"' || c == '\\'
				if got := jsonSpecial8(binary.LittleEndian.Uint64(w)); got != want {
					t.Fatalf("jsonSpecial8(% x) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// A string's special bytes are found at every offset from its start, on
// either side of the eight-byte steps.
func TestValidJSON_specialAtEveryOffset(t *testing.T) {
	for n := 0; n < 40; n++ {
		for _, c := range []string{`"`, `\`, `\n`, `\u0041`, `\q`, "\x01", "\x1f", "\xff", "\x7f"} {
			s := []byte(`{"k":"` + strings.Repeat("a", n) + c + strings.Repeat("b", 40-n) + `"}`)
			if got, want := validJSON(s), json.Valid(s); got != want {
				t.Errorf("validJSON(%q) = %v, encoding/json says %v", s, got, want)
			}
		}
	}
}
