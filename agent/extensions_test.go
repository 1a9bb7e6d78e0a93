package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/hardware/efivar"
	"github.com/rivetmetal/rivet/hardware/manager"
	"github.com/rivetmetal/rivet/internal/loopdev"
	"github.com/rivetmetal/rivet/wire"
)

func TestInstallBootloaderOnHost(t *testing.T) {
	loop := loopdev.New(t, 5<<30)
	img := ironicLikeImage(t, 8<<20)
	binary.LittleEndian.PutUint32(img[440:], 0x1a2b3c4d)
	f, _ := os.OpenFile(loop.Path, os.O_WRONLY, 0)
	f.Write(img)
	f.Close()
	_, base := startAgent(t, standaloneConfig(loop.Path), &fakePower{})
	c := client{t: t, base: base}
	install := func(params map[string]any) wire.CommandResult {
		t.Helper()
		r := c.run("image.install_bootloader", params, false)
		if r.CommandName != "install_bootloader" {
			t.Fatalf("answer %+v", r)
		}
		return c.waitDone()
	}

	// Ironic's UEFI whole-disk call. This host did not boot through UEFI,
	// so no NVRAM entry can be written and the image's loader is trusted.
	r := install(map[string]any{"root_uuid": "0x1a2b3c4d", "efi_system_part_uuid": nil, "prep_boot_part_uuid": nil, "target_boot_mode": "uefi"})
	if r.CommandStatus != wire.StatusSucceeded || string(r.CommandResult) != "null" {
		t.Fatalf("whole-disk UEFI: %+v %+v", r, r.CommandError)
	}
	// A partition image whose root partition is not on the disk.
	partition := map[string]any{"root_uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "target_boot_mode": "bios"}
	r = install(partition)
	if r.CommandStatus != wire.StatusFailed || r.CommandError.Type != "DeviceNotFound" {
		t.Fatalf("missing root partition: %+v %+v", r, r.CommandError)
	}
	mustContain(t, "details", r.CommandError.Details, "no partition with UUID 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	partition["ignore_bootloader_failure"] = true
	if r := install(partition); r.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("ignore_bootloader_failure: %+v %+v", r, r.CommandError)
	}
	st, b := c.post("image.install_bootloader", map[string]any{"root_uuid": "0x1", "target_boot_mode": "legacy"}, false)
	if st != http.StatusBadRequest {
		t.Fatalf("bad target_boot_mode: %d %s", st, b)
	}
}

func TestCollectSystemLogs(t *testing.T) {
	logs := NewLogBuffer(1 << 20)
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, io.Discard), nil))
	_, base := startAgentWith(t, standaloneConfig(), Options{Logger: log, LogBuffer: logs, Power: &fakePower{}})
	c := client{t: t, base: base}
	c.run("standby.sync", map[string]any{}, true)
	r := c.run("log.collect_system_logs", map[string]any{}, true)
	var sl wire.SystemLogs
	if err := r.DecodeResult(&sl); err != nil || r.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("%+v %v", r, err)
	}
	raw, err := base64.StdEncoding.DecodeString(sl.SystemLogs)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	for _, name := range []string{"rivet-agent.log", "dmesg", "cmdline", "mountinfo", "block-devices.json", "network.txt", "commands.json", "uefi-boot-entries.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("archive lacks %s (has %d files)", name, len(files))
		}
	}
	mustContain(t, "agent log", files["rivet-agent.log"], "command=standby.sync")
	mustContain(t, "command history", files["commands.json"], `"command_name": "sync"`)
}

func TestSecretsMaskedInCmdline(t *testing.T) {
	got := secretParam.ReplaceAll([]byte("console=ttyS0 ipa-agent-token=s3cr3t-value ipa-api-url=http://x"), []byte("$1="+wire.Masked))
	if string(got) != "console=ttyS0 ipa-agent-token=****** ipa-api-url=http://x" {
		t.Fatalf("%s", got)
	}
}

