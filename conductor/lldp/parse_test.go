package lldp

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/wire"
)

func tlvs(pairs ...any) []wire.LLDPTLV {
	var out []wire.LLDPTLV
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, wire.LLDPTLV{Type: pairs[i].(int), Value: pairs[i+1].(string)})
	}
	return out
}

// TestParseInterfacesAsIronicsHook checks the hook's choices: lldp_raw
// wins over the inventory's lldp when it has TLVs for the interface; an
// interface with neither, or with nothing readable, is left out; no
// interface at all gives a nil map (parsed_lldp then absent).
func TestParseInterfacesAsIronicsHook(t *testing.T) {
	ifaces := []wire.NetworkInterface{
		{Name: "eno1", LLDP: tlvs(5, "696e76656e746f7279")}, // "inventory"
		{Name: "eno2", LLDP: tlvs(5, "696e76656e746f7279")}, // lldp_raw has [] for it
		{Name: "eno3"},                                 // null: not collected
		{Name: "eno4", LLDP: []wire.LLDPTLV{}},         // nothing heard
		{Name: "eno5", LLDP: tlvs(3, "0078", 0, "")},   // nothing Ironic reads
		{Name: "eno6", LLDP: tlvs(5, "7377", 7, "00")}, // "sw" and a bad TLV
	}
	raw := map[string][]wire.LLDPTLV{"eno1": tlvs(5, "726177"), "eno2": {}} // "raw"
	got, problems := ParseInterfaces(ifaces, raw)
	if len(got) != 3 || *got["eno1"].SystemName != "raw" || *got["eno2"].SystemName != "inventory" || *got["eno6"].SystemName != "sw" {
		t.Fatalf("parsed %v", got)
	}
	if len(problems) != 1 || !errors.Is(problems[0], ErrMalformed) || !strings.HasPrefix(problems[0].Error(), "interface eno6: ") {
		t.Fatalf("problems %v", problems)
	}
	if got, problems := ParseInterfaces([]wire.NetworkInterface{{Name: "eno1"}}, nil); got != nil || problems != nil {
		t.Fatalf("%v %v", got, problems)
	}
}

// TestParseInterfacesLimit reads the first 64 interfaces, as Ironic, and
// says so.
func TestParseInterfacesLimit(t *testing.T) {
	var ifaces []wire.NetworkInterface
	for i := range 70 {
		ifaces = append(ifaces, wire.NetworkInterface{Name: fmt.Sprintf("eth%d", i), LLDP: tlvs(5, "7377")})
	}
	got, problems := ParseInterfaces(ifaces, nil)
	if len(got) != MaxInterfaces || len(problems) != 1 || !strings.Contains(problems[0].Error(), "70 interfaces") {
		t.Fatalf("%d parsed, problems %v", len(got), problems)
	}
}

// TestParseHostileInput gives the parser what no agent should send: a
// hundred thousand TLVs, and values of megabytes. It reads the first
// MaxTLVs TLVs, refuses long values before decoding them, and allocates
// little beyond the input.
func TestParseHostileInput(t *testing.T) {
	many := make([]wire.LLDPTLV, 100000)
	for i := range many {
		many[i] = wire.LLDPTLV{Type: 8, Value: "0501c000020a"}
	}
	huge := strings.Repeat("00", 4<<20)
	in := append([]wire.LLDPTLV{{Type: 5, Value: huge}, {Type: 6, Value: huge}, {Type: 127, Value: huge}}, many...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, problems := Parse(in)
	runtime.ReadMemStats(&after)
	if len(n.MgmtAddresses) != MaxTLVs-3 || n.SystemName != nil {
		t.Fatalf("%d addresses, system name %v", len(n.MgmtAddresses), n.SystemName)
	}
	if len(problems) != 4 || !strings.Contains(problems[3].Error(), "only the first 1024") {
		t.Fatalf("problems %v", problems)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes allocated for %d TLVs and 12 MiB of values", alloc, len(in))
	if alloc > 1<<20 {
		t.Errorf("%d bytes allocated", alloc)
	}
}

// FuzzParse reads arbitrary bytes as a list of TLVs (type, length, value;
// the value hex-encoded, sometimes broken) and parses it: no panic, every
// problem is an ErrMalformed, and the result encodes as JSON.
func FuzzParse(f *testing.F) {
	f.Add([]byte{1, 7, 4, 0x3c, 0xfd, 0xfe, 0, 0x17, 1, 127, 6, 0, 0x80, 0xc2, 1, 0, 100})
	f.Add([]byte{127, 9, 0x00, 0x12, 0x0f, 1, 3, 0x6c, 0x01, 0x00, 0x1e})
	f.Add([]byte{8, 12, 5, 1, 192, 0, 2, 10, 2, 0, 0, 0, 2, 0})
	f.Add([]byte{127, 14, 0, 0x80, 0xc2, 3, 0, 100, 7, 'v', 'l', 'a', 'n', '1', '0', '0'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var in []wire.LLDPTLV
		for len(b) >= 2 {
			typ, n := int(b[0]), int(b[1])
			b = b[2:]
			n = min(n, len(b))
			v := fmt.Sprintf("%x", b[:n])
			if typ&1 == 1 && n > 0 && b[0] == 0xff {
				v = v[1:] // an odd number of digits
			}
			in = append(in, wire.LLDPTLV{Type: typ, Value: v})
			b = b[n:]
		}
		n, problems := Parse(in)
		for _, p := range problems {
			if !errors.Is(p, ErrMalformed) {
				t.Fatalf("problem %v is not ErrMalformed", p)
			}
		}
		if _, err := json.Marshal(n); err != nil {
			t.Fatal(err)
		}
	})
}
