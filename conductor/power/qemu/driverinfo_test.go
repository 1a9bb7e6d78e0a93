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
	want := settings{disk: "/var/lib/rivet/disk.raw", memoryMB: 1024, cpus: 1, bootMode: BootUEFI, mac: "52:54:00:ab:cd:ef"}
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
	for name, node := range map[string]power.Node{
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
