package api

import (
	"bytes"
	"encoding/json"
)

// The ingest body is read once: one pass of eventScanner validates it as
// encoding/json would, finds each event's bytes and its top-level "id", and
// notes whether the event holds whitespace between tokens. Events without
// such whitespace (what clients send) are handed down as slices of the body,
// with no copy; the others are compacted into one buffer.
//
// The scanner only ever says "valid, and here are the events" or "not
// valid". On "not valid" ParseEvents runs parseEventsStd, the encoding/json
// implementation it replaced, for the error message, so the messages are
// unchanged. FuzzParseEvents holds the two to the same verdicts, bytes and
// ids.

// maxNestingDepth is encoding/json's bound on nested arrays and objects.
const maxNestingDepth = 10000

// strPlain marks the bytes a string can hold that need no attention: not
// the closing quote, not a backslash, not a control character (invalid),
// not the start of a multi-byte UTF-8 sequence.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// idRef is where an object's "id" member is: the last member whose key
// encoding/json would match to a field tagged `json:"id"` (keys match
// case-insensitively, and a later duplicate wins).
type idRef struct {
	set     bool
	exact   bool // the key is spelled exactly "id"
	special bool // the value is a string with escapes or non-ASCII bytes
	v0, v1  int  // the value's bytes
}

type eventScanner struct {
	b     []byte
	i     int
	depth int
	ws    bool // whitespace was skipped since it was last cleared
	// lastSpecial: the last string scanned held escapes or non-ASCII bytes.
	lastSpecial bool
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func (s *eventScanner) skipSpace() {
	i := s.i
	for i < len(s.b) && isSpace(s.b[i]) {
		i++
	}
	if i != s.i {
		s.ws = true
		s.i = i
	}
}

func (s *eventScanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array()
	case c == '"':
		return s.str()
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

// object scans the object at s.i; with id, it records the "id" member.
func (s *eventScanner) object(id *idRef) bool {
	s.i++ // '{'
	if s.depth++; s.depth > maxNestingDepth {
		return false
	}
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		k0 := s.i
		if !s.str() {
			return false
		}
		k1, keySpecial := s.i, s.lastSpecial
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.skipSpace()
		v0 := s.i
		s.lastSpecial = false
		if !s.value() {
			return false
		}
		if id != nil {
			if exact, ok := idKey(s.b[k0:k1], keySpecial); ok {
				*id = idRef{set: true, exact: exact, special: s.lastSpecial, v0: v0, v1: s.i}
			}
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *eventScanner) array() bool {
	s.i++ // '['
	if s.depth++; s.depth > maxNestingDepth {
		return false
	}
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str scans the string at s.i and sets s.lastSpecial.
func (s *eventScanner) str() bool {
	b := s.b
	i := s.i + 1
	special := false
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			s.lastSpecial = special
			return true
		case c == '\\':
			special = true
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i += 2
			case 'u':
				if i+5 >= len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default: // c >= 0x80: any byte is valid JSON; decoding replaces bad UTF-8
			special = true
			i++
		}
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (s *eventScanner) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	s.i = i
	return true
}

func (s *eventScanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// idKey reports whether encoding/json would decode the member with this key
// (quotes included) into a field tagged `json:"id"`, and whether the key is
// spelled exactly "id". Keys with escapes or non-ASCII bytes (special) are
// asked of encoding/json itself, so that its unescaping and case folding
// decide.
func idKey(key []byte, special bool) (exact, ok bool) {
	if !special {
		if len(key) != 4 || key[1]|0x20 != 'i' || key[2]|0x20 != 'd' {
			return false, false
		}
		return key[1] == 'i' && key[2] == 'd', true
	}
	if len(key) > 2+2*12 { // two runes, each at most a surrogate pair of \u escapes
		return false, false
	}
	probe := make([]byte, 0, len(key)+4)
	probe = append(append(append(probe, '{'), key...), ":0}"...)
	var e struct {
		ID json.RawMessage `json:"id"`
	}
	return false, json.Unmarshal(probe, &e) == nil && e.ID != nil
}

// resolve returns the id as eventIDStd reads it from payload, the event
// whose members r refers to (by offsets into buf).
func (r *idRef) resolve(buf, payload []byte) string {
	if !r.set {
		return ""
	}
	// eventIDStd looks for the key only in events whose bytes hold `"id"`.
	if !r.exact && !bytes.Contains(payload, []byte(`"id"`)) {
		return ""
	}
	v := buf[r.v0:r.v1]
	switch {
	case v[0] != '"':
		if string(v) == "null" {
			return ""
		}
		return string(v) // a numeric id, kept in its JSON spelling
	case !r.special:
		return string(v[1 : len(v)-1])
	}
	var id string
	if json.Unmarshal(v, &id) != nil {
		return ""
	}
	return id
}

// EventID returns the optional client event id of one event (DESIGN §6 rule
// 10): the value of its top-level "id" if that is a string, the JSON
// spelling of any other value but null, or "" for none. It reads a payload
// as the id index always has (eventIDStd), in one pass without a decode.
func EventID(payload []byte) string {
	s := eventScanner{b: payload}
	var id idRef
	if len(payload) == 0 || payload[0] != '{' || !s.object(&id) || s.i != len(payload) {
		return eventIDStd(payload)
	}
	return id.resolve(payload, payload)
}

// eventIDStd is how the id index has always read an event's id, with
// encoding/json. EventID falls back to it for payloads that are not a
// single JSON object; FuzzEventID holds EventID to it.
func eventIDStd(payload []byte) string {
	if !bytes.Contains(payload, []byte(`"id"`)) {
		return "" // the common case, without a JSON decode
	}
	var e struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(payload, &e) != nil || len(e.ID) == 0 || string(e.ID) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(e.ID, &s) == nil {
		return s
	}
	return string(e.ID) // a numeric id, kept in its JSON spelling
}

// eventSpan is one event of a scanned body.
type eventSpan struct {
	start, end int
	ws         bool // holds whitespace between tokens: must be compacted
	id         idRef
}

// scanEvents is ParseEvents' single pass over a trimmed, non-empty body. ok
// is false for every body parseEventsStd rejects (the caller then asks it
// why); otherwise the events are exactly what parseEventsStd returns, and
// ids[i] is EventID(payloads[i]).
func scanEvents(body []byte, maxEvents int) (payloads [][]byte, ids []string, ok bool) {
	s := eventScanner{b: body}
	var spans []eventSpan
	event := func() bool {
		if s.i >= len(body) || body[s.i] != '{' {
			return false
		}
		sp := eventSpan{start: s.i}
		s.ws = false
		if !s.object(&sp.id) {
			return false
		}
		sp.end, sp.ws = s.i, s.ws
		spans = append(spans, sp)
		return len(spans) <= maxEvents
	}
	if body[0] == '[' { // an array of objects, and nothing after it
		s.i, s.depth = 1, 1
		s.skipSpace()
		if s.i < len(body) && body[s.i] == ']' {
			return nil, nil, false // empty
		}
		for {
			if !event() {
				return nil, nil, false
			}
			s.skipSpace()
			if s.i >= len(body) {
				return nil, nil, false
			}
			if body[s.i] == ']' {
				s.i++
				break
			}
			if body[s.i] != ',' {
				return nil, nil, false
			}
			s.i++
			s.skipSpace()
		}
		if s.i != len(body) {
			return nil, nil, false
		}
	} else { // objects, one after another (NDJSON, or one object)
		for s.i < len(body) {
			if !event() {
				return nil, nil, false
			}
			s.skipSpace()
		}
	}

	payloads = make([][]byte, len(spans))
	ids = make([]string, len(spans))
	compactBytes := 0
	for _, sp := range spans {
		if sp.ws {
			compactBytes += sp.end - sp.start
		}
	}
	var buf []byte
	if compactBytes > 0 {
		buf = make([]byte, 0, compactBytes) // never grows: compacting only shrinks
	}
	for j, sp := range spans {
		raw := body[sp.start:sp.end:sp.end]
		if !sp.ws {
			payloads[j] = raw
			ids[j] = sp.id.resolve(body, raw)
			continue
		}
		from := len(buf)
		buf = appendCompactValid(buf, raw)
		payloads[j] = buf[from:len(buf):len(buf)]
		ids[j] = EventID(payloads[j]) // the id's own bytes may have been compacted
	}
	return payloads, ids, true
}

// appendCompactValid appends src, valid JSON, without the whitespace
// between its tokens (json.Compact without the checks).
func appendCompactValid(dst, src []byte) []byte {
	start := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[start:i]...)
			start = i + 1
		case '"':
			for i++; src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		}
	}
	return append(dst, src[start:]...)
}
