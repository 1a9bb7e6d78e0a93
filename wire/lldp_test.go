package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestLLDPTLVShapes checks the three states IPA gives interfaces[].lldp
// (null: not collected, []: nothing heard, pairs: a frame) and that pairs
// round-trip exactly, upper-case hex included.
func TestLLDPTLVShapes(t *testing.T) {
	for _, in := range []string{
		`{"lldp":null}`,
		`{"lldp":[]}`,
		`{"lldp":[[1,"04b4969130faf8"],[2,"05457468657265746e31"],[127,"00120f01036c11FFFF"],[0,""]]}`,
	} {
		var nic struct {
			LLDP []LLDPTLV `json:"lldp"`
		}
		if err := json.Unmarshal([]byte(in), &nic); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		out, err := json.Marshal(nic)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != in {
			t.Errorf("round trip: %s became %s", in, out)
		}
	}
}

// TestLLDPTLVValue builds a TLV from raw bytes and decodes it back; a value
// that is not hex decodes as JSON (the inventory is kept) but not as bytes.
func TestLLDPTLVValue(t *testing.T) {
	tlv := NewLLDPTLV(5, []byte("sw01"))
	if tlv.Value != "73773031" {
		t.Fatalf("hex %q", tlv.Value)
	}
	if b, err := tlv.Bytes(); err != nil || !bytes.Equal(b, []byte("sw01")) {
		t.Fatalf("bytes %q %v", b, err)
	}
	if b, err := (LLDPTLV{Type: 5, Value: "7377303"}).Bytes(); err == nil {
		t.Fatalf("odd-length hex decoded to %q", b)
	}
	var bad LLDPTLV
	if err := json.Unmarshal([]byte(`[4, "zz"]`), &bad); err != nil || bad.Type != 4 || bad.Value != "zz" {
		t.Fatalf("a non-hex value must survive decoding: %+v %v", bad, err)
	}
	if _, err := bad.Bytes(); err == nil || !strings.Contains(err.Error(), "type 4") {
		t.Fatalf("non-hex value: %v", err)
	}
}

// TestLLDPTLVRejectsOtherShapes checks that anything but a [int, string]
// pair is an error that says what is wrong.
func TestLLDPTLVRejectsOtherShapes(t *testing.T) {
	for in, want := range map[string]string{
		`[1]`:                "2 elements, not 1",
		`[1, "00", 2]`:       "2 elements, not 3",
		`{"type": 1}`:        "not a [type, value] pair",
		`["1", "00"]`:        "type is not an integer",
		`[1.5, "00"]`:        "type is not an integer",
		`[1, 0]`:             "value is not a string",
		`"0104112233aabbcc"`: "not a [type, value] pair",
	} {
		var tlv LLDPTLV
		err := json.Unmarshal([]byte(in), &tlv)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", in, err, want)
		}
	}
}
