package lldp

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// TestParseSwitchFrame splits a switch's frame: every TLV in order, End
// included, and the padding after End ignored.
func TestParseSwitchFrame(t *testing.T) {
	tlvs, err := ParseFrame(switchFrame())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ   uint8
		value string
	}{
		{1, "\x04" + string(switchMAC)}, {2, "\x05Ethernet1/7"}, {3, "\x00\x78"}, {4, "uplink to node-17"},
		{5, "sw-rivet-01"}, {6, "Rivet test switch"}, {7, "\x00\x14\x00\x14"},
		{8, "\x05\x01\xc0\x00\x02\x0a\x02\x00\x00\x00\x01\x00"},
		{127, "\x00\x80\xc2\x01\x00\x64"}, {127, "\x00\x80\xc2\x03\x00\x64\x04prov"}, {0, ""},
	}
	if len(tlvs) != len(want) {
		t.Fatalf("%d TLVs, want %d: %v", len(tlvs), len(want), tlvs)
	}
	for i, w := range want {
		if tlvs[i].Type != w.typ || string(tlvs[i].Value) != w.value {
			t.Errorf("TLV %d = {%d %q}, want {%d %q}", i, tlvs[i].Type, tlvs[i].Value, w.typ, w.value)
		}
	}
}

// TestParseMalformed covers frames a parser must survive: each gives its
// error class, and the TLVs read before the problem.
func TestParseMalformed(t *testing.T) {
	many := make([][]byte, 4000)
	for i := range many {
		many[i] = tlv(9)
	}
	cases := []struct {
		name    string
		frame   []byte
		err     error
		partial int
	}{
		{"runt", []byte{0x01, 0x80, 0xc2}, ErrTruncated, 0},
		{"IPv4", append(frame(tlv(1, 4, 1)), 0)[:14+3], ErrNotLLDP, 0},
		{"oversized", frame(tlv(6, make([]byte, 511)...), bytes.Repeat(tlv(6, make([]byte, 511)...), 18)), ErrOversized, 0},
		{"header only", frame(), ErrEmpty, 0},
		{"trailing byte", frame(tlv(1, 4, 1), []byte{0x02}), ErrTruncated, 1},
		{"length past the end", frame(tlv(1, 4, 1), tlv(5, []byte("sw01")...)[:4]), ErrTruncated, 1},
		{"thousands of TLVs", frame(many...), ErrTooManyTLVs, MaxTLVs},
		{"thousands of TLVs after a valid start", frame(append([][]byte{tlv(1, 4, 1), tlv(2, 7, 'p'), tlv(3, 0, 120)}, many...)...), ErrTooManyTLVs, MaxTLVs},
	}
	cases[1].frame[12], cases[1].frame[13] = 0x08, 0x00
	for _, c := range cases {
		tlvs, err := ParseFrame(c.frame)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.err)
		}
		if len(tlvs) != c.partial {
			t.Errorf("%s: %d TLVs before the error, want %d", c.name, len(tlvs), c.partial)
		}
	}
}

// TestParseMandatory refuses LLDPDUs that do not open with Chassis ID,
// Port ID and TTL, such as a PDU of zeros (an End TLV, then padding):
// taking one would end the wait on that interface with nothing useful.
func TestParseMandatory(t *testing.T) {
	for name, f := range map[string][]byte{
		"zeros":        frame(make([]byte, 46)),
		"no TTL":       frame(tlv(1, 4, 1, 2, 3, 4, 5, 6), tlv(2, 7, 'p'), tlv(0)),
		"out of order": frame(tlv(2, 7, 'p'), tlv(1, 4, 1, 2, 3, 4, 5, 6), tlv(3, 0, 120), tlv(0)),
		"chassis only": frame(tlv(1, 4, 1, 2, 3, 4, 5, 6)),
	} {
		if tlvs, err := ParseFrame(f); !errors.Is(err, ErrMandatory) || len(tlvs) == 0 {
			t.Errorf("%s: %v %v", name, tlvs, err)
		}
		if wellFormed(f) {
			t.Errorf("%s: accepted by the listener's check", name)
		}
	}
}

