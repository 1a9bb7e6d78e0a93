package layout

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// summary renders a layout as "role@startMiB+sizeMiB" items, a golden form.
func summary(l *Layout) string {
	var parts []string
	for _, p := range l.Partitions {
		s := fmt.Sprintf("%d:%s@%d+%d", p.Number, p.Role, p.Start/MiB, p.Size/MiB)
		if p.Bootable {
			s += "*"
		}
		parts = append(parts, s)
	}
	return string(l.Table) + " " + strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	const disk = 10 << 30
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"uefi everything", Spec{BootMode: "uefi", RootMB: 4096, SwapMB: 512, EphemeralMB: 1024, ConfigdriveBytes: 3*MiB + 1},
			"gpt 1:efi system partition@1+550 2:ephemeral@551+1024 3:swap@1575+512 4:configdrive@2087+4 5:root@2091+4096"},
		{"uefi ignores disk_label", Spec{BootMode: "UEFI", DiskLabel: "msdos", RootMB: 100},
			"gpt 1:efi system partition@1+550 2:root@551+100"},
		{"bios msdos, root bootable", Spec{BootMode: "bios", RootMB: 2048, SwapMB: 256},
			"msdos 1:swap@1+256 2:root@257+2048*"},
		{"bios gpt gets a BIOS boot partition", Spec{DiskLabel: "gpt", RootMB: 2048},
			"gpt 1:BIOS Boot partition@1+1 2:root@2+2048"},
		{"root takes the rest", Spec{BootMode: "uefi"},
			"gpt 1:efi system partition@1+550 2:root@551+9688"},
		{"root takes the rest on msdos", Spec{},
			"msdos 1:root@1+10239*"},
	}
	for _, c := range cases {
		l, err := Plan(c.spec, disk, 512)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := summary(l); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

func TestPlanRefuses(t *testing.T) {
	if _, err := Plan(Spec{RootMB: 2048}, 1<<30, 512); !errors.Is(err, ErrDoesNotFit) {
		t.Errorf("too large: %v", err)
	}
	if _, err := Plan(Spec{RootMB: 10, SwapMB: 1, EphemeralMB: 1, ConfigdriveBytes: 1, ESPMB: 1}, 1<<30, 512); err != nil {
		t.Errorf("4 msdos partitions: %v", err)
	}
	if _, err := Plan(Spec{BootMode: "ppc"}, 1<<30, 512); err == nil {
		t.Error("unknown boot mode accepted")
	}
	if _, err := Plan(Spec{DiskLabel: "sun"}, 1<<30, 512); err == nil {
		t.Error("unknown disk label accepted")
	}
}

func TestConfigdriveAtEnd(t *testing.T) {
	used := []Partition{{Number: 1, Start: MiB, Size: 100 * MiB}, {Number: 3, Start: 101 * MiB, Size: 10 * MiB}}
	p, err := ConfigdriveAtEnd(GPT, used, 1<<30, 512)
	if err != nil || p.Number != 4 || p.Start != (1024-1-64)*MiB || p.Size != 64*MiB {
		t.Fatalf("gpt: %+v %v", p, err)
	}
	p, err = ConfigdriveAtEnd(MSDOS, used, 1<<30, 512)
	if err != nil || p.Start != (1024-64)*MiB {
		t.Fatalf("msdos: %+v %v", p, err)
	}
	p, err = ConfigdriveAtEnd(MSDOS, nil, 3<<40, 512)
	if err != nil || p.End() > 2<<40 {
		t.Fatalf("msdos over 2 TiB: %+v %v", p, err)
	}
	full := []Partition{{Number: 1, Start: MiB, Size: 1022 * MiB}}
	if _, err := ConfigdriveAtEnd(GPT, full, 1<<30, 512); !errors.Is(err, ErrDoesNotFit) {
		t.Fatalf("overlap: %v", err)
	}
	four := []Partition{{Number: 1}, {Number: 2}, {Number: 3}, {Number: 4}}
	if _, err := ConfigdriveAtEnd(MSDOS, four, 1<<30, 512); !errors.Is(err, ErrDoesNotFit) {
		t.Fatalf("five msdos partitions: %v", err)
	}
}

func TestSwapHeader(t *testing.T) {
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b, err := SwapHeader(16*MiB, id, "swap1")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != SwapPageSize || string(b[SwapPageSize-10:]) != "SWAPSPACE2" {
		t.Fatal("no swap signature at the end of the page")
	}
	le := binary.LittleEndian
	if le.Uint32(b[1024:]) != 1 || le.Uint32(b[1028:]) != 16*MiB/4096-1 || !bytes.Equal(b[1036:1052], id[:]) || string(b[1052:1057]) != "swap1" {
		t.Fatalf("swap header fields wrong: % x", b[1024:1060])
	}
	if _, err := SwapHeader(8192, id, ""); err == nil {
		t.Fatal("a 2-page swap area was accepted")
	}
}
