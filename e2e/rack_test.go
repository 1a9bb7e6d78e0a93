package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/hardware/ondisk"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/virtualrack"
)

// TestVirtualRack is the "rack in a box" proof (issue 10), on emulated
// physical hardware with no shortcut. Inside a network namespace the
// virtual rack makes: the real conductor with its boot services on a
// bridge (full DHCP), an ipmi_sim BMC per node, and two QEMU nodes with
// e1000e NICs, enrolled with the ipmi driver:
//
//   - uefi1: OVMF, NVMe disk; deployed with the whole-disk test image;
//   - bios1: SeaBIOS, MegaRAID SAS disk; deployed with a partition image
//     whose GRUB (i386-pc) the agent installs by running the image's own
//     grub-install and grub-mkconfig in a chroot.
//
// Both deploy at once: the conductor sets boot device pxe and powers each
// node on through IPMI; the firmware network-boots (DHCP, TFTP of
// snponly.efi for UEFI, iPXE, the per-MAC script over HTTP), loads the
// hardware deploy ramdisk, and the agent looks up, heartbeats and writes
// the image fetched from the conductor's image server. Both reach active,
// the BMCs then boot them from their disks (boot device disk) and each
// deployed OS prints its marker; the BIOS node's kernel command line
// shows it was booted by the GRUB configuration grub-mkconfig wrote
// (root=UUID of the image's filesystem). It measures power on → kernel,
// → first heartbeat, PXE power on → active, and logs the device table.
func TestVirtualRack(t *testing.T) {
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "the virtual rack needs root (network namespaces, bridges, taps)")
	}
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	root := vmtest.RepoRoot(t)
	vmtest.QEMU(t)
	vmtest.Tool(t, "ip")
	for _, f := range []string{vmtest.OVMFCode, "/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/qemu/efi-e1000e.rom",
		"/usr/lib/grub/i386-pc/boot.img"} {
		if _, err := os.Stat(f); err != nil {
			vmtest.Unavailable(t, "%s missing (run make deps): %v", f, err)
		}
	}
	kernel, ramdisk := vmtest.GenericKernel(t), vmtest.HardwareRamdisk(t)
	conductor := filepath.Join(root, "build/bin/rivet-conductor")
	cli := filepath.Join(root, "build/bin/rivet")
	wholeDisk := filepath.Join(root, "build/testimage/disk.raw")
	for _, f := range []string{conductor, cli, wholeDisk} {
		if _, err := os.Stat(f); err != nil {
			vmtest.Unavailable(t, "%s is missing: run `make test` (it builds the binaries and the test image)", f)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	testStart := time.Now()

	// The images, served by the conductor from its --image-dir.
	imageDir := t.TempDir()
	if err := os.Link(wholeDisk, filepath.Join(imageDir, "disk.raw")); err != nil {
		copyFile(t, wholeDisk, filepath.Join(imageDir, "disk.raw"))
	}
	wholeSum := sha256File(t, filepath.Join(imageDir, "disk.raw"))
	buildStart := time.Now()
	part, err := testimage.BuildPartition(ctx, testimage.PartitionOptions{Kernel: vmtest.Kernel(t),
		Output: filepath.Join(imageDir, "partition.raw"), ID: "rack-bios", ModuleDir: root})
	if err != nil {
		t.Fatal(err)
	}
	partBuild := time.Since(buildStart)

	dir, err := os.MkdirTemp("/tmp", "rivet-rack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rack, err := virtualrack.Start(ctx, virtualrack.Config{
		Dir: dir, Conductor: conductor, DeployKernel: kernel, DeployRamdisk: ramdisk, ImageDir: imageDir,
		HeartbeatTimeout: 20 * time.Second,
		Nodes: []virtualrack.NodeSpec{
			{Name: "uefi1", Firmware: virtualrack.UEFI, NICModel: "e1000e", DiskBus: qemu.DiskNVMe},
			{Name: "bios1", Firmware: virtualrack.BIOS, NICModel: "e1000e", DiskBus: qemu.DiskMegaSAS},
			{Name: "uefi2", Firmware: virtualrack.UEFI, NICModel: "virtio", NICROM: qemu.NICROMNone, DiskBus: qemu.DiskAHCI},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpRack(t, rack)
		}
		if err := rack.Close(); err != nil {
			t.Errorf("close the rack: %v", err)
		}
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(out), rack.Netns) {
			t.Errorf("namespace %s still exists after Close", rack.Netns)
		}
	})
	rackUp := time.Since(testStart)

	// The operator's path: the CLI through a loopback forward, with the
	// rack's credentials.
	fwd, err := rack.Forward("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cliCmd := exec.CommandContext(ctx, cli, "--url", "http://"+fwd.String(), "node", "list")
	cliCmd.Env = append(os.Environ(), "RIVET_USERNAME="+rack.Username, "RIVET_PASSWORD="+rack.Password)
	out, err := cliCmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "uefi1") || !strings.Contains(string(out), "bios1") ||
		strings.Count(string(out), "available") != 3 {
		t.Fatalf("rivet node list through the forward: %v\n%s", err, out)
	}
	noAuth := exec.CommandContext(ctx, cli, "--url", "http://"+fwd.String(), "node", "list")
	noAuth.Env = slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "RIVET_") })
	if out, err := noAuth.CombinedOutput(); err == nil {
		t.Fatalf("the API answered without credentials:\n%s", out)
	}

	uefi, bios, pxe := rack.Node("uefi1"), rack.Node("bios1"), rack.Node("uefi2")
	// uefi2 is inspected meanwhile, booting through OVMF's own PXE client:
	// DHCP, snponly.efi over TFTP, then iPXE and its script.
	inspected := make(chan error, 1)
	var inspectEnd time.Time
	go func() {
		ictx, icancel := context.WithTimeout(ctx, 15*time.Minute)
		defer icancel()
		err := rack.SetProvisionState(ictx, pxe.Name, "manage", nil)
		if err == nil {
			_, err = rack.WaitState(ictx, pxe.Name, "manageable")
		}
		if err == nil {
			err = rack.SetProvisionState(ictx, pxe.Name, "inspect", nil)
		}
		if err == nil {
			_, err = rack.WaitState(ictx, pxe.Name, "manageable", "inspect failed")
		}
		inspectEnd = time.Now()
		inspected <- err
	}()

	deploys := []struct {
		node *virtualrack.Node
		ii   map[string]any
	}{
		{uefi, map[string]any{"image_source": rack.ImageURL("disk.raw"), "image_os_hash_algo": "sha256",
			"image_os_hash_value": wholeSum}},
		{bios, map[string]any{"image_source": rack.ImageURL("partition.raw"), "image_os_hash_algo": "sha256",
			"image_os_hash_value": part.SHA256, "image_type": "partition", "root_gb": 1}},
	}
	watches := map[string]*nodeWatch{}
	var wg sync.WaitGroup
	for _, d := range deploys {
		patch := []map[string]any{{"op": "add", "path": "/instance_info", "value": d.ii}}
		if err := rack.API(ctx, http.MethodPatch, "/v1/nodes/"+d.node.Name, patch, nil); err != nil {
			t.Fatal(err)
		}
		w := &nodeWatch{node: d.node, requested: time.Now()}
		watches[d.node.Name] = w
		if err := rack.SetProvisionState(ctx, d.node.Name, "active", nil); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, rack)
		}()
	}
	wg.Wait()
	if err := <-inspected; err != nil {
		t.Fatalf("inspect %s: %v", pxe.Name, err)
	}
	for _, w := range watches {
		if w.err != nil {
			t.Fatalf("%s: %v", w.node.Name, w.err)
		}
	}

	// Each node: PXE power on → deploy ramdisk → active, then a power on
	// from its disk into the deployed OS, which prints its marker.
	type result struct {
		kernelAt, beatAt, activeAt, markerAt time.Time
		marker, cmdline                      string
		pxeOn, diskOn                        virtualrack.PowerOn
	}
	results := map[string]*result{}
	for _, d := range deploys {
		n, w := d.node, watches[d.node.Name]
		res := &result{activeAt: w.activeAt, beatAt: w.firstBeat}
		results[n.Name] = res
		mctx, mcancel := context.WithTimeout(ctx, 5*time.Minute)
		var ons []virtualrack.PowerOn
		for {
			ons = n.PowerOns()
			if len(ons) >= 2 || mctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(ons) < 2 || ons[0].BootDevice != "pxe" || ons[1].BootDevice != "disk" {
			mcancel()
			t.Fatalf("%s: BMC power ons %+v; want one with boot device pxe, then one with disk", n.Name, ons)
		}
		res.pxeOn, res.diskOn = ons[0], ons[1]
		if l, _, err := n.WaitConsole(mctx, regexp.MustCompile(`Linux version \d`), ons[0].ConsoleSeq); err != nil {
			t.Errorf("%s: the deploy kernel's first line: %v", n.Name, err)
		} else {
			res.kernelAt = l.At
		}
		l, m, err := n.WaitConsole(mctx, testimage.MarkerPattern, ons[1].ConsoleSeq)
		if err != nil {
			mcancel()
			t.Fatalf("%s: the deployed disk did not boot to its marker: %v", n.Name, err)
		}
		res.markerAt, res.marker = l.At, m[0]
		if n == bios {
			// The partition image's init prints its kernel command line.
			if _, m, err := n.WaitConsole(mctx, testimage.CmdlinePattern, l.Seq); err == nil {
				res.cmdline = m[1]
			}
		}
		mcancel()
	}
	if m := results["uefi1"].marker; m != "RIVET-TESTIMAGE-BOOTED id="+testimage.DefaultID+" firmware=uefi" {
		t.Errorf("uefi1 marker %q", m)
	}
	if m := results["bios1"].marker; m != "RIVET-TESTIMAGE-BOOTED id=rack-bios firmware=bios" {
		t.Errorf("bios1 marker %q", m)
	}
	// grub-mkconfig's entry, not a stand-in: BOOT_IMAGE and the root
	// filesystem by UUID.
	if c := results["bios1"].cmdline; !strings.Contains(c, "BOOT_IMAGE=/boot/vmlinuz-"+part.KernelVersion) ||
		!strings.Contains(c, "root=UUID="+part.FSUUID) || !strings.Contains(c, "console=ttyS0") {
		t.Errorf("bios1 kernel command line %q: want grub-mkconfig's entry (BOOT_IMAGE=/boot/vmlinuz-%s root=UUID=%s)",
			c, part.KernelVersion, part.FSUUID)
	}

	// The disks as written.
	checkWholeDiskImage(t, uefi.Disk, virtualrack.DefaultDiskSize, readFile(t, filepath.Join(imageDir, "disk.raw")))
	checkGRUBDisk(t, bios.Disk, part.FSUUID)

	// The network boot path, from the conductor's log. QEMU's NIC option
	// ROMs are iPXE: uefi1 and bios1 ask DHCP as iPXE and get their
	// script's URL at once. uefi2 boots through OVMF's own PXE client: its
	// lease names snponly.efi, fetched over TFTP, whose iPXE then asks
	// again and gets the script.
	clog := string(readFile(t, rack.ConductorLog()))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="dhcp: lease" .*mac=` + uefi.MAC + ` .*reply=ACK .*file=http://\S+/boot/` + uefi.MAC + `\.ipxe`),
		regexp.MustCompile(`msg="dhcp: lease" .*mac=` + bios.MAC + ` .*reply=ACK .*file=http://\S+/boot/` + bios.MAC + `\.ipxe`),
		regexp.MustCompile(`msg="dhcp: lease" .*mac=` + pxe.MAC + ` .*reply=ACK .*file=snponly\.efi`),
		regexp.MustCompile(`msg="tftp served" .*path=/?snponly\.efi `),
		regexp.MustCompile(`msg="dhcp: lease" .*mac=` + pxe.MAC + ` .*reply=ACK .*file=http://\S+/boot/` + pxe.MAC + `\.ipxe`),
		regexp.MustCompile(`msg="serving boot script" node=` + uefi.UUID + ` mac=` + uefi.MAC),
		regexp.MustCompile(`msg="serving boot script" node=` + bios.UUID + ` mac=` + bios.MAC),
		regexp.MustCompile(`msg="serving boot script" node=` + pxe.UUID + ` mac=` + pxe.MAC),
	} {
		if !want.MatchString(clog) {
			t.Errorf("conductor log lacks %s", want)
		}
	}

	// uefi2's inventory: its virtio NIC, its AHCI disk, and the BMC
	// address read in-band through the KCS interface.
	var inv struct {
		Inventory struct {
			Interfaces []struct {
				MAC string `json:"mac_address"`
			} `json:"interfaces"`
			Disks []struct {
				Name string `json:"name"`
				Size int64  `json:"size"`
			} `json:"disks"`
			BMCAddress string `json:"bmc_address"`
			BMCMAC     string `json:"bmc_mac"`
		} `json:"inventory"`
	}
	if err := rack.API(ctx, http.MethodGet, "/v1/nodes/"+pxe.Name+"/inventory", nil, &inv); err != nil {
		t.Fatal(err)
	}
	host, _, _ := strings.Cut(pxe.BMCAddress, ":")
	if i := inv.Inventory; len(i.Interfaces) != 1 || i.Interfaces[0].MAC != pxe.MAC ||
		!slices.ContainsFunc(i.Disks, func(d struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		}) bool {
			return d.Size == virtualrack.DefaultDiskSize
		}) || i.BMCAddress != host {
		t.Errorf("%s inventory %+v: want its NIC %s, its 5 GiB disk and BMC address %s", pxe.Name, i, pxe.MAC, host)
	}

	// The devices that worked: the agent loaded their drivers by
	// modalias and wrote the image to the disk on that bus.
	devices := []struct {
		node               *virtualrack.Node
		nicModule, diskMod string
		diskDev            string
	}{
		{uefi, "e1000e", "nvme", "/dev/nvme0n1"},
		{bios, "e1000e", "megaraid_sas", "/dev/sda"},
	}
	var pxeKernel, pxeInventory time.Time
	for _, re := range []string{`Linux version \d`, `kernel module loaded component=kmod module=virtio_net( |$)`,
		`kernel module loaded component=kmod module=ahci( |$)`} {
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		l, _, err := pxe.WaitConsole(lctx, regexp.MustCompile(re), 0)
		lcancel()
		if err != nil {
			t.Errorf("%s: console lacks %s: %v", pxe.Name, re, err)
			continue
		}
		if strings.HasPrefix(re, "Linux") {
			pxeKernel = l.At
		}
	}
	// The agent prints "inspection data sent" once the callback has
	// answered, and the conductor powers the node off as it answers: the
	// line may never reach the console. The inventory checked above is
	// the proof that the data arrived; the line only times it.
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	if l, _, err := pxe.WaitConsole(lctx, regexp.MustCompile(`inspection data sent`), 0); err == nil {
		pxeInventory = l.At
	}
	lcancel()
	for _, d := range devices {
		from := results[d.node.Name].pxeOn.ConsoleSeq
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		for _, re := range []string{
			`kernel module loaded component=kmod module=` + d.nicModule + `( |$)`,
			`kernel module loaded component=kmod module=` + d.diskMod + `( |$)`,
			`kernel module loaded component=kmod module=ipmi_si( |$)`,
			`install disk chosen.* device="?` + regexp.QuoteMeta(d.diskDev) + ` `,
			`image deployed`,
		} {
			if _, _, err := d.node.WaitConsole(lctx, regexp.MustCompile(re), from); err != nil {
				t.Errorf("%s: console lacks %s: %v", d.node.Name, re, err)
			}
		}
		lcancel()
	}

	s := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	t.Logf("virtual rack up (namespace, %d BMCs, conductor, nodes enrolled and available) in %s; partition image built in %s",
		len(rack.Nodes), s(rackUp), s(partBuild))
	t.Logf("| node | firmware | NIC | disk | power on → kernel | power on → first heartbeat | deploy → active | PXE power on → active | disk power on → marker |")
	for _, d := range deploys {
		n, r, w := d.node, results[d.node.Name], watches[d.node.Name]
		t.Logf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", n.Name, n.Firmware, n.NICModel, n.DiskBus,
			s(r.kernelAt.Sub(r.pxeOn.At)), s(r.beatAt.Sub(r.pxeOn.At)), s(r.activeAt.Sub(w.requested)),
			s(r.activeAt.Sub(r.pxeOn.At)), s(r.markerAt.Sub(r.diskOn.At)))
	}
	if ons := pxe.PowerOns(); len(ons) > 0 {
		sent := "not on the console (powered off first)"
		if !pxeInventory.IsZero() {
			sent = s(pxeInventory.Sub(ons[0].At))
		}
		t.Logf("%s (%s, %s NIC without option ROM: OVMF's PXE client and TFTP, %s disk), inspected: power on → kernel %s, → inventory sent %s, → manageable (powered off) %s",
			pxe.Name, pxe.Firmware, pxe.NICModel, pxe.DiskBus, s(pxeKernel.Sub(ons[0].At)), sent, s(inspectEnd.Sub(ons[0].At)))
	}
	// Where the boot time goes, from the console lines' times.
	for _, n := range []*virtualrack.Node{uefi, bios, pxe} {
		on := n.PowerOns()[0]
		var parts []string
		for _, m := range []struct{ name, re string }{
			{"iPXE", `iPXE \d`}, {"iPXE script", `\.ipxe\.\.\. ok`}, {"ramdisk loaded", `deploy_ramdisk\.\.\. ok`},
			{"kernel", `Linux version \d`}, {"agent", `msg="rivet-agent starting"`}, {"DHCP lease", `msg="DHCP lease configured"`},
			{"lookup", `msg="lookup succeeded"|msg="inspection data sent"`},
		} {
			mctx, mcancel := context.WithTimeout(ctx, time.Second)
			if l, _, err := n.WaitConsole(mctx, regexp.MustCompile(m.re), on.ConsoleSeq); err == nil {
				parts = append(parts, m.name+" "+s(l.At.Sub(on.At)))
			}
			mcancel()
		}
		t.Logf("%s boot from power on: %s", n.Name, strings.Join(parts, ", "))
	}
	t.Logf("whole test: %s", s(time.Since(testStart)))
}

