package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/hardware/lldp"
)

// cannedLLDP answers Listen with fixed results and records the names.
type cannedLLDP struct {
	asked   []string
	results func(names []string) []lldp.Result
}

func (c *cannedLLDP) Listen(_ context.Context, names []string) []lldp.Result {
	c.asked = names
	return c.results(names)
}

// TestCollectFillsLLDP lists the fixture machine's NIC to the listener
// and reports what it heard as IPA does: [type, hex] pairs.
func TestCollectFillsLLDP(t *testing.T) {
	heard := &cannedLLDP{results: func(names []string) []lldp.Result {
		return []lldp.Result{{Interface: names[0], TLVs: []lldp.TLV{
			{Type: 1, Value: []byte{4, 0x3c, 0xfd, 0xfe, 0, 0x17, 1}}, {Type: 2, Value: append([]byte{7}, "Ethernet1/7"...)},
			{Type: 3, Value: []byte{0, 120}}, {Type: 0, Value: []byte{}},
		}}}
	}}
	inv, err := Collect(context.Background(), Options{Root: fixtureMachine(t), Logger: quiet(), LLDP: heard})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(heard.asked, ",") != "ens1f0" {
		t.Fatalf("listened on %v", heard.asked)
	}
	b, _ := json.Marshal(inv.Interfaces[0])
	if want := `"lldp":[[1,"043cfdfe001701"],[2,"0745746865726e6574312f37"],[3,"0078"],[0,""]]`; !strings.Contains(string(b), want) {
		t.Fatalf("interface %s, want %s", b, want)
	}
}

// TestCollectLLDPStates covers IPA's three values: [] when the interface
// was listened on and heard nothing, null when it could not be listened on
// (and when LLDP is off).
func TestCollectLLDPStates(t *testing.T) {
	for name, c := range map[string]struct {
		listener LLDPListener
		want     string
	}{
		"nothing heard": {&cannedLLDP{results: func(n []string) []lldp.Result { return []lldp.Result{{Interface: n[0]}} }}, `"lldp":[]`},
		"cannot listen": {&cannedLLDP{results: func(n []string) []lldp.Result {
			return []lldp.Result{{Interface: n[0], Err: errors.New("lldp: open a raw socket: operation not permitted")}}
		}}, `"lldp":null`},
		"LLDP off": {nil, `"lldp":null`},
	} {
		inv, err := Collect(context.Background(), Options{Root: fixtureMachine(t), Logger: quiet(), LLDP: c.listener})
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(inv.Interfaces[0]); !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %s, want %s", name, b, c.want)
		}
	}
}
