package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
)

// LoadOptionActive marks a boot entry the firmware may boot.
const LoadOptionActive = 0x00000001

// LoadOption is an EFI_LOAD_OPTION: the content of a Boot#### variable.
type LoadOption struct {
	Attributes   uint32
	Description  string
	FilePath     DevicePath
	OptionalData []byte
}

// Marshal encodes the load option.
func (o LoadOption) Marshal() []byte {
	desc := utf16.Encode([]rune(o.Description))
	b := make([]byte, 6, 6+2*(len(desc)+1)+len(o.FilePath)+len(o.OptionalData))
	binary.LittleEndian.PutUint32(b[0:], o.Attributes)
	binary.LittleEndian.PutUint16(b[4:], uint16(len(o.FilePath)))
	for _, c := range desc {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	b = append(b, 0, 0)
	b = append(b, o.FilePath...)
	return append(b, o.OptionalData...)
}

// ParseLoadOption decodes a Boot#### variable's data (without the 4-byte
// attribute prefix efivarfs adds).
func ParseLoadOption(b []byte) (LoadOption, error) {
	var o LoadOption
	if len(b) < 8 {
		return o, errors.New("efivar: load option too short")
	}
	o.Attributes = binary.LittleEndian.Uint32(b[0:])
	fpl := int(binary.LittleEndian.Uint16(b[4:]))
	rest := b[6:]
	var desc []uint16
	for {
		if len(rest) < 2 {
			return o, errors.New("efivar: load option description not terminated")
		}
		c := binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
		if c == 0 {
			break
		}
		desc = append(desc, c)
	}
	o.Description = string(utf16.Decode(desc))
	if fpl > len(rest) {
		return o, fmt.Errorf("efivar: load option file path length %d exceeds the data (%d bytes)", fpl, len(rest))
	}
	o.FilePath = append(DevicePath(nil), rest[:fpl]...)
	if len(rest) > fpl {
		o.OptionalData = append([]byte(nil), rest[fpl:]...)
	}
	return o, nil
}
