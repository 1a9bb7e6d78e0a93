package lldp

import (
	"encoding/binary"
)

// Frame building for the tests: what a switch puts on the wire.

var (
	nearestBridge = []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
	switchMAC     = []byte{0x3c, 0xfd, 0xfe, 0x00, 0x17, 0x01}
)

// tlv encodes one TLV: 7-bit type, 9-bit length, value.
func tlv(typ uint8, value ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(typ)<<9|uint16(len(value)))
	return append(b, value...)
}

// org is an organizationally specific TLV (type 127).
func org(oui [3]byte, subtype byte, info ...byte) []byte {
	return tlv(127, append([]byte{oui[0], oui[1], oui[2], subtype}, info...)...)
}

var dot1 = [3]byte{0x00, 0x80, 0xc2}

// frame is an Ethernet frame to LLDP's nearest-bridge address carrying
// the TLVs given, one after the other.
func frame(tlvs ...[]byte) []byte {
	f := append(append(append([]byte{}, nearestBridge...), switchMAC...), 0x88, 0xcc)
	for _, t := range tlvs {
		f = append(f, t...)
	}
	return f
}

// str is s's bytes, prefixed by a subtype byte when one is given.
func str(sub int, s string) []byte {
	if sub < 0 {
		return []byte(s)
	}
	return append([]byte{byte(sub)}, s...)
}

// switchFrame is a frame as a top-of-rack switch sends it: chassis MAC,
// port name, TTL 120, port description, system name and description,
// capabilities (bridge, router), management address 192.0.2.10, PVID 100,
// VLAN 100 "prov", End, then Ethernet padding.
func switchFrame() []byte {
	return append(frame(
		tlv(1, append([]byte{4}, switchMAC...)...),
		tlv(2, str(5, "Ethernet1/7")...),
		tlv(3, 0x00, 0x78),
		tlv(4, str(-1, "uplink to node-17")...),
		tlv(5, str(-1, "sw-rivet-01")...),
		tlv(6, str(-1, "Rivet test switch")...),
		tlv(7, 0x00, 0x14, 0x00, 0x14),
		tlv(8, 5, 1, 192, 0, 2, 10, 2, 0, 0, 0, 1, 0),
		org(dot1, 1, 0x00, 0x64),
		org(dot1, 3, append([]byte{0x00, 0x64, 4}, "prov"...)...),
		tlv(0),
	), make([]byte, 6)...)
}
