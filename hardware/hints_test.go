package hardware

import (
	"errors"
	"strings"
	"testing"
)

func testDevices() []BlockDevice {
	return []BlockDevice{
		{Name: "sda", Path: "/dev/sda", Size: 500 * GiB, Model: "Samsung SSD 860", Vendor: "ATA", Serial: "S3Z1NB0K", WWN: "0x5002538e40a1b2c3", HCTL: "0:0:0:0", Rotational: false, ByPath: "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"},
		{Name: "sdb", Path: "/dev/sdb", Size: 2000 * GiB, Model: "WDC WD2003FZEX", Vendor: "ATA", Serial: "WD-WCC123", Rotational: true, HCTL: "1:0:0:0"},
		{Name: "sdc", Path: "/dev/sdc", Size: 60 * GiB, Model: "Virtual Disk", Vendor: "Winsys", Serial: "V1"},
		{Name: "nvme0n1", Path: "/dev/nvme0n1", Size: 60*GiB + GiB/2, Model: "INTEL SSDPE2KX010T8", Serial: "PHLJ1", Tran: "nvme"},
	}
}

func TestHintsMatch(t *testing.T) {
	cases := []struct {
		name  string
		hints map[string]any
		want  []string
	}{
		{"name with /dev", map[string]any{"name": "/dev/sdb"}, []string{"sdb"}},
		{"name without /dev", map[string]any{"name": "sdc"}, []string{"sdc"}},
		{"serial case-insensitive", map[string]any{"serial": "s3z1nb0k"}, []string{"sda"}},
		{"model with spaces (URL-quoted compare)", map[string]any{"model": "Samsung SSD 860"}, []string{"sda"}},
		{"size exact GiB", map[string]any{"size": 60}, []string{"sdc"}},
		{"size as float JSON number", map[string]any{"size": float64(500)}, []string{"sda"}},
		{"size >=", map[string]any{"size": ">= 500"}, []string{"sda", "sdb"}},
		{"size > ", map[string]any{"size": "> 60"}, []string{"sda", "sdb", "nvme0n1"}},
		{"size <", map[string]any{"size": "< 100"}, []string{"sdc", "nvme0n1"}},
		{"size <=", map[string]any{"size": "<= 60"}, []string{"sdc"}},
		{"size !=", map[string]any{"size": "!= 60"}, []string{"sda", "sdb", "nvme0n1"}},
		{"size legacy = means >=", map[string]any{"size": "= 1000"}, []string{"sdb"}},
		{"size <or>", map[string]any{"size": "<or> 60 <or> 2000"}, []string{"sdb", "sdc"}},
		{"rotational bool", map[string]any{"rotational": true}, []string{"sdb"}},
		{"rotational string", map[string]any{"rotational": "false"}, []string{"sda", "sdc", "nvme0n1"}},
		{"vendor <or>", map[string]any{"vendor": "<or> samsung <or> winsys"}, []string{"sdc"}},
		{"model <in> substring", map[string]any{"model": "<in> ssd"}, []string{"sda", "nvme0n1"}},
		{"model <all-in> substrings", map[string]any{"model": "<all-in> wdc fzex"}, []string{"sdb"}},
		{"model <all-in> one missing", map[string]any{"model": "<all-in> wdc zzz"}, []string{}},
		{"model <all-in> words", map[string]any{"model": "<all-in> wdc wd2003fzex"}, []string{"sdb"}},
		{"s!=", map[string]any{"vendor": "s!= ata"}, []string{"sdc"}},
		{"s>=", map[string]any{"serial": "s>= v"}, []string{"sdb", "sdc"}},
		{"wwn", map[string]any{"wwn": "0x5002538E40A1B2C3"}, []string{"sda"}},
		{"hctl", map[string]any{"hctl": "1:0:0:0"}, []string{"sdb"}},
		{"by_path short", map[string]any{"by_path": "pci-0000:00:1f.2-ata-1"}, []string{"sda"}},
		{"tran", map[string]any{"tran": "nvme"}, []string{"nvme0n1"}},
		{"all hints must match", map[string]any{"vendor": "ata", "rotational": false}, []string{"sda"}},
		{"missing attribute never matches", map[string]any{"wwn_with_extension": "x"}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ParseHints(c.hints)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, d := range FindDevices(testDevices(), h) {
				got = append(got, d.Name)
			}
			if !equal(got, c.want) {
				t.Fatalf("hints %v matched %v, want %v", c.hints, got, c.want)
			}
		})
	}
}