// TestFinalizeRescueStopsTheAPI follows Ironic's rescue: the hashed
// password is written for the rescue user, then the API goes away while
// the agent stays up.
func TestFinalizeRescueStopsTheAPI(t *testing.T) {
	cfg := standaloneConfig()
	cfg.RescueRoot = t.TempDir()
	_, base := startAgent(t, cfg, &fakePower{})
	c := client{t: t, base: base}
	st, b := c.post("rescue.finalize_rescue", map[string]any{"rescue_password": "plain"}, true)
	if st != http.StatusBadRequest {
		t.Fatalf("unhashed password: %d %s", st, b)
	}
	const hash = "$6$rounds=656000$salt$hashhashhash"
	r := c.run("rescue.finalize_rescue", map[string]any{"rescue_password": hash, "hashed": true}, true)
	if r.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("%+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.RescueRoot, rescuePasswordFile)); err != nil || string(b) != hash {
		t.Fatalf("password file %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.RescueRoot, rescuedMarker)); err != nil {
		t.Fatal(err)
	}
	waitAPIGone(t, base)
}

func TestLockdownStopsTheAPI(t *testing.T) {
	power := &fakePower{}
	_, base := startAgent(t, standaloneConfig(), power)
	c := client{t: t, base: base}
	if r := c.run("system.lockdown", map[string]any{}, true); r.CommandStatus != wire.StatusSucceeded {
		t.Fatalf("%+v", r)
	}
	if got := power.list(); len(got) != 1 || got[0] != "sync" {
		t.Errorf("power actions %v, want a sync", got)
	}
	waitAPIGone(t, base)
}

func waitAPIGone(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/status")
		if err != nil {
			return
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the API still answers 10 s after it was asked to stop")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGetHardwareInfo(t *testing.T) {
	_, base := startAgent(t, standaloneConfig(), &fakePower{})
	c := client{t: t, base: base}
	r := c.run("poll.get_hardware_info", map[string]any{}, true)
	var inv struct {
		CPU struct {
			Count int `json:"count"`
		} `json:"cpu"`
		Memory struct {
			Total int64 `json:"total"`
		} `json:"memory"`
		Boot struct {
			Mode string `json:"current_boot_mode"`
		} `json:"boot"`
	}
	if err := r.DecodeResult(&inv); err != nil || inv.CPU.Count != runtime.NumCPU() || inv.Memory.Total <= 0 || inv.Boot.Mode == "" {
		t.Fatalf("%+v %v: %s", inv, err, r.CommandResult)
	}
	if !strings.Contains(string(r.CommandResult), `"interfaces"`) {
		t.Errorf("no interfaces key: %s", r.CommandResult)
	}
}

func TestCleanUEFINVRAM(t *testing.T) {
	cfg := standaloneConfig()
	cfg.SysRoot = t.TempDir()
	a, err := New(cfg, Options{Logger: testLogger(t), Power: &fakePower{}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := a.cleanUEFINVRAMStep(manager.StepCall{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(t.Context(), &Job{}); err == nil {
		t.Fatal("no UEFI variables, yet the step succeeded")
	}
	s := a.efiStore()
	os.MkdirAll(s.Dir, 0o755)
	add := func(label string, path efivar.DevicePath) {
		if _, err := s.AddBootEntry(efivar.LoadOption{Attributes: efivar.LoadOptionActive, Description: label, FilePath: path}); err != nil {
			t.Fatal(err)
		}
	}
	var guid [16]byte
	add("UEFI PXEv4", efivar.NewDevicePath())
	add("debian", efivar.NewDevicePath(efivar.HardDrive(1, 2048, 4096, guid), efivar.FilePath(`\EFI\debian\shimx64.efi`)))
	add("old grub", efivar.NewDevicePath(efivar.FilePath(`\EFI\old\GRUBX64.EFI`)))
	run, err = a.cleanUEFINVRAMStep(manager.StepCall{Args: map[string]any{"match_patterns": []any{`shim.*\.efi`, `grub.*\.efi`}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(t.Context(), &Job{})
	if err != nil {
		t.Fatal(err)
	}
	removed := res.(map[string]any)["removed"].([]string)
	es, _ := s.BootEntries()
	if len(removed) != 2 || len(es) != 1 || es[0].Description != "UEFI PXEv4" {
		t.Fatalf("removed %v, left %+v", removed, es)
	}
}
