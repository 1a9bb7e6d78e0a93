package qemu

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
)

func TestParseSettings(t *testing.T) {
	const id = "0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10"
	good := func(info map[string]any) power.Node {
		di := map[string]any{InfoDisk: "/var/lib/rivet/disk.raw"}
		for k, v := range info {
			di[k] = v
		}
		return power.Node{UUID: id, DriverInfo: di, MACs: []string{"52:54:00:AB:CD:EF"}}
	}
	s, err := parseSettings(good(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := settings{disk: "/var/lib/rivet/disk.raw", memoryMB: 1024, cpus: 1, bootMode: BootUEFI, mac: "52:54:00:ab:cd:ef",
		boot: BootKernel, nicModel: "virtio", diskBus: "virtio"}
	if s != want {
		t.Errorf("defaults = %+v, want %+v", s, want)
	}
	s, err = parseSettings(good(map[string]any{
		InfoMemoryMB: json.Number("2048"), InfoCPUs: "2", InfoBootMode: BootBIOS,
		InfoAgentPort: float64(40000), InfoConsoleLog: "/tmp/c.log",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.memoryMB != 2048 || s.cpus != 2 || s.bootMode != BootBIOS || s.agentPort != 40000 || s.consoleLog != "/tmp/c.log" {
		t.Errorf("settings = %+v", s)
	}
	s, err = parseSettings(good(map[string]any{InfoBoot: BootNetwork, InfoBridge: "br-rack0", InfoNICModel: "e1000e", InfoDiskBus: "lsi-sas"}))
	if err != nil {
		t.Fatal(err)
	}
	if s.boot != BootNetwork || s.bridge != "br-rack0" || s.nicModel != "e1000e" || s.diskBus != DiskLSISAS {
		t.Errorf("hardware settings = %+v", s)
	}
	if s, err := parseSettings(good(map[string]any{InfoNICROM: NICROMNone})); err != nil || !s.noNICROM {
		t.Errorf("%s none: %+v %v", InfoNICROM, s, err)
	}
	if s, err := parseSettings(good(map[string]any{InfoNICROM: NICROMiPXE})); err != nil || s.noNICROM {
		t.Errorf("%s ipxe: %+v %v", InfoNICROM, s, err)
	}
	for _, m := range NICModels {
		if _, err := parseSettings(good(map[string]any{InfoNICModel: m})); err != nil {
			t.Errorf("NIC model %s: %v", m, err)
		}
	}
	for _, b := range DiskBuses {
		if _, err := parseSettings(good(map[string]any{InfoDiskBus: b})); err != nil {
			t.Errorf("disk bus %s: %v", b, err)
		}
	}
	for name, node := range map[string]power.Node{
		"boot word":      good(map[string]any{InfoBoot: "pxe"}),
		"boot not str":   good(map[string]any{InfoBoot: true}),
		"bridge long":    good(map[string]any{InfoBridge: "a-very-long-bridge-name"}),
		"bridge shell":   good(map[string]any{InfoBridge: "br0;reboot"}),
		"bridge space":   good(map[string]any{InfoBridge: "br 0"}),
		"bridge comma":   good(map[string]any{InfoBridge: "br0,x"}),
		"bridge empty":   good(map[string]any{InfoBridge: ""}),
		"nic model":      good(map[string]any{InfoNICModel: "ne2k_pci"}),
		"nic not string": good(map[string]any{InfoNICModel: 1}),
		"nic rom word":   good(map[string]any{InfoNICROM: "pxe"}),
		"nic rom bool":   good(map[string]any{InfoNICROM: false}),
		"disk bus":       good(map[string]any{InfoDiskBus: "ide"}),
		"disk bus case":  good(map[string]any{InfoDiskBus: "NVMe"}),

		"no disk":       {UUID: id, DriverInfo: map[string]any{}},
		"relative disk": {UUID: id, DriverInfo: map[string]any{InfoDisk: "disk.raw"}},
		"disk not str":  {UUID: id, DriverInfo: map[string]any{InfoDisk: 5}},
		"bad uuid":      func() power.Node { n := good(nil); n.UUID = "../x"; return n }(),
		"memory float":  good(map[string]any{InfoMemoryMB: 1.5}),
		"memory small":  good(map[string]any{InfoMemoryMB: 8}),
		"cpus word":     good(map[string]any{InfoCPUs: "two"}),
		"port range":    good(map[string]any{InfoAgentPort: 70000}),
		"boot mode":     good(map[string]any{InfoBootMode: "legacy"}),
		"console rel":   good(map[string]any{InfoConsoleLog: "c.log"}),
		"bad mac":       func() power.Node { n := good(nil); n.MACs = []string{"nope"}; return n }(),
		"multicast mac": func() power.Node { n := good(nil); n.MACs = []string{"01:00:5e:00:00:01"}; return n }(),
	} {
		if _, err := parseSettings(node); !errors.Is(err, power.ErrInvalidDriverInfo) {
			t.Errorf("%s: err = %v, want ErrInvalidDriverInfo", name, err)
		}
	}
	n := good(nil)
	n.MACs = nil
	if s, err := parseSettings(n); err != nil || s.mac != "" {
		t.Errorf("no MACs yet: %+v, %v (validation must pass before ports exist)", s, err)
	}
}
