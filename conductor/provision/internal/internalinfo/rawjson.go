package internalinfo

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// rawMemo maps the JSON text Decode made of a step's args or argsinfo to
// a private copy of the value it made it from. The value is plain
// decoded JSON (appendJSON), which JSON writes and reads back as itself:
// it is what JSON decodes the text to, which Encode then copies instead
// of parsing the text. Keyed by the text, an entry stays true whatever
// becomes of the steps.
type rawMemo map[string]any

// maxMemoDepth bounds the nesting of a value the memo keeps (JSON
// refuses to read text nested beyond 10,000 levels).
const maxMemoDepth = 100

// rawOf is a json.RawMessage: the JSON text of v. The memo keeps a
// copy of v for the text.
func (d *decoder) rawOf(v any) (json.RawMessage, bool) {
	if v == nil {
		return json.RawMessage("null"), true
	}
	text, c, ok := appendJSON(d.buf[:0], true, v, maxMemoDepth)
	if !ok {
		b, err := json.Marshal(v)
		return b, err == nil
	}
	d.buf = text
	if _, ok := d.memo[string(text)]; !ok {
		if d.memo == nil {
			d.memo = rawMemo{}
		}
		d.memo[string(text)] = c
	}
	return bytes.Clone(text), true
}

// rawValue is what JSON decodes raw JSON text to (JSON checks the text
// alike when it writes it): a copy of the memo's value for the text if it
// has one.
func (memo rawMemo) rawValue(raw json.RawMessage) (any, bool) {
	if string(raw) == "null" {
		return nil, true
	}
	if v, ok := memo[string(raw)]; ok {
		_, c, _ := appendJSON(nil, false, v, maxMemoDepth)
		return c, true
	}
	var v any
	return v, json.Unmarshal(raw, &v) == nil
}

// appendJSON returns a copy of v, and if text appends to b the JSON
// text json.Marshal makes of v, if v is plain decoded JSON nested at
// most depth levels: nil, a bool, a finite float64, a UTF-8 string, and
// non-nil []any and map[string]any (UTF-8 keys) of them.
func appendJSON(b []byte, text bool, v any, depth int) ([]byte, any, bool) {
	switch x := v.(type) {
	case nil:
		if text {
			b = append(b, "null"...)
		}
		return b, nil, true
	case bool:
		if text {
			b = strconv.AppendBool(b, x)
		}
		return b, v, true
	case float64:
		if text && finite(x) {
			b = appendFloat(b, x)
		}
		return b, v, finite(x)
	case string:
		if text {
			b = appendString(b, x)
		}
		return b, v, utf8.ValidString(x)
	case []any:
		if x == nil || depth == 0 {
			return b, nil, false
		}
		c := make([]any, len(x))
		b = appendByte(b, text, '[')
		for i, y := range x {
			if i > 0 {
				b = appendByte(b, text, ',')
			}
			var ok bool
			if b, c[i], ok = appendJSON(b, text, y, depth-1); !ok {
				return b, nil, false
			}
		}
		return appendByte(b, text, ']'), c, true
	case map[string]any:
		if x == nil || depth == 0 {
			return b, nil, false
		}
		var arr [16]string
		keys := arr[:0]
		for k := range x {
			if !utf8.ValidString(k) {
				return b, nil, false
			}
			keys = append(keys, k)
		}
		if text {
			slices.Sort(keys) // as json.Marshal does
		}
		c := make(map[string]any, len(x))
		b = appendByte(b, text, '{')
		for i, k := range keys {
			if text {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(appendString(b, k), ':')
			}
			var ok bool
			if b, c[k], ok = appendJSON(b, text, x[k], depth-1); !ok {
				return b, nil, false
			}
		}
		return appendByte(b, text, '}'), c, true
	}
	return b, nil, false
}

func appendByte(b []byte, text bool, c byte) []byte {
	if text {
		b = append(b, c)
	}
	return b
}

// appendFloat writes f as json.Marshal does (as ES6 does).
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // e-07 is e-7
		b = b[:n-1]
	}
	return b
}

// appendString writes the UTF-8 string s as json.Marshal does: HTML's
// <, > and &, control characters and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == '\u2028' || r == '\u2029' {
				b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
				start = i + size
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		i++
		start = i
	}
	return append(append(b, s[start:]...), '"')
}
