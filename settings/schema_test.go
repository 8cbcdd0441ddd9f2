package settings

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate_keysAndBounds(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       error // nil: accepted
	}{
		{"totally/made-up", `{"x":1}`, ErrUnknownKey},
		{"ingest/max_batch", `500`, nil},
		{"ingest/max_batch", `0`, ErrBadValue},
		{"ingest/max_batch", `100001`, ErrBadValue},
		{"ingest/max_batch", `1.5`, ErrBadValue},
		{"ingest/max_batch", `1e3`, ErrBadValue},
		{"ingest/max_batch", `"500"`, ErrBadValue},
		{"ingest/max_body_bytes", `1023`, ErrBadValue},
		{"ingest/max_body_bytes", `1024`, nil},
		{"ingest/idempotency_window", `999`, ErrBadValue},
		{"ingest/idempotency_window", `1000`, nil},
		{"ingest/idempotency_window_bytes", `1048575`, ErrBadValue},
		{"ingest/idempotency_window_bytes", `1048576`, nil},
		{"ingest/idempotency_window_bytes", `33554432`, nil},
		{"ingest/idempotency_window_bytes", `1073741825`, ErrBadValue},
		{"retention/max_bytes", `0`, nil},
		{"retention/max_bytes", `1048575`, ErrBadValue},
		{"retention/max_bytes", `1048576`, nil},
		{"retention/max_age", `"0s"`, nil},
		{"retention/max_age", `"720h"`, nil},
		{"retention/max_age", `"59s"`, ErrBadValue},
		{"retention/max_age", `"87601h"`, ErrBadValue},
		{"retention/max_age", `3600`, ErrBadValue},
		{"retention/max_age", `"-1h"`, ErrBadValue},
		{"log/level", `"debug"`, nil},
		{"log/level", `"verbose"`, ErrBadValue},
		{"log/level", `3`, ErrBadValue},
	} {
		err := Validate(tc.key, json.RawMessage(tc.value))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Validate(%s, %s) = %v, want %v", tc.key, tc.value, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.key) {
			t.Errorf("error %q does not name the key %s", err, tc.key)
		}
	}
}

func TestDescribe_namesEveryKeyWithItsBounds(t *testing.T) {
	d := Describe()
	for _, s := range Schema() {
		if !strings.Contains(d, s.Key+": ") || !strings.Contains(d, s.Bounds()) {
			t.Errorf("Describe lacks %s (%s):\n%s", s.Key, s.Bounds(), d)
		}
	}
	if s, _ := Lookup("ingest/max_batch"); s.Bounds() != "1..100000 events" {
		t.Errorf("ingest/max_batch bounds %q", s.Bounds())
	}
}

func TestResolve_sourcesDefaultsAndRefusedValues(t *testing.T) {
	def := Values{IdempotencyWindow: DefaultIdempotencyWindow, MaxBatch: DefaultMaxBatch, MaxBodyBytes: 1 << 20,
		LogLevel: "info", RetentionBytes: 8 << 30}
	r := Resolve(def, map[string]Stored{
		"ingest/max_batch":  {Value: json.RawMessage(`5`), Revision: 7},
		"log/level":         {Value: json.RawMessage(`"verbose"`), Revision: 8},
		"retention/max_age": {Value: json.RawMessage(`"2h"`), Revision: 9},
		"retention/days":    {Value: json.RawMessage(`30`), Revision: 3},
	})
	want := def
	want.MaxBatch, want.RetentionAge = 5, 2*time.Hour
	if r.Values != want {
		t.Fatalf("values %+v, want %+v", r.Values, want)
	}
	if len(r.Unknown) != 1 || r.Unknown[0] != "retention/days" {
		t.Errorf("unknown %v", r.Unknown)
	}
	got := map[string]Info{}
	for _, inf := range r.Infos {
		got[inf.Spec.Key] = inf
	}
	if i := got["ingest/max_batch"]; i.Source != SourceEtcd || string(i.Value) != "5" || string(i.Default) != "10000" || i.Revision != 7 {
		t.Errorf("max_batch %+v", i)
	}
	if i := got["log/level"]; i.Source != SourceDefault || string(i.Value) != `"info"` || i.Refused == "" {
		t.Errorf("a refused stored value must leave the default applied and say why: %+v", i)
	}
	if i := got["retention/max_age"]; string(i.Value) != `"2h0m0s"` || string(i.Default) != `"0s"` {
		t.Errorf("max_age %s default %s", i.Value, i.Default)
	}
	if i := got["ingest/idempotency_window"]; i.Source != SourceDefault || string(i.Value) != "200000" {
		t.Errorf("window %+v", i)
	}
}
