package testimage

import (
	"strings"
	"testing"
)

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Kernel: "k", Output: "o"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != DefaultID || o.Size != DefaultSize || o.InitPackage != DefaultInitPackage || o.GrubMkstandalone == "" || o.Logger == nil {
		t.Errorf("defaults not applied: %+v", o)
	}
	for name, bad := range map[string]Options{
		"no kernel":   {Output: "o"},
		"no output":   {Kernel: "k"},
		"id with /":   {Kernel: "k", Output: "o", ID: "a/b"},
		"id with sp":  {Kernel: "k", Output: "o", ID: "a b"},
		"id too long": {Kernel: "k", Output: "o", ID: strings.Repeat("x", 65)},
		"odd size":    {Kernel: "k", Output: "o", Size: DefaultSize + 512},
		"too large":   {Kernel: "k", Output: "o", Size: MaxSize + 1<<20},
		"too small":   {Kernel: "k", Output: "o", Size: 16 << 20},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestLayoutFor(t *testing.T) {
	a, b := layoutFor("image-a", DefaultSize), layoutFor("image-b", DefaultSize)
	if a != layoutFor("image-a", DefaultSize) {
		t.Error("layout is not a function of the id")
	}
	if a.diskSignature == 0 || b.diskSignature == 0 {
		t.Error("zero disk signature")
	}
	if a.diskSignature == b.diskSignature || a.diskGUID == b.diskGUID || a.espGUID == b.espGUID || a.diskGUID == a.espGUID {
		t.Errorf("ids share identifiers: %+v %+v", a, b)
	}
	if got, want := a.espSectors(), uint64(DefaultSize-2<<20)/512; got != want {
		t.Errorf("ESP sectors = %d, want %d", got, want)
	}
}

func TestGrubConfig(t *testing.T) {
	cfg := grubConfig("demo-1")
	for _, want := range []string{
		`regexp --set=1:bootdev '^\(([^)]+)\)' "$cmdpath"`,
		"search --no-floppy --set=root --file /" + idFileName,
		"linux /vmlinuz console=ttyS0 panic=-1 rivet.testimage=demo-1\n",
		"initrd /initrd.img\n",
		"boot\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
	}
}

// TestMarkerPatternBesideKernelMessages: the marker is read off a serial
// console, where a kernel message can follow it on the same line.
func TestMarkerPatternBesideKernelMessages(t *testing.T) {
	for line, want := range map[string][2]string{
		"RIVET-TESTIMAGE-BOOTED id=qemu-driver-test firmware=uefi":                                               {"qemu-driver-test", "uefi"},
		"RIVET-TESTIMAGE-BOOTED id=rack.n1 firmware=bios[    2.131992] tsc: Refined TSC clocksource calibration": {"rack.n1", "bios"},
		"[    1.0] x RIVET-TESTIMAGE-BOOTED id=a_b-1 firmware=unknown\r":                                         {"a_b-1", "unknown"},
	} {
		m := MarkerPattern.FindStringSubmatch(line)
		if m == nil || m[1] != want[0] || m[2] != want[1] {
			t.Errorf("%q: matched %q, want id %q firmware %q", line, m, want[0], want[1])
		}
	}
	if m := MarkerPattern.FindStringSubmatch("RIVET-TESTIMAGE-BOOTED id=x firmware=efi"); m != nil {
		t.Errorf("matched a firmware the image never prints: %q", m)
	}
}
