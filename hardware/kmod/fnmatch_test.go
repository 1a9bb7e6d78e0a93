package kmod

import "testing"

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"pci:v00008086d000010D3sv*sd*bc*sc*i*", "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00", true},
		{"pci:v00008086d000010D3sv*sd*bc*sc*i*", "pci:v00008086d000010D4sv00008086sd0000A01Fbc02sc00i00", false},
		{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true},
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},
		{"virtio:d00000001v*", "virtio:d00000002v00001AF4", false},
		{"scsi:t-0x00*", "scsi:t-0x00", true},
		{"scsi:t-0x0[07]*", "scsi:t-0x07", true},
		{"scsi:t-0x0[!07]*", "scsi:t-0x07", false},
		{"scsi:t-0x0[^07]*", "scsi:t-0x05", true},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"a*b*c", "a/x/b/y/c", true}, // '*' crosses '/', unlike path.Match
		{"a*b*c", "a/x/b/y/d", false},
		{"[a-c]x", "bx", true},
		{"[a-c]x", "dx", false},
		{"[]]x", "]x", true},
		{"[abc", "[abc", true}, // malformed set: literal '['
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{"acpi*:PNP0A03:*", "acpi:PNP0A03:", true},
		{"**a", "bbba", true},
	} {
		if got := match(c.p, c.s); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

func BenchmarkMatchPCI(b *testing.B) {
	for i := 0; i < b.N; i++ {
		match("pci:v00008086d000010D3sv*sd*bc*sc*i*", "pci:v00008086d000010D4sv00008086sd0000A01Fbc02sc00i00")
	}
}
