package erase

import (
	"encoding/binary"
	"fmt"
	"time"
)

// ATA commands of the security feature set (ACS-3 §7.42–7.46) and their
// SCSI/ATA Translation transport, ATA PASS-THROUGH (16).
const (
	ataIdentify           = 0xec
	ataSecuritySetPass    = 0xf1
	ataSecurityErasePrep  = 0xf3
	ataSecurityEraseUnit  = 0xf4
	ataPassThrough16      = 0x85
	ataProtoNonData       = 3
	ataProtoPIODataIn     = 4
	ataProtoPIODataOut    = 5
	ataSecurityPassword   = "NULL" // the temporary user password IPA also uses
	ataDefaultEraseTime   = 2 * time.Hour
	ataMaxEraseTime       = 12 * time.Hour
	ataSectorBytes        = 512
	ataIdentifyWordSecSup = 82
	ataIdentifyWordSec    = 128
	ataIdentifyWordTime   = 89
	ataIdentifyWordETime  = 90
)

// ataSecurity is word 128 of IDENTIFY DEVICE (plus word 82's support bit).
type ataSecurity struct {
	Supported, Enabled, Locked, Frozen, CountExpired, EnhancedSupported bool
	// EraseTime and EnhancedEraseTime are the drive's estimates, 0 when
	// it gives none.
	EraseTime, EnhancedEraseTime time.Duration
}

// parseIdentifySecurity decodes the security state from the 512-byte
// IDENTIFY DEVICE data.
func parseIdentifySecurity(b []byte) (ataSecurity, error) {
	if len(b) < ataSectorBytes {
		return ataSecurity{}, fmt.Errorf("identify device: %d bytes, want 512", len(b))
	}
	word := func(i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }
	w82, w128 := word(ataIdentifyWordSecSup), word(ataIdentifyWordSec)
	s := ataSecurity{
		Supported:         w82&0x2 != 0 && w128&0x1 != 0,
		Enabled:           w128&0x2 != 0,
		Locked:            w128&0x4 != 0,
		Frozen:            w128&0x8 != 0,
		CountExpired:      w128&0x10 != 0,
		EnhancedSupported: w128&0x20 != 0,
	}
	s.EraseTime = eraseTime(word(ataIdentifyWordTime))
	s.EnhancedEraseTime = eraseTime(word(ataIdentifyWordETime))
	return s, nil
}

// eraseTime decodes words 89/90: with bit 15 set, bits 14:0 count 2-minute
// units (ACS-3); otherwise bits 7:0 do. 0 means no estimate.
func eraseTime(w uint16) time.Duration {
	var units uint16
	if w&0x8000 != 0 {
		units = w & 0x7fff
	} else {
		units = w & 0xff
	}
	if units == 0 || units == 0xff || units == 0x7fff {
		return 0
	}
	return time.Duration(units) * 2 * time.Minute
}

// ataCDB builds an ATA PASS-THROUGH (16) command descriptor block for a
// 28-bit command: protocol, the command, and a 512-byte transfer when the
// protocol moves data (sector count 1, length in blocks).
func ataCDB(protocol byte, command byte) [16]byte {
	var c [16]byte
	c[0] = ataPassThrough16
	c[1] = protocol << 1
	switch protocol {
	case ataProtoPIODataIn:
		c[2] = 0x0e // t_dir from device, byt_blok, t_length in sector count
		c[6] = 1
	case ataProtoPIODataOut:
		c[2] = 0x06 // t_dir to device, byt_blok, t_length in sector count
		c[6] = 1
	}
	c[13] = 0x40 // device: LBA mode
	c[14] = command
	return c
}

// ataPasswordBlock builds the 512-byte data of SECURITY SET PASSWORD and
// SECURITY ERASE UNIT: word 0 (bit 0 master password, bit 1 enhanced
// erase) then the 32-byte password.
func ataPasswordBlock(enhanced bool) []byte {
	b := make([]byte, ataSectorBytes)
	if enhanced {
		b[0] |= 0x2
	}
	copy(b[2:34], ataSecurityPassword)
	return b
}

// ataEraseTimeout is how long SECURITY ERASE UNIT may take: twice the
// drive's estimate, a default when it gives none, capped.
func ataEraseTimeout(s ataSecurity, enhanced bool) time.Duration {
	est := s.EraseTime
	if enhanced {
		est = s.EnhancedEraseTime
	}
	if est == 0 {
		return ataDefaultEraseTime
	}
	return min(2*est+5*time.Minute, ataMaxEraseTime)
}
