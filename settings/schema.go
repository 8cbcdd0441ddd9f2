package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of Validate, checked with errors.Is.
var (
	ErrUnknownKey = errors.New("settings: unknown key")
	ErrBadValue   = errors.New("settings: bad value")
)

// Error is a refused key or value. It wraps ErrUnknownKey or ErrBadValue.
type Error struct {
	Key    string
	Reason string
	kind   error
}

func (e *Error) Error() string {
	if e.kind == ErrUnknownKey {
		return fmt.Sprintf("%q is not a setting key", e.Key)
	}
	return fmt.Sprintf("%s: %s", e.Key, e.Reason)
}

func (e *Error) Unwrap() error { return e.kind }

// Kind is the JSON type of a setting's value.
type Kind int

const (
	// Int is a JSON integer (no fraction, no exponent).
	Int Kind = iota
	// Duration is a JSON string in Go's duration syntax: "90s", "720h".
	Duration
	// Enum is a JSON string from a fixed list.
	Enum
)

func (k Kind) String() string {
	switch k {
	case Int:
		return "integer"
	case Duration:
		return "duration"
	}
	return "string"
}

// Spec is one key of the schema.
type Spec struct {
	Key  string
	Kind Kind
	// Unit names what an Int counts ("bytes", "events").
	Unit string
	// Min and Max bound an Int, or a Duration in nanoseconds.
	Min, Max int64
	// ZeroOff: 0 (or "0s") is also allowed and turns the bound off.
	ZeroOff bool
	// Choices are an Enum's values.
	Choices []string
	// Flag is the serve flag that gives a node its default ("" if none).
	Flag string
	// Help says what the setting changes.
	Help string

	get func(*Values) any
	set func(*Values, any)
}

// LogLevels are the accepted log levels, most verbose first (--log-level and
// log/level).
var LogLevels = []string{"debug", "info", "warn", "error"}

// schema is every key, sorted by key.
var schema = []Spec{
	{Key: "ingest/idempotency_window", Kind: Int, Unit: "events", Min: 1000, Max: 10_000_000,
		Help: "a retried event id is recognised while its original is among this many most recent events that carried an id (memory grows with it)",
		get:  func(v *Values) any { return int64(v.IdempotencyWindow) },
		set:  func(v *Values, x any) { v.IdempotencyWindow = int(x.(int64)) }},
	{Key: "ingest/idempotency_window_bytes", Kind: Int, Unit: "bytes", Min: 1 << 20, Max: 1 << 30,
		Help: "the most memory the idempotency index may hold: each id costs its length plus 40 to 56 bytes, and the oldest ids are forgotten first when the next would not fit (whichever of this and ingest/idempotency_window binds first)",
		get:  func(v *Values) any { return v.IdempotencyBytes },
		set:  func(v *Values, x any) { v.IdempotencyBytes = x.(int64) }},
	{Key: "ingest/max_batch", Kind: Int, Unit: "events", Min: 1, Max: 100_000,
		Help: "most events one ingest request may carry (more: 400)",
		get:  func(v *Values) any { return int64(v.MaxBatch) },
		set:  func(v *Values, x any) { v.MaxBatch = int(x.(int64)) }},
	{Key: "ingest/max_body_bytes", Kind: Int, Unit: "bytes", Min: 1024, Max: 256 << 20, Flag: "--max-body-bytes",
		Help: "largest ingest request body (larger: 413)",
		get:  func(v *Values) any { return v.MaxBodyBytes },
		set:  func(v *Values, x any) { v.MaxBodyBytes = x.(int64) }},
	{Key: "log/level", Kind: Enum, Choices: LogLevels, Flag: "--log-level",
		Help: "the daemon's log level (etcd's own logs follow at debug)",
		get:  func(v *Values) any { return v.LogLevel },
		set:  func(v *Values, x any) { v.LogLevel = x.(string) }},
	{Key: "retention/max_age", Kind: Duration, ZeroOff: true, Min: int64(time.Minute), Max: int64(87600 * time.Hour), Flag: "--wal-retention-age",
		Help: "each node trims WAL frames older than this",
		get:  func(v *Values) any { return v.RetentionAge.String() },
		set:  func(v *Values, x any) { v.RetentionAge = x.(time.Duration) }},
	{Key: "retention/max_bytes", Kind: Int, Unit: "bytes", ZeroOff: true, Min: 1 << 20, Max: 1 << 50, Flag: "--wal-retention-bytes",
		Help: "each node keeps at most this many bytes of WAL frames, trimming the oldest",
		get:  func(v *Values) any { return v.RetentionBytes },
		set:  func(v *Values, x any) { v.RetentionBytes = x.(int64) }},
}

// Schema returns every key's Spec, sorted by key.
func Schema() []Spec { return append([]Spec(nil), schema...) }

// Lookup returns the Spec of key.
func Lookup(key string) (Spec, bool) {
	for _, s := range schema {
		if s.Key == key {
			return s, true
		}
	}
	return Spec{}, false
}

// Bounds describes the values s accepts, e.g. "1..100000 events" or
// `"0s" (off) or 1m0s..87600h0m0s`.
func (s Spec) Bounds() string {
	switch s.Kind {
	case Int:
		b := fmt.Sprintf("%d..%d %s", s.Min, s.Max, s.Unit)
		if s.ZeroOff {
			b = "0 (off) or " + b
		}
		return b
	case Duration:
		b := fmt.Sprintf("%s..%s", time.Duration(s.Min), time.Duration(s.Max))
		if s.ZeroOff {
			b = `"0s" (off) or ` + b
		}
		return b
	}
	return "one of " + strings.Join(s.Choices, ", ")
}

// Parse checks raw (a JSON value) against s and returns it as int64,
// time.Duration or string.
func (s Spec) Parse(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	bad := func(format string, args ...any) error {
		return &Error{Key: s.Key, kind: ErrBadValue,
			Reason: fmt.Sprintf(format, args...) + fmt.Sprintf("; want a %s: %s", s.Kind, s.Bounds())}
	}
	switch s.Kind {
	case Int:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, bad("%s is not an integer", raw)
		}
		if (n != 0 || !s.ZeroOff) && (n < s.Min || n > s.Max) {
			return nil, bad("%d is out of bounds", n)
		}
		return n, nil
	case Duration:
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return nil, bad(`%s is not a JSON string such as "720h"`, raw)
		}
		d, err := time.ParseDuration(str)
		if err != nil {
			return nil, bad("%q is not a duration", str)
		}
		if (d != 0 || !s.ZeroOff) && (int64(d) < s.Min || int64(d) > s.Max) {
			return nil, bad("%s is out of bounds", d)
		}
		return d, nil
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return nil, bad("%s is not a JSON string", raw)
	}
	for _, c := range s.Choices {
		if str == c {
			return str, nil
		}
	}
	return nil, bad("%q is not allowed", str)
}

// Validate checks a key and its value against the schema. The error is an
// *Error wrapping ErrUnknownKey or ErrBadValue.
func Validate(key string, raw json.RawMessage) error {
	s, ok := Lookup(key)
	if !ok {
		return &Error{Key: key, kind: ErrUnknownKey}
	}
	_, err := s.Parse(raw)
	return err
}

// Describe lists every key with its type, bounds and meaning, one a line: the
// text an operator gets with a refused write.
func Describe() string {
	var b strings.Builder
	for _, s := range schema {
		fmt.Fprintf(&b, "  %s: %s, %s — %s\n", s.Key, s.Kind, s.Bounds(), s.Help)
	}
	return strings.TrimRight(b.String(), "\n")
}
