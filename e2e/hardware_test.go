package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/wire"
)

// These tests boot the deploy ramdisks with the kernel shortcut (the
// agent's own kernel, -kernel/-initrd) against a fake Ironic API on
// loopback that records the inspection data, the lookup and the
// heartbeats, and measure kernel start → first heartbeat.

// fakeIronic is the Ironic API as the agent sees it at boot: version
// discovery, the inspection callback, lookup and heartbeat.
type fakeIronic struct {
	node string

	mu         sync.Mutex
	inventory  json.RawMessage
	lookupMACs string
	heartbeats []time.Time
	lastBeat   wire.HeartbeatRequest
}

func (f *fakeIronic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		json.NewEncoder(w).Encode(wire.RootDocument{Name: "OpenStack Ironic API",
			DefaultVersion: wire.APIVersion{ID: "v1", MinVersion: "1.1", Version: "1.89"}})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/continue_inspection":
		var data wire.InspectionData
		if err := json.Unmarshal(body, &data); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.inventory = data.Inventory
		json.NewEncoder(w).Encode(wire.InspectionResponse{UUID: f.node})
	case r.Method == http.MethodGet && r.URL.Path == "/v1/lookup":
		f.lookupMACs = r.URL.Query().Get("addresses")
		tok := "e2e-hardware-token-0123456789abcdefghijklmnop"
		json.NewEncoder(w).Encode(wire.LookupResponse{
			Node:   wire.LookupNode{UUID: f.node, Properties: map[string]any{}, InstanceInfo: map[string]any{}, DriverInternalInfo: map[string]any{}},
			Config: wire.LookupConfig{HeartbeatTimeout: 300, AgentToken: &tok, AgentTokenRequired: true},
		})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/heartbeat/"+f.node:
		f.heartbeats = append(f.heartbeats, time.Now())
		_ = json.Unmarshal(body, &f.lastBeat)
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(wire.NewIronicError("Client", "not found: "+r.Method+" "+r.URL.Path))
	}
}

