package lldp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EtherType is LLDP's Ethernet type.
const EtherType = 0x88cc

// Limits on what one frame may make the collector hold.
const (
	// MaxFrameSize is the largest frame accepted, Ethernet header
	// included: a jumbo frame. Switches send LLDPDUs of a few hundred
	// bytes; IPA reads at most 1600.
	MaxFrameSize = 9216
	// MaxTLVs is the most TLVs taken from one LLDPDU. A 1500-byte frame
	// full of VLAN names carries about 120.
	MaxTLVs = 512
)

// headerLen is the Ethernet header: destination, source, ethertype.
const headerLen = 14

// Type values of the TLVs this package itself looks at.
const (
	// TypeEnd ends an LLDPDU; whatever follows is padding.
	TypeEnd = 0
	// TypeChassisID, TypePortID and TypeTTL must open every LLDPDU, in
	// this order (IEEE 802.1AB).
	TypeChassisID = 1
	TypePortID    = 2
	TypeTTL       = 3
)

// Errors of ParseFrame and ParseLLDPDU, for errors.Is.
var (
	ErrNotLLDP     = errors.New("not an LLDP frame")
	ErrOversized   = errors.New("frame larger than the LLDP limit")
	ErrTruncated   = errors.New("truncated LLDP frame")
	ErrTooManyTLVs = errors.New("too many TLVs in one LLDPDU")
	ErrEmpty       = errors.New("LLDPDU without TLVs")
	ErrMandatory   = errors.New("LLDPDU does not open with Chassis ID, Port ID and TTL")
)

// TLV is one type-length-value element of an LLDPDU.
type TLV struct {
	// Type is the 7-bit TLV type.
	Type uint8
	// Value is the TLV's value (at most 511 bytes); it shares the
	// frame's memory.
	Value []byte
}

// ParseFrame splits an Ethernet frame carrying LLDP (as a raw socket
// reads it: no preamble, no FCS, no 802.1Q tag) into its TLVs. See
// ParseLLDPDU for what is returned with an error.
func ParseFrame(frame []byte) ([]TLV, error) {
	if f := checkHeader(frame); f.kind != nil {
		return nil, f.err()
	}
	return ParseLLDPDU(frame[headerLen:])
}

// ParseLLDPDU splits an LLDPDU into its TLVs, in order, up to and
// including the End of LLDPDU TLV; bytes after it (Ethernet padding) are
// ignored, and a PDU that simply runs out without one is accepted, as IPA
// does. The values share pdu's memory, and the slice is allocated once, at
// its final size.
//
// A TLV whose declared length runs past the end (ErrTruncated), a 513th
// TLV (ErrTooManyTLVs), a PDU with no TLV at all (ErrEmpty) or one that
// does not open with the Chassis ID, Port ID and TTL TLVs, as IEEE 802.1AB
// requires and as receivers such as lldpd check (ErrMandatory), is an
// error; the TLVs read before the problem are returned with it.
func ParseLLDPDU(pdu []byte) ([]TLV, error) {
	n, f := count(pdu)
	var err error
	if f.kind != nil {
		err = f.err()
	}
	if n == 0 {
		return nil, err
	}
	tlvs := make([]TLV, n)
	for i, off := 0, 0; i < n; i++ {
		tlvs[i], off = next(pdu, off)
	}
	return tlvs, err
}

// wellFormed says, without allocating, whether ParseFrame would accept
// frame: the listener's test for each frame it reads, however many a
// hostile peer sends.
func wellFormed(frame []byte) bool {
	if checkHeader(frame).kind != nil {
		return false
	}
	_, f := count(frame[headerLen:])
	return f.kind == nil
}

// failure is why a frame was refused, kept as plain values so that
// refusing a frame allocates nothing; err formats it.
type failure struct {
	kind                   error
	what                   string
	tlv, typ, have, needed int
}

func (f failure) err() error {
	switch f.what {
	case "oversized":
		return fmt.Errorf("%w: %d bytes, at most %d", f.kind, f.have, MaxFrameSize)
	case "runt":
		return fmt.Errorf("%w: %d bytes, shorter than an Ethernet header", f.kind, f.have)
	case "ethertype":
		return fmt.Errorf("%w: ethertype %#04x", f.kind, f.typ)
	case "header":
		return fmt.Errorf("%w: %d byte left where a TLV header needs 2", f.kind, f.have)
	case "value":
		return fmt.Errorf("%w: TLV %d (type %d) declares %d bytes, %d remain", f.kind, f.tlv, f.typ, f.needed, f.have)
	case "count":
		return fmt.Errorf("%w: more than %d", f.kind, MaxTLVs)
	case "mandatory":
		return fmt.Errorf("%w: TLV %d has type %d", f.kind, f.tlv, f.typ)
	case "short":
		return fmt.Errorf("%w: %d TLVs in all", f.kind, f.have)
	}
	return f.kind
}

// checkHeader checks the frame's size and ethertype.
func checkHeader(frame []byte) failure {
	switch {
	case len(frame) > MaxFrameSize:
		return failure{kind: ErrOversized, what: "oversized", have: len(frame)}
	case len(frame) < headerLen:
		return failure{kind: ErrTruncated, what: "runt", have: len(frame)}
	}
	if et := binary.BigEndian.Uint16(frame[12:14]); et != EtherType {
		return failure{kind: ErrNotLLDP, what: "ethertype", typ: int(et)}
	}
	return failure{}
}

// count checks pdu's TLVs as ParseLLDPDU describes and returns how many
// there are before the End TLV (included) or the problem.
func count(pdu []byte) (int, failure) {
	n := 0
	var mandatory failure
	for off := 0; off < len(pdu); {
		if len(pdu)-off < 2 {
			return n, failure{kind: ErrTruncated, what: "header", have: len(pdu) - off}
		}
		h := binary.BigEndian.Uint16(pdu[off:])
		typ, l := int(h>>9), int(h&0x1ff)
		if l > len(pdu)-off-2 {
			return n, failure{kind: ErrTruncated, what: "value", tlv: n + 1, typ: typ, needed: l, have: len(pdu) - off - 2}
		}
		if n == MaxTLVs {
			return n, failure{kind: ErrTooManyTLVs, what: "count"}
		}
		if n < 3 && typ != TypeChassisID+n && mandatory.kind == nil {
			mandatory = failure{kind: ErrMandatory, what: "mandatory", tlv: n + 1, typ: typ}
		}
		n++
		off += 2 + l
		if typ == TypeEnd {
			break
		}
	}
	if n == 0 {
		return 0, failure{kind: ErrEmpty}
	}
	if n < 3 && mandatory.kind == nil {
		mandatory = failure{kind: ErrMandatory, what: "short", have: n}
	}
	return n, mandatory
}

// next decodes the TLV at off, which count has checked, and returns it
// with the offset of the one after.
func next(pdu []byte, off int) (TLV, int) {
	h := binary.BigEndian.Uint16(pdu[off:])
	l := int(h & 0x1ff)
	end := off + 2 + l
	return TLV{Type: uint8(h >> 9), Value: pdu[off+2 : end : end]}, end
}
