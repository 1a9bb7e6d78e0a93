package qemu

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
		"disk not str":  {UUID: id, DriverInfo: map[string]any{InfoDisk: 5}},
		"bad uuid":      func() power.Node { n := good(nil); n.UUID = "../x"; return n }(),
		"memory float":  good(map[string]any{InfoMemoryMB: 1.5}),
		"memory small":  good(map[string]any{InfoMemoryMB: 8}),
		"cpus word":     good(map[string]any{InfoCPUs: "two"}),
		"port range":    good(map[string]any{InfoAgentPort: 70000}),
		"boot mode":     good(map[string]any{InfoBootMode: "legacy"}),
		"console empty": good(map[string]any{InfoConsoleLog: ""}),
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

// TestFilesAreConfined: qemu_disk and qemu_console_log name files in the
// driver's files directory only: relative paths are taken from it;
// /etc/shadow, the conductor's database, /dev/sda, the driver's own state
// (another node's ifup script) and symbolic links out are refused at
// validation and at power on, before QEMU could open them.
func TestFilesAreConfined(t *testing.T) {
	base := t.TempDir()
	state, filesDir := filepath.Join(base, "qemu"), filepath.Join(base, "qemu", "files")
	d := newTestDriver(t, Config{StateDir: state, FilesDir: filesDir, Binary: selfExe(t), OVMFCode: "/dev/null", OVMFVars: "/dev/null"})
	db := filepath.Join(base, "rivet.db")
	os.WriteFile(db, []byte("SQLite"), 0o600)
	os.WriteFile(filepath.Join(filesDir, "n1.raw"), nil, 0o644)
	os.Symlink(db, filepath.Join(filesDir, "db.raw"))
	os.Symlink("/dev/sda", filepath.Join(filesDir, "sda.raw"))
	os.Mkdir(filepath.Join(filesDir, "dir.raw"), 0o750)
	const id = "0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10"
	node := func(k string, v any) power.Node {
		di := map[string]any{InfoDisk: "n1.raw"}
		if k != "" {
			di[k] = v
		}
		return power.Node{UUID: id, DriverInfo: di, MACs: []string{testMAC}}
	}
	for _, ok := range []power.Node{node("", nil), node(InfoDisk, filepath.Join(filesDir, "n1.raw")),
		node(InfoConsoleLog, "n1.log"), node(InfoDisk, "later.raw")} {
		if err := d.Validate(ok); err != nil {
			t.Errorf("Validate(%v): %v", ok.DriverInfo, err)
		}
		if err := d.CheckHostPaths(ok); err != nil {
			t.Errorf("CheckHostPaths(%v): %v", ok.DriverInfo, err)
		}
	}
	for _, tc := range []struct {
		key, value, want string
	}{
		{InfoDisk, "/etc/shadow", "not in the qemu driver's files directory"},
		{InfoDisk, db, "not in the qemu driver's files directory"},
		{InfoDisk, "/dev/sda", "not in the qemu driver's files directory"},
		{InfoDisk, "../" + id + "/ifup", "not in the qemu driver's files directory"},
		{InfoDisk, filepath.Join(state, id, "state.json"), "not in the qemu driver's files directory"},
		{InfoDisk, "db.raw", "leads out of"},
		{InfoDisk, "sda.raw", "leads out of"},
		{InfoDisk, "dir.raw", "not a regular file"},
		{InfoDisk, ".", "not in the qemu driver's files directory"},
		{InfoConsoleLog, "/etc/cron.d/evil", "not in the qemu driver's files directory"},
		{InfoConsoleLog, "../" + id + "/ifup", "not in the qemu driver's files directory"},
		{InfoConsoleLog, "db.raw", "leads out of"},
	} {
		n := node(tc.key, tc.value)
		for name, err := range map[string]error{"Validate": d.Validate(n), "CheckHostPaths": d.CheckHostPaths(n),
			"power on": d.SetPowerState(t.Context(), n, power.On)} {
			if !errors.Is(err, power.ErrInvalidDriverInfo) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s with %s=%s: %v, want %q", name, tc.key, tc.value, err, tc.want)
			}
		}
	}
	if b, _ := os.ReadFile(db); string(b) != "SQLite" {
		t.Fatalf("the database was written: %q", b)
	}
	// A disk replaced by a link out after it was validated is refused at
	// power on.
	n := node("", nil)
	if err := d.Validate(n); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(filesDir, "n1.raw"))
	os.Symlink(db, filepath.Join(filesDir, "n1.raw"))
	if err := d.SetPowerState(t.Context(), n, power.On); !errors.Is(err, power.ErrInvalidDriverInfo) || !strings.Contains(err.Error(), "leads out of") {
		t.Errorf("power on with a disk swapped for a link: %v", err)
	}
	// The files directory may not hold the driver's state.
	if _, err := New(Config{StateDir: state, FilesDir: base, Relay: []string{selfExe(t)}}); err == nil || !strings.Contains(err.Error(), "holds the driver's state directory") {
		t.Errorf("files dir holding the state dir: %v", err)
	}
}
