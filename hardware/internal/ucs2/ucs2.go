// Package ucs2 decodes the little-endian UTF-16 strings that firmware
// structures hold (GPT partition names, UEFI device paths and load option
// descriptions).
package ucs2

import (
	"encoding/binary"
	"unicode/utf16"
)

// Decode decodes little-endian UTF-16 up to the first NUL code unit (or
// the end of b; an odd trailing byte is ignored).
func Decode(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
