package configiso

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"unicode"
	"unsafe"

	"github.com/klauspost/compress/gzip"
)

// Limits of a config drive, end to end. The decoded image may be at most
// the agent's limit (configdrive.MaxSize, 64 MiB), whatever form it comes
// in; a JSON description is bounded before anything is built from it.
const (
	// MaxJSONSize caps a config drive description's JSON text: its files
	// go into an image of at most MaxSize.
	MaxJSONSize = MaxSize
	// MaxJSONValues caps the values (objects, arrays, strings, numbers,
	// booleans, nulls; keys not counted) in a description: metadata and
	// network data are tens or hundreds of values, and each costs
	// decoding memory out of proportion to its bytes.
	MaxJSONValues = 100_000
	// MaxJSONDepth caps the nesting of a description.
	MaxJSONDepth = 32
)

// CheckJSON checks a config drive description's JSON text against the
// limits above before it is decoded: its size, the number of values and
// the depth, reading it as a token stream (no tree is built). The error
// wraps ErrInvalid.
func CheckJSON(b []byte) error {
	if len(b) > MaxJSONSize {
		return fmt.Errorf("%w: the description is %d bytes of JSON, more than %d MiB", ErrInvalid, len(b), MaxJSONSize>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	values, depth := 0, 0
	// inObject[i] says whether nesting level i is an object, whose keys
	// are tokens too but not values.
	var inObject []bool
	expectKey := false
	for {
		tok, err := dec.Token()
		switch {
		case err == io.EOF && values > 0 && depth == 0:
			return nil
		case err == io.EOF:
			return fmt.Errorf("%w: the description's JSON ends early", ErrInvalid)
		case err != nil:
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		case values > 0 && depth == 0:
			return fmt.Errorf("%w: more than one JSON value", ErrInvalid)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			depth--
			inObject = inObject[:len(inObject)-1]
			expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
			continue
		}
		if expectKey {
			expectKey = false // the key; its value comes next
			continue
		}
		values++
		if values > MaxJSONValues {
			return fmt.Errorf("%w: the description has more than %d values", ErrInvalid, MaxJSONValues)
		}
		if d, ok := tok.(json.Delim); ok {
			depth++
			if depth > MaxJSONDepth {
				return fmt.Errorf("%w: the description nests deeper than %d levels", ErrInvalid, MaxJSONDepth)
			}
			inObject = append(inObject, d == '{')
			expectKey = d == '{'
			continue
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// checkFiles refuses a description whose files cannot fit in an image of
// MaxSize: every file is written once per metadata version.
func checkFiles(files map[string][]byte) error {
	var n int64
	for _, b := range files {
		n += int64(len(b))
	}
	if n*int64(len(Versions)) > MaxSize {
		return fmt.Errorf("%w: its files are %d bytes, written for %d metadata versions: more than %d MiB",
			ErrInvalid, n, len(Versions), MaxSize>>20)
	}
	return nil
}

// CheckString checks a config drive given as a string the way the agent
// will decode it (imagewriter/configdrive.Decode), without holding the
// decoded image: an http(s) URL passes (the agent fetches and checks it);
// base64 text (any of the four alphabets, whitespace ignored), or else the
// text itself, is the image, gunzipped when gzipped, which must not be
// empty nor larger than MaxSize. The error wraps ErrInvalid.
func CheckString(s string) error {
	return CheckBytes(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// CheckBytes is CheckString of b, which it only reads (and does not keep).
func CheckBytes(b []byte) error {
	if t := bytes.TrimSpace(b); bytes.HasPrefix(t, []byte("http://")) || bytes.HasPrefix(t, []byte("https://")) {
		return nil // configdrive.IsURL, without a copy
	}
	trimmed := b
	if bytes.IndexFunc(b, unicode.IsSpace) >= 0 {
		trimmed = bytes.Join(bytes.Fields(b), nil)
	}
	var raw func() io.Reader
	if len(trimmed) > 0 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if decodes(enc, trimmed) {
				raw = func() io.Reader { return base64.NewDecoder(enc, bytes.NewReader(trimmed)) }
				break
			}
		}
	}
	if raw == nil {
		raw = func() io.Reader { return bytes.NewReader(b) }
	}
	var head [2]byte
	n, _ := io.ReadFull(raw(), head[:])
	var size int64
	if n == 2 && head == [2]byte{0x1f, 0x8b} {
		z, err := gzip.NewReader(raw())
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		defer z.Close()
		size, err = io.Copy(io.Discard, io.LimitReader(z, MaxSize+1))
		if err != nil {
			return fmt.Errorf("%w: gunzip: %v", ErrInvalid, err)
		}
	} else {
		var err error
		if size, err = io.Copy(io.Discard, raw()); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	switch {
	case size == 0:
		return fmt.Errorf("%w: empty", ErrInvalid)
	case size > MaxSize:
		return fmt.Errorf("%w: larger than %d MiB once decoded (the agent's limit)", ErrInvalid, MaxSize>>20)
	}
	return nil
}

// decodes reports whether b is entirely valid in enc (as DecodeString
// would find), streaming.
func decodes(enc *base64.Encoding, b []byte) bool {
	_, err := io.Copy(io.Discard, base64.NewDecoder(enc, bytes.NewReader(b)))
	return err == nil
}