// nodeWatch follows one node's deploy through the API: when the conductor
// recorded its first heartbeat, and when it went active.
type nodeWatch struct {
	node      *virtualrack.Node
	requested time.Time

	firstBeat time.Time
	activeAt  time.Time
	err       error
}

// run polls the node until it is active (or failed): the first
// agent_last_heartbeat it shows is the conductor's time of the first
// heartbeat (heartbeats come seconds apart; polls every half second).
func (w *nodeWatch) run(ctx context.Context, rack *virtualrack.Rack) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	for {
		var n map[string]any
		if err := rack.API(ctx, http.MethodGet, "/v1/nodes/"+w.node.Name, nil, &n); err != nil {
			w.err = err
			return
		}
		if w.firstBeat.IsZero() {
			dii, _ := n["driver_internal_info"].(map[string]any)
			if s, _ := dii["agent_last_heartbeat"].(string); s != "" {
				if at, err := time.Parse("2006-01-02T15:04:05.000000", s); err == nil {
					w.firstBeat = at
				}
			}
		}
		switch n["provision_state"] {
		case "active":
			if n["target_provision_state"] == nil {
				w.activeAt = time.Now()
				return
			}
		case "deploy failed", "error":
			w.err = fmt.Errorf("deploy failed: %v", n["last_error"])
			return
		}
		select {
		case <-ctx.Done():
			w.err = fmt.Errorf("not active: %w (state %v, last_error %v)", ctx.Err(), n["provision_state"], n["last_error"])
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkGRUBDisk checks the BIOS node's disk: an msdos table whose root
// partition holds the image's ext4 filesystem, and GRUB's boot code in
// the MBR (grub-install wrote it: the agent's layout writes none).
func checkGRUBDisk(t *testing.T, path, fsUUID string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if kind := ondisk.DetectTable(f, 512); kind != ondisk.MBRTable {
		t.Fatalf("%s: partition table %q, want msdos", path, kind)
	}
	mbr, err := ondisk.ReadMBR(f)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range mbr.Partitions {
		if !p.Used() {
			continue
		}
		if fs, ok := ondisk.Probe(f, int64(p.StartLBA)*512); ok && fs.Type == "ext4" && strings.EqualFold(fs.UUID, fsUUID) {
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no partition holds the image's ext4 filesystem %s (%+v)", path, fsUUID, mbr.Partitions)
	}
	boot := make([]byte, 440)
	if _, err := f.ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(boot, []byte("GRUB")) {
		t.Errorf("%s: the MBR boot code is not GRUB's", path)
	}
}

// dumpRack logs the ends of the conductor's log and the consoles.
func dumpRack(t *testing.T, rack *virtualrack.Rack) {
	if b, err := os.ReadFile(rack.ConductorLog()); err == nil {
		lines := strings.Split(string(b), "\n")
		t.Logf("conductor log (last 150 lines):\n%s", strings.Join(lines[max(0, len(lines)-150):], "\n"))
	}
	for _, n := range rack.Nodes {
		var b bytes.Buffer
		n.ConsoleTail(&b, 150)
		t.Logf("%s console (last 150 lines):\n%s", n.Name, b.String())
		if log, err := os.ReadFile(filepath.Join(filepath.Dir(n.ConsoleLog), "bmc", "console.log")); err == nil && len(log) > 0 {
			t.Logf("%s QEMU output:\n%s", n.Name, log)
		}
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b := readFile(t, src)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
