package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// checkSameAsStd fails t unless ParseEvents gives body exactly what
// parseEventsStd (encoding/json) gives it: the same error, or the same
// compacted events with ids as eventIDStd reads them.
func checkSameAsStd(t *testing.T, body []byte, maxEvents int) {
	t.Helper()
	want, wantErr := parseEventsStd(body, maxEvents)
	got, ids, err := ParseEvents(body, maxEvents)
	if wantErr != nil {
		if err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("body %q: error %v, want %v", body, err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("body %q: error %v, encoding/json accepts it: %q", body, err, want)
	}
	if tb := bytes.TrimSpace(body); len(tb) > 0 {
		if _, _, ok := scanEvents(tb, maxEvents); !ok {
			t.Fatalf("body %q: the scanner rejects what encoding/json accepts", body)
		}
	}
	if len(got) != len(want) || len(ids) != len(want) {
		t.Fatalf("body %q: %d events and %d ids, want %d events", body, len(got), len(ids), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("body %q: event %d is %q, want %q", body, i, got[i], want[i])
		}
		if wantID := eventIDStd(want[i]); ids[i] != wantID {
			t.Fatalf("body %q: event %d has id %q, want %q", body, i, ids[i], wantID)
		}
	}
}

// seedBodies are the fuzz tests' seed corpus and the table of
// TestParseEvents_sameAsEncodingJSON.
var seedBodies = []string{
	`{"id":"a","kind":"x"}`,
	`{"id":12,"v":[1,2,{"a":null}]}`,
	`{"id":-1.5e+3}`, `{"id":null}`, `{"id":""}`, `{"id":"null"}`, `{"id":true}`, `{"id":{"x": 1}}`,
	`{"id":[1, 2]}`, `{"ID":"upper","note":"id"}`, `{"ID":"upper"}`, `{"Id":"a","iD":"b","k":"id"}`,
	`{"id":"a","id":"b"}`, `{"id":"a","id":null}`, `{"\u0069d":"esc","x":"id"}`, `{"\u0069d":"esc"}`,
	`{"ıd":"dotless","x":"id"}`, `{"İd":"dotted","x":"id"}`, `{"id":"\u00e9\n\ud800"}`, "{\"id\":\"\xff\xfe\"}",
	`{"id":"é"}`, `{"nested":{"id":"inner"}}`, `{"x":"\"id\""}`,
	`  {"a" : 1 , "b" : [ 1 , 2 ] , "id" : { "k" : "v w" } }  `,
	"{\"a\":1}\n{\"b\":2}\n", `{"a":1}{"b":2}`, "{\"a\":1}\r\n\t{\"b\":2}", `[{"a":1},{"b":2}]`,
	` [ {"a":1} , {"id":"x"} ] `, `[]`, `[{"a":1}]]`, `[{"a":1}] }x`, `[{"a":1}] [{"b":2}]`, `{"a":1} [{"b":2}]`,
	`[1]`, `[{"a":1},2]`, `1`, `"s"`, `null`, ``, `   `, `{`, `{"a":}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`,
	"{\"a\":\"\x01\"}", `{"a":1} x`, `{"a":1} 2`, "\u00a0{\"a\":1}\u00a0", "{\"a\":1}\u00a0{\"b\":2}",
	`{"a":[[[[[[]]]]]]}`, strings.Repeat(`{"a":`, 3) + `1` + strings.Repeat(`}`, 3),
	`{"a":1}` + strings.Repeat("\n"+`{"b":2}`, 6),
}

func TestParseEvents_sameAsEncodingJSON(t *testing.T) {
	deep := func(n int) string { return `{"a":` + strings.Repeat(`[`, n-1) + strings.Repeat(`]`, n-1) + `}` }
	bodies := append([]string{deep(10000), deep(10001), "[" + deep(9999) + "]", "[" + deep(10000) + "]"}, seedBodies...)
	for _, b := range bodies {
		for _, max := range []int{1, 2, 5, 10000} {
			checkSameAsStd(t, []byte(b), max)
		}
	}
}

func TestParseEvents_shapes(t *testing.T) {
	body := "{\"id\": \"a\", \"v\": [1, 2]}\n{\"id\":7,\"k\":\"x\"}\n{\"k\":\"no id\"}"
	got, ids, err := ParseEvents([]byte(body), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"id":"a","v":[1,2]}`, `{"id":7,"k":"x"}`, `{"k":"no id"}`}
	wantIDs := []string{"a", "7", ""}
	for i := range want {
		if string(got[i]) != want[i] || ids[i] != wantIDs[i] {
			t.Errorf("event %d: %s id %q, want %s id %q", i, got[i], ids[i], want[i], wantIDs[i])
		}
	}
	// A compact event is handed down as the body's own bytes, capped so
	// that an append cannot write into the next event.
	if cap(got[1]) != len(got[1]) {
		t.Errorf("event 1: cap %d, len %d", cap(got[1]), len(got[1]))
	}
}

func TestParseEvents_errorsUnchanged(t *testing.T) {
	for body, want := range map[string]string{
		``:                    "the body is empty: send one JSON object, a JSON array of objects, or NDJSON",
		`[]`:                  "the array is empty: nothing to ingest",
		`[{"a":1}]]`:          "a JSON array must be the whole body",
		`{"a":1} [{"b":1}]`:   "a JSON array must be the whole body",
		`[{"a":1},2]`:         "array element 1 is not a JSON object",
		`{"a":1} 2`:           "event 1 is not a JSON object",
		`{"a":1}{"b":1}{}`:    "more than 2 events in one request; split the batch (setting ingest/max_batch)",
		`{"a":1} {"b"`:        "invalid JSON at byte 7: unexpected EOF",
		`[{"a":1},{"b":1},{`:  "invalid JSON at byte 0: unexpected EOF",
		`{"a":1} {"b":1,,}  `: "invalid JSON at byte 7: invalid character ',' looking for beginning of object key string",
	} {
		_, _, err := ParseEvents([]byte(body), 2)
		if err == nil || err.Error() != want {
			t.Errorf("body %q: error %v, want %q", body, err, want)
		}
	}
}

func TestEventID(t *testing.T) {
	for payload, want := range map[string]string{
		`{"id":"a"}`: "a", `{"id":12}`: "12", `{"id":-1.5e3}`: "-1.5e3", `{"id":null}`: "", `{}`: "",
		`{"id":""}`: "", `{"id":true}`: "true", `{"id":{"k":1}}`: `{"k":1}`, `{"x":1,"id":"b","y":2}`: "b",
		`{"id":"a","id":"b"}`: "b", `{"ID":"u","n":"id"}`: "u", `{"ID":"u"}`: "", `{"\u0069d":"e"}`: "",
		`{"\u0069d":"e","n":"id"}`: "e", `{"ıd":"d","n":"id"}`: "", `{"İd":"d","n":"id"}`: "",
		`{"id":"a\u0062"}`: "ab", `{"n":{"id":"inner"}}`: "", `not json "id"`: "",
	} {
		if got := EventID([]byte(payload)); got != want {
			t.Errorf("EventID(%s) = %q, want %q", payload, got, want)
		}
		if std := eventIDStd([]byte(payload)); std != want {
			t.Errorf("eventIDStd(%s) = %q, want %q (the test is wrong)", payload, std, want)
		}
	}
}

// FuzzParseEvents holds the scanner to encoding/json: every body gets the
// same verdict, error, compacted events and ids from ParseEvents as from
// parseEventsStd and eventIDStd. Run: go test ./api -run '^$' -fuzz FuzzParseEvents
func FuzzParseEvents(f *testing.F) {
	for _, b := range seedBodies {
		f.Add([]byte(b), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, max uint8) {
		checkSameAsStd(t, body, int(max%8)+1)
	})
}

// FuzzEventID holds EventID to eventIDStd on any payload.
func FuzzEventID(f *testing.F) {
	for _, b := range seedBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if got, want := EventID(payload), eventIDStd(payload); got != want {
			t.Fatalf("EventID(%q) = %q, eventIDStd %q", payload, got, want)
		}
	})
}

// TestWriteIngestOK: the hand-written answer is what c.JSON wrote.
func TestWriteIngestOK(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	for _, r := range []IngestResponse{{Seqs: []uint64{1}, SafeSeq: 1}, {Seqs: []uint64{18446744073709551615, 0, 42}, SafeSeq: 7},
		{Seqs: []uint64{}}, {}} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		writeIngestOK(c, r.Seqs, r.SafeSeq)
		w2 := httptest.NewRecorder()
		c2, _ := gin.CreateTestContext(w2)
		c2.JSON(http.StatusOK, r)
		if w.Body.String() != w2.Body.String() || w.Code != w2.Code ||
			w.Header().Get("Content-Type") != w2.Header().Get("Content-Type") {
			t.Errorf("%+v: %d %q %s, c.JSON: %d %q %s", r, w.Code, w.Header().Get("Content-Type"), w.Body,
				w2.Code, w2.Header().Get("Content-Type"), w2.Body)
		}
	}
}

func benchBodies() map[string][]byte {
	event := func(i int) string {
		e := fmt.Sprintf(`{"id":"bench-%08d","agent":"agent-7","kind":"metric","ts":"2026-12-05T17:00:00Z","v":`, i)
		return e + `"` + strings.Repeat("x", 256-len(e)-3) + `"}`
	}
	var batch []string
	for i := range 100 {
		batch = append(batch, event(i))
	}
	pretty, _ := json.MarshalIndent(json.RawMessage("["+strings.Join(batch, ",")+"]"), "", "  ")
	return map[string][]byte{"single": []byte(event(1)), "batch100": []byte("[" + strings.Join(batch, ",") + "]"),
		"batch100_indented": pretty}
}

// BenchmarkParseEvents: the scanner (with ids) against encoding/json
// (parseEventsStd, then eventIDStd per event, as the ingest path did).
func BenchmarkParseEvents(b *testing.B) {
	for name, body := range benchBodies() {
		b.Run(name+"/scan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ParseEvents(body, 10000); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				events, err := parseEventsStd(body, 10000)
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range events {
					eventIDStd(e)
				}
			}
		})
	}
}
