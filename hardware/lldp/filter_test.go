package lldp

import (
	"testing"

	"golang.org/x/net/bpf"
)

// TestFilterProgram runs the socket filter in x/net/bpf's interpreter:
// LLDP frames up to MaxFrameSize are kept whole, longer ones and other
// ethertypes are dropped. (The real kernel runs it in the namespace test.)
func TestFilterProgram(t *testing.T) {
	vm, err := bpf.NewVM(filterProgram)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := assembledFilter(); err != nil {
		t.Fatal(err)
	}
	sized := func(n int) []byte {
		f := frame()
		return append(f, make([]byte, n-len(f))...)
	}
	ipv4 := switchFrame()
	ipv4[12], ipv4[13] = 0x08, 0x00
	for _, c := range []struct {
		name  string
		frame []byte
		keep  bool
	}{
		{"switch frame", switchFrame(), true},
		{"jumbo LLDP at the limit", sized(MaxFrameSize), true},
		{"LLDP one byte over", sized(MaxFrameSize + 1), false},
		{"LLDP of 64 KiB", sized(65535), false},
		{"IPv4", ipv4, false},
	} {
		n, err := vm.Run(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if kept := n > 0; kept != c.keep || (kept && n < len(c.frame)) {
			t.Errorf("%s (%d bytes): filter returned %d", c.name, len(c.frame), n)
		}
	}
}