func TestHintsInvalid(t *testing.T) {
	cases := []struct {
		hints map[string]any
		msg   string
	}{
		{map[string]any{"colour": "red"}, `"colour"`},
		{map[string]any{"size": "big"}, "not an integer"},
		{map[string]any{"size": 0}, "positive"},
		{map[string]any{"size": -3}, "positive"},
		{map[string]any{"size": 1.5}, "not an integer"},
		{map[string]any{"size": "s== 10"}, "needs a string"},
		{map[string]any{"serial": 1234}, "not a string"},
		{map[string]any{"serial": "  "}, "empty"},
		{map[string]any{"rotational": "maybe"}, "not a Boolean"},
		{map[string]any{"model": "<in>"}, "no value"},
	}
	for _, c := range cases {
		_, err := ParseHints(c.hints)
		if !errors.Is(err, ErrInvalidHints) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseHints(%v) = %v, want ErrInvalidHints mentioning %q", c.hints, err, c.msg)
		}
	}
}

func TestSelectRootDevice(t *testing.T) {
	devs := append(testDevices(),
		BlockDevice{Name: "sdd", Path: "/dev/sdd", Size: 2 * GiB, Serial: "TINY"},
		BlockDevice{Name: "sde", Path: "/dev/sde", Size: 60 * GiB, Serial: "RO", ReadOnly: true},
	)
	none, _ := ParseHints(nil)
	d, err := SelectRootDevice(devs, none)
	if err != nil || d.Name != "sdc" {
		t.Fatalf("no hints: %v, %v; want the smallest disk >= 4 GiB by size then name (sdc)", d.Name, err)
	}
	h, _ := ParseHints(map[string]any{"serial": "RO"})
	if _, err := SelectRootDevice(devs, h); !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("read-only disk chosen by hints: %v", err)
	}
	h, _ = ParseHints(map[string]any{"serial": "nothing", "size": 7})
	_, err = SelectRootDevice(devs, h)
	if !errors.Is(err, ErrDeviceNotFound) || !strings.Contains(err.Error(), "serial=nothing") ||
		!strings.Contains(err.Error(), "/dev/nvme0n1") || !strings.Contains(err.Error(), "/dev/sde (60.0 GiB, serial RO) read-only") {
		t.Fatalf("no-match error should name hints and disks: %v", err)
	}
	_, err = SelectRootDevice(devs[4:5], none)
	if !errors.Is(err, ErrDeviceNotFound) || !strings.Contains(err.Error(), "at least 4 GiB") {
		t.Fatalf("only a tiny disk: %v", err)
	}
	h, _ = ParseHints(map[string]any{"size": ">= 60"})
	if d, _ := SelectRootDevice(devs, h); d.Name != "sda" {
		t.Fatalf("hints pick the first match in order, got %s", d.Name)
	}
}

func TestSelectMatchingDevices(t *testing.T) {
	devs := append(testDevices(),
		BlockDevice{Name: "sde", Path: "/dev/sde", Size: 60 * GiB, Serial: "RO", ReadOnly: true},
		BlockDevice{Name: "sdf", Path: "/dev/sdf", Size: 60 * GiB, Serial: "BOOT", BootMedia: "vfat label RIVET"},
	)
	none, _ := ParseHints(nil)
	if _, err := SelectMatchingDevices(devs, none); !errors.Is(err, ErrDeviceNotFound) || !strings.Contains(err.Error(), "needs root device hints") {
		t.Fatalf("no hints: %v", err)
	}
	h, _ := ParseHints(map[string]any{"size": ">= 60"})
	got, err := SelectMatchingDevices(devs, h)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := SelectRootDevice(devs, h)
	var names []string
	for _, d := range got {
		names = append(names, d.Name)
		if d.ReadOnly || d.BootMedia != "" {
			t.Fatalf("%s chosen: read-only or the ramdisk's boot medium", d.Name)
		}
	}
	if len(got) < 2 || got[0].Name != first.Name {
		t.Fatalf("matching >= 60 GiB: %v; want several, %s first", names, first.Name)
	}
	h, _ = ParseHints(map[string]any{"serial": "nothing"})
	if _, err := SelectMatchingDevices(devs, h); !errors.Is(err, ErrDeviceNotFound) || !strings.Contains(err.Error(), "serial=nothing") {
		t.Fatalf("no match: %v", err)
	}
}
