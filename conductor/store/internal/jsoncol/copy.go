package jsoncol

import "unicode/utf8"

// CopyDecoded returns a deep copy of m, a JSON column's map, provided it
// holds only what decoding its encoding yields (maps, slices, strings that
// are valid UTF-8, float64, bools and nulls; no nil map or slice): the
// copy then equals the decoding of Encode(m). A map holding an int, a
// struct or anything else decodes to other values than it holds: ok is
// false. One walk both checks and copies.
func CopyDecoded(m map[string]any) (_ map[string]any, ok bool) {
	if m == nil {
		return nil, false
	}
	c := make(map[string]any, len(m))
	for k, e := range m {
		if !utf8.ValidString(k) {
			return nil, false
		}
		v, ok := copyDecoded(e)
		if !ok {
			return nil, false
		}
		c[k] = v
	}
	return c, true
}

func copyDecoded(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return CopyDecoded(x)
	case []any:
		if x == nil {
			return nil, false
		}
		c := make([]any, len(x))
		for i, e := range x {
			v, ok := copyDecoded(e)
			if !ok {
				return nil, false
			}
			c[i] = v
		}
		return c, true
	case string:
		return x, utf8.ValidString(x)
	case float64, bool, nil:
		return x, true
	default:
		return nil, false
	}
}