// firstHeartbeat waits for the first heartbeat and returns when it came.
func (f *fakeIronic) firstHeartbeat(ctx context.Context) (time.Time, error) {
	for {
		f.mu.Lock()
		n := len(f.heartbeats)
		var at time.Time
		if n > 0 {
			at = f.heartbeats[0]
		}
		f.mu.Unlock()
		if n > 0 {
			return at, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no heartbeat: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bootMeasure is one boot of a ramdisk up to its first heartbeat.
type bootMeasure struct {
	vm              *vmtest.VM
	ironic          *fakeIronic
	kernelToBeat    time.Duration
	qemuToKernel    time.Duration
	qemuToHeartbeat time.Duration
}

// bootToHeartbeat boots kernel+ramdisk in a VM with the given NIC (one
// user netdev each: n0, n1, ...) and disk arguments. Every netdev forwards
// 10.0.2.100:80 to the fake Ironic, so whichever NIC the guest routes
// through reaches it.
func bootToHeartbeat(ctx context.Context, t *testing.T, kernel, ramdisk string, nics int, devArgs []string, params ...string) *bootMeasure {
	t.Helper()
	a := needArtefacts(t)
	f := &fakeIronic{node: "4f3e2d1c-0b0a-4998-8776-655443322110"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	args := []string{"-m", "1024", "-smp", "1"}
	for i := 0; i < nics; i++ {
		args = append(args, "-netdev", fmt.Sprintf("user,id=n%d,restrict=on,guestfwd=tcp:%s:80-cmd:%s relay 127.0.0.1 %d",
			i, guestIronic, a.conductor, portOf(t, srv.URL)))
	}
	args = append(args, devArgs...)
	args = append(args,
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-kernel", kernel, "-initrd", ramdisk,
		"-append", strings.Join(append([]string{"console=ttyS0",
			"ipa-api-url=http://" + guestIronic + ":80",
			"ipa-inspection-callback-url=http://" + guestIronic + ":80/v1/continue_inspection",
			"ipa-advertise-host=127.0.0.1", "ipa-advertise-port=9999"}, params...), " "))
	vm := vmtest.Start(ctx, t, args...)
	_, kernelAt, err := vm.WaitFor(ctx, regexp.MustCompile(`Linux version \d`))
	if err != nil {
		t.Fatalf("kernel did not start: %v", err)
	}
	started := vm.Started()
	beat, err := f.firstHeartbeat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &bootMeasure{vm: vm, ironic: f, qemuToKernel: kernelAt, qemuToHeartbeat: beat.Sub(started)}
	m.kernelToBeat = m.qemuToHeartbeat - kernelAt
	return m
}

// TestHardwareRamdiskEveryBus boots the hardware ramdisk (Debian's generic
// kernel) on one VM carrying every NIC model and every disk bus the qemu
// driver emulates, and checks that the agent's inventory has every NIC
// (by MAC) and every disk (by its distinct size), that the drivers were
// loaded by the agent from the devices' modaliases (the ramdisk's
// modules-load.d names none of them), that a module failing to load is
// logged and the agent goes on, and measures kernel start → first
// heartbeat. One VM boot: about a minute of CI under TCG.
func TestHardwareRamdiskEveryBus(t *testing.T) {
	kernel, ramdisk := vmtest.GenericKernel(t), vmtest.HardwareRamdisk(t)
	dir := t.TempDir()
	var devArgs []string
	// One NIC per model, MAC 52:54:00:00:01:0<i>.
	macs := map[string]string{}
	for i, model := range qemu.NICModels {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		nic, err := qemu.NICArgs(model, fmt.Sprintf("n%d", i), mac, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		devArgs = append(devArgs, nic...)
		macs[mac] = model
	}
	// One disk per bus, 4 GiB + i MiB (sparse), so each is known by size.
	sizes := map[int64]string{}
	for i, bus := range qemu.DiskBuses {
		size := int64(4<<30) + int64(i+1)<<20
		file := filepath.Join(dir, bus+".raw")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(file, size); err != nil {
			t.Fatal(err)
		}
		disk, err := qemu.DiskArgs(bus, fmt.Sprintf("d%d", i), file, fmt.Sprintf("RVTE2E%d", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		devArgs = append(devArgs, disk...)
		sizes[size] = bus
	}
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	// A module that cannot load: 8139too with an option it cannot parse
	// (module options come from the kernel command line). The agent must
	// log it and go on; the RTL8139 NIC still works with 8139cp.
	m := bootToHeartbeat(ctx, t, kernel, ramdisk, len(qemu.NICModels), devArgs, "8139too.debug=not-a-number")

	m.ironic.mu.Lock()
	invJSON, lookupMACs := m.ironic.inventory, m.ironic.lookupMACs
	m.ironic.mu.Unlock()
	if invJSON == nil {
		t.Fatal("the agent sent no inspection data before its first heartbeat")
	}
	var inv struct {
		Interfaces []struct {
			Name string `json:"name"`
			MAC  string `json:"mac_address"`
		} `json:"interfaces"`
		Disks []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"disks"`
	}
	if err := json.Unmarshal(invJSON, &inv); err != nil {
		t.Fatalf("inventory: %v", err)
	}
	var found []string
	for _, it := range inv.Interfaces {
		if model, ok := macs[it.MAC]; ok {
			found = append(found, model)
			t.Logf("NIC %-8s → %s %s", model, it.Name, it.MAC)
		}
	}
	for mac, model := range macs {
		if !strings.Contains(lookupMACs, mac) {
			t.Errorf("lookup did not send the %s NIC's MAC %s (sent %s)", model, mac, lookupMACs)
		}
	}
	var disks []string
	for _, d := range inv.Disks {
		if bus, ok := sizes[d.Size]; ok {
			disks = append(disks, bus)
			t.Logf("disk %-8s → %s (%d bytes)", bus, d.Name, d.Size)
		}
	}
	sort.Strings(found)
	sort.Strings(disks)
	// The LSI SAS1068 controller gets its driver (mptsas, checked below),
	// but Linux 6.1's mptsas finds no end device behind QEMU 7.2's
	// mptsas1068 (docs/ramdisk.md): its disk is not expected. If it shows
	// up, a newer QEMU or kernel fixed that and the list below should
	// lose this exception.
	wantNICs := slices.Clone(qemu.NICModels)
	wantDisks := slices.DeleteFunc(slices.Clone(qemu.DiskBuses), func(b string) bool { return b == qemu.DiskLSISAS })
	sort.Strings(wantNICs)
	sort.Strings(wantDisks)
	if !slices.Equal(found, wantNICs) {
		t.Errorf("inventory NICs %v, want %v (inventory: %s)", found, wantNICs, invJSON)
	}
	if slices.Contains(disks, qemu.DiskLSISAS) {
		t.Logf("the LSI SAS1068 disk was found: drop its exception from this test and docs/ramdisk.md")
		disks = slices.DeleteFunc(disks, func(b string) bool { return b == qemu.DiskLSISAS })
	}
	if !slices.Equal(disks, wantDisks) {
		t.Errorf("inventory disks %v, want %v (inventory: %s)", disks, wantDisks, invJSON)
	}

	// The drivers came from the devices' modaliases: the agent's kmod
	// logged each load, at boot or when the device appeared later (a USB
	// disk enumerates after the settle under a loaded CPU); the hardware
	// ramdisk's modules-load.d lists only filesystems and ipmi_devintf.
	if _, _, err := m.vm.WaitFor(ctx, regexp.MustCompile(`kernel modules loaded by device`)); err != nil {
		t.Fatalf("no module report on the console: %v", err)
	}
	// Every device is in the inventory by now, so every load was logged
	// already: a short wait is only for the console's buffering.
	lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
	defer lcancel()
	for _, mod := range []string{"virtio_pci", "virtio_net", "e1000e", "e1000", "vmxnet3", "8139cp", "virtio_blk", "nvme",
		"ahci", "megaraid_sas", "mptsas", "xhci_pci", "usb_storage", "sd_mod", "virtio_rng"} {
		if _, _, err := m.vm.WaitFor(lctx, regexp.MustCompile(`kernel module loaded component=kmod module=`+mod+`( |$)`)); err != nil {
			t.Errorf("module %s not loaded by device: %v", mod, err)
		}
	}
	if _, _, err := m.vm.WaitFor(lctx, regexp.MustCompile(`kernel module failed to load component=kmod module=8139too `)); err != nil {
		t.Errorf("8139too's failure was not logged: %v", err)
	}
	if _, _, err := m.vm.WaitFor(ctx, regexp.MustCompile(`kernel modules for the devices present loaded .*settled=true`)); err != nil {
		t.Errorf("devices did not settle: %v", err)
	}
	t.Logf("hardware ramdisk %s (%.1f MiB), generic kernel: QEMU start → kernel %.1f s, kernel start → first heartbeat %.1f s (%d NICs, %d disks)",
		filepath.Base(ramdisk), fileMiB(t, ramdisk), m.qemuToKernel.Seconds(), m.kernelToBeat.Seconds(), len(found), len(disks))
}

// TestRamdiskHeartbeat measures both flavours on the same small VM (one
// virtio NIC, one virtio disk): kernel start → first heartbeat, each with
// its own kernel. About 10 s of CI per flavour.
func TestRamdiskHeartbeat(t *testing.T) {
	for _, c := range []struct {
		flavour         string
		kernel, ramdisk func(testing.TB) string
	}{
		{"virtual", vmtest.Kernel, vmtest.VirtualRamdisk},
		{"hardware", vmtest.GenericKernel, vmtest.HardwareRamdisk},
	} {
		t.Run(c.flavour, func(t *testing.T) {
			kernel, ramdisk := c.kernel(t), c.ramdisk(t)
			disk := filepath.Join(t.TempDir(), "disk.raw")
			if err := os.WriteFile(disk, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(disk, 4<<30); err != nil {
				t.Fatal(err)
			}
			nic, _ := qemu.NICArgs("virtio", "n0", "52:54:00:00:02:01", false, 0)
			dargs, _ := qemu.DiskArgs(qemu.DiskVirtio, "d0", disk, "", 0)
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			m := bootToHeartbeat(ctx, t, kernel, ramdisk, 1, append(nic, dargs...))
			t.Logf("%s ramdisk %s (%.1f MiB), %s: QEMU start → kernel's first line %.1f s (firmware, loading and decompressing the kernel), kernel's first line → first heartbeat %.1f s; QEMU start → first heartbeat %.1f s",
				c.flavour, filepath.Base(ramdisk), fileMiB(t, ramdisk), filepath.Base(filepath.Dir(kernel)),
				m.qemuToKernel.Seconds(), m.kernelToBeat.Seconds(), m.qemuToHeartbeat.Seconds())
		})
	}
}

func fileMiB(t *testing.T, p string) float64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return float64(fi.Size()) / (1 << 20)
}
