package jsoncol

import (
	"reflect"
	"testing"

	"github.com/rivetmetal/rivet/conductor/store"
)

func TestNodeMapsRoundTrip(t *testing.T) {
	in := &store.Node{InstanceInfo: map[string]any{"image_source": "http://x/disk.raw"},
		Extra: map[string]any{"rack": float64(3)}}
	vals, err := EncodeAll(NodeMaps(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 6 || vals[1] != "{}" {
		t.Fatalf("encoded = %v; want six columns, an empty map as {}", vals)
	}
	raws := make([]string, len(vals))
	for i, v := range vals {
		raws[i] = v.(string)
	}
	var out store.Node
	if err := DecodeAll(raws, NodeMaps(&out)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.InstanceInfo, in.InstanceInfo) || !reflect.DeepEqual(out.Extra, in.Extra) {
		t.Fatalf("decoded %+v", out)
	}
	if out.DriverInfo == nil || len(out.DriverInfo) != 0 {
		t.Fatalf("an empty column decodes to %v, want an empty map", out.DriverInfo)
	}
}

func TestDecodeErrors(t *testing.T) {
	var p store.Port
	if err := DecodeAll([][]byte{nil, []byte("{"), nil}, PortMaps(&p)); err == nil {
		t.Fatal("malformed JSON decoded")
	}
	if err := DecodeAll([]string{"{}"}, PortMaps(&p)); err == nil {
		t.Fatal("one value for three columns decoded")
	}
	if err := Decode("", &p.Extra); err != nil || p.Extra == nil {
		t.Fatalf("empty column: %v %v", p.Extra, err)
	}
}

func TestAttributesRoundTrip(t *testing.T) {
	off := false
	in := store.NodeAttributes{AutomatedClean: &off, DisablePowerOff: true, Traits: []string{"CUSTOM_A"},
		Interfaces: map[string]string{"boot_interface": "ipxe"}, NetworkData: map[string]any{"links": []any{}}}
	s, err := EncodeAttributes(in)
	if err != nil {
		t.Fatal(err)
	}
	var out store.NodeAttributes
	if err := DecodeAttributes(s, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, want %+v", out, in)
	}
	if s, _ := EncodeAttributes(store.NodeAttributes{}); s != "{}" {
		t.Fatalf("zero attributes encode as %s, want {}", s)
	}
	if err := DecodeAttributes("", &out); err != nil || out.DisablePowerOff || out.AutomatedClean != nil {
		t.Fatalf("empty column: %+v %v", out, err)
	}
	var p store.PortAttributes
	if err := DecodeAttributes([]byte(`{"name":`), &p); err == nil {
		t.Fatal("malformed attributes decoded")
	}
}