// TestParseWithoutEnd accepts an LLDPDU that runs out without an End TLV,
// as IPA does.
func TestParseWithoutEnd(t *testing.T) {
	tlvs, err := ParseFrame(frame(tlv(1, 4, 1, 2, 3, 4, 5, 6), tlv(2, 7, 'p'), tlv(3, 0, 120)))
	if err != nil || len(tlvs) != 3 || tlvs[2].Type != 3 {
		t.Fatalf("%v %v", tlvs, err)
	}
}

// TestParseMemoryIsBounded parses the worst frames a socket can deliver
// (a jumbo frame of zero-length TLVs, one of maximal TLVs, one whose last
// TLV claims more than is left) and measures what parsing allocates:
// never more than the TLV slice for MaxTLVs entries, whatever the frame
// declares.
func TestParseMemoryIsBounded(t *testing.T) {
	zeroLen := make([][]byte, (MaxFrameSize-headerLen)/2)
	for i := range zeroLen {
		zeroLen[i] = tlv(9)
	}
	big := make([][]byte, (MaxFrameSize-headerLen)/513)
	for i := range big {
		big[i] = tlv(6, make([]byte, 511)...)
	}
	lying := frame(tlv(1, 4, 1), []byte{0xff, 0xff})
	const tlvSize = 32 // a TLV: type, padding, slice header
	for name, f := range map[string][]byte{"zero-length TLVs": frame(zeroLen...), "maximal TLVs": frame(big...), "lying length": lying} {
		if len(f) > MaxFrameSize {
			t.Fatalf("%s: test frame of %d bytes", name, len(f))
		}
		const runs = 50
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := ParseFrame(f); err == nil && name != "maximal TLVs" {
				t.Fatalf("%s parsed without error", name)
			}
		}
		runtime.ReadMemStats(&after)
		per := (after.TotalAlloc - before.TotalAlloc) / runs
		// One slice of at most MaxTLVs entries (rounded up by the
		// allocator to its next size class, 9/8 here) and the error.
		if limit := uint64(MaxTLVs*tlvSize*9/8 + 1024); per > limit {
			t.Errorf("%s: %d bytes allocated per parse, limit %d", name, per, limit)
		}
		t.Logf("%s (%d bytes): %d bytes allocated per parse", name, len(f), per)
	}
}

// FuzzParseLLDPDU feeds arbitrary bytes to the TLV parser: it never
// panics, never returns more than MaxTLVs TLVs or a value over 511 bytes,
// and what it returns re-encodes to the bytes it consumed.
func FuzzParseLLDPDU(f *testing.F) {
	f.Add(switchFrame()[headerLen:])
	f.Add([]byte{})
	f.Add([]byte{0x02})
	f.Add([]byte{0xff, 0xff, 0x00})
	f.Add(bytes.Repeat([]byte{0x12, 0x00}, 600))
	f.Fuzz(func(t *testing.T, pdu []byte) {
		tlvs, err := ParseLLDPDU(pdu)
		if ok := wellFormed(append(frame(), pdu...)); ok != (err == nil) && len(pdu) <= MaxFrameSize-headerLen {
			t.Fatalf("wellFormed %v, ParseLLDPDU error %v", ok, err)
		}
		if len(tlvs) > MaxTLVs {
			t.Fatalf("%d TLVs", len(tlvs))
		}
		var enc []byte
		for _, x := range tlvs {
			if len(x.Value) > 511 || x.Type > 127 {
				t.Fatalf("TLV %+v", x)
			}
			enc = append(enc, tlv(x.Type, x.Value...)...)
		}
		if !bytes.HasPrefix(pdu, enc) {
			t.Fatalf("TLVs re-encode to %x, not a prefix of %x", enc, pdu)
		}
		if err == nil && len(tlvs) == 0 {
			t.Fatal("no TLV and no error")
		}
	})
}
