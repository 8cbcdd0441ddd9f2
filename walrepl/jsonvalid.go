package walrepl

import "encoding/binary"

// validJSON reports whether b is exactly one JSON value with optional
// surrounding whitespace: the verdict of encoding/json's Valid, which stays
// the reference (FuzzValidJSON and TestValidJSON hold the two to the same
// answer). Like Valid, it bounds nesting at 10000 arrays and objects and
// accepts any byte of 0x80 and above inside strings (encoding/json does not
// check UTF-8; decoding replaces bad sequences).
//
// It exists for speed: a payload check is on the path of every frame
// recovery reads (DESIGN §4, WAL_CORRUPT_INVALID_JSON) and every frame a
// follower applies, and encoding/json's byte-at-a-time state machine was
// three quarters of the CPU of opening a WAL (docs/decisions.md).
func validJSON(b []byte) bool {
	v := jsonValidator{b: b}
	v.space()
	if !v.value() {
		return false
	}
	v.space()
	return v.i == len(b)
}

// jsonMaxDepth is encoding/json's bound on nested arrays and objects.
const jsonMaxDepth = 10000

// jsonPlain marks the bytes a string holds that need no attention: not the
// closing quote, not a backslash, not a control character.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x100; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

type jsonValidator struct {
	b     []byte
	i     int
	depth int
}

func (v *jsonValidator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *jsonValidator) value() bool {
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '"':
		return v.str()
	case c == '{':
		return v.object()
	case c == '[':
		return v.array()
	case c == '-' || '0' <= c && c <= '9':
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return false
}

func (v *jsonValidator) object() bool {
	v.i++ // '{'
	if v.depth++; v.depth > jsonMaxDepth {
		return false
	}
	v.space()
	if v.i < len(v.b) && v.b[v.i] == '}' {
		v.i++
		v.depth--
		return true
	}
	for {
		if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
			return false
		}
		v.space()
		if v.i >= len(v.b) || v.b[v.i] != ':' {
			return false
		}
		v.i++
		v.space()
		if !v.value() {
			return false
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.space()
		case '}':
			v.i++
			v.depth--
			return true
		default:
			return false
		}
	}
}

func (v *jsonValidator) array() bool {
	v.i++ // '['
	if v.depth++; v.depth > jsonMaxDepth {
		return false
	}
	v.space()
	if v.i < len(v.b) && v.b[v.i] == ']' {
		v.i++
		v.depth--
		return true
	}
	for {
		if !v.value() {
			return false
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.space()
		case ']':
			v.i++
			v.depth--
			return true
		default:
			return false
		}
	}
}

// str checks the string that starts at v.i (its opening quote).
func (v *jsonValidator) str() bool {
	b, i := v.b, v.i+1
	for {
		// Eight bytes at a time while none needs attention (most of a
		// payload is string content), then byte by byte.
		for i+8 <= len(b) && !jsonSpecial8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && jsonPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '"':
			v.i = i + 1
			return true
		case '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i += 2
			case 'u':
				if i+5 >= len(b) || !jsonHex(b[i+2]) || !jsonHex(b[i+3]) || !jsonHex(b[i+4]) || !jsonHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
}

const (
	jsonOnes  = 0x0101010101010101
	jsonHighs = 0x8080808080808080
)

// jsonSpecial8 reports whether any of the eight bytes of w is a quote, a
// backslash or a control character (below 0x20). The tests of "some byte is
// zero" and "some byte is below n" are the exact ones of Bit Twiddling Hacks
// (haszero, hasless): never false when such a byte is there.
func jsonSpecial8(w uint64) bool {
	zero := func(x uint64) uint64 { return (x - jsonOnes) & ^x & jsonHighs }
	less := (w - 0x20*jsonOnes) & ^w & jsonHighs
	return less|zero(w^('"'*jsonOnes))|zero(w^('\\'*jsonOnes)) != 0
}

func jsonHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func jsonDigit(c byte) bool { return '0' <= c && c <= '9' }

func (v *jsonValidator) number() bool {
	b, i := v.b, v.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && jsonDigit(b[i]); i++ {
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !jsonDigit(b[i]) {
			return false
		}
		for ; i < len(b) && jsonDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !jsonDigit(b[i]) {
			return false
		}
		for ; i < len(b) && jsonDigit(b[i]); i++ {
		}
	}
	v.i = i
	return true
}

func (v *jsonValidator) literal(lit string) bool {
	if len(v.b)-v.i < len(lit) || string(v.b[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}
