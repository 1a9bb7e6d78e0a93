package virtualrack

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

func TestMain(m *testing.M) {
	ipmisim.RunHelper() // ipmi_sim runs the test binary as its helper
	os.Exit(m.Run())
}

// fakeQEMU stands in for QEMU: it records its arguments and network
// namespace in its directory's argv.txt and waits to be stopped, so the
// rack's BMC path is tested without booting a VM.
const fakeQEMU = `#!/bin/sh
{ echo "netns=$(ip netns identify $$)"; for a in "$@"; do echo "$a"; done; } > "$(dirname "$0")/argv-$$.txt"
exec sleep 600
`

// TestRackWithoutVMs starts a real rack (namespace, bridges, the
// conductor binary, ipmi_sim BMCs, enrolment) whose "QEMU" is a script,
// then drives a BMC with ipmitool from inside the namespace as the
// conductor would: boot device pxe, power on, power off. The machine
// command runs in the namespace with the qemu driver's network-boot
// arguments and the in-band BMC; Close leaves no namespace, process or
// disk behind.
func TestRackWithoutVMs(t *testing.T) {
	if os.Geteuid() != 0 {
		vmtest.Unavailable(t, "the virtual rack needs root (network namespaces, bridges)")
	}
	if ok, why := ipmisim.Available(); !ok {
		vmtest.Unavailable(t, "%s", why)
	}
	ipmitool := vmtest.Tool(t, "ipmitool")
	conductor := filepath.Join(vmtest.RepoRoot(t), "build/bin/rivet-conductor")
	if _, err := os.Stat(conductor); err != nil {
		vmtest.Unavailable(t, "%s missing: run make build", conductor)
	}
	tmp := t.TempDir()
	fake := filepath.Join(tmp, "qemu")
	if err := os.WriteFile(fake, []byte(fakeQEMU), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel, ramdisk := filepath.Join(tmp, "vmlinuz"), filepath.Join(tmp, "initramfs")
	for _, f := range []string{kernel, ramdisk} {
		os.WriteFile(f, []byte("not booted here"), 0o644)
	}
	dir, err := os.MkdirTemp("/tmp", "rivet-rack-t-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := Start(ctx, Config{Dir: dir, Conductor: conductor, DeployKernel: kernel, DeployRamdisk: ramdisk, QEMU: fake,
		Nodes: []NodeSpec{{}, {Firmware: BIOS, DiskBus: qemu.DiskMegaSAS}}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			r.Close()
		}
	})

	// Enrolled and available, with the ipmi driver, the port and the
	// serial console in the deploy ramdisk's parameters.
	for _, n := range r.Nodes {
		var doc map[string]any
		if err := r.API(ctx, http.MethodGet, "/v1/nodes/"+n.UUID, nil, &doc); err != nil {
			t.Fatal(err)
		}
		di, _ := doc["driver_info"].(map[string]any)
		props, _ := doc["properties"].(map[string]any)
		if doc["name"] != n.Name || doc["driver"] != "ipmi" || doc["provision_state"] != "available" ||
			di["ipmi_address"] != strings.Split(n.BMCAddress, ":")[0] || di["kernel_append_params"] != DefaultKernelAppendParams ||
			props["capabilities"] != "boot_mode:"+n.Firmware {
			t.Errorf("node %s: %v", n.Name, doc)
		}
	}
	var ports struct {
		Ports []struct {
			Address  string `json:"address"`
			NodeUUID string `json:"node_uuid"`
		} `json:"ports"`
	}
	if err := r.API(ctx, http.MethodGet, "/v1/ports?detail=true", nil, &ports); err != nil {
		t.Fatal(err)
	}
	if len(ports.Ports) != 2 || ports.Ports[0].Address != r.Nodes[0].MAC && ports.Ports[1].Address != r.Nodes[0].MAC {
		t.Errorf("ports %+v", ports)
	}
	// Credentials are required.
	noAuth := newAPIClient(r.Netns, r.APIURL, "", "")
	if err := noAuth.do(ctx, http.MethodGet, "/v1/nodes", nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("API without credentials: %v", err)
	}

	// A BMC as the conductor drives it, from inside the namespace.
	n := r.Nodes[1]
	host := strings.Split(n.BMCAddress, ":")[0]
	ipmi := func(args ...string) string {
		argv := append([]string{"netns", "exec", r.Netns, ipmitool, "-I", "lanplus", "-C", "3", "-H", host,
			"-U", n.BMC.Username(), "-P", n.BMC.Password()}, args...)
		out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ipmi("chassis", "bootdev", "pxe")
	ipmi("power", "on")
	var argv []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(tmp, "argv-*.txt"))
		if len(files) == 1 {
			b, _ := os.ReadFile(files[0])
			if argv = strings.Split(strings.TrimSpace(string(b)), "\n"); len(argv) > 10 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the machine command did not run: %v", files)
		}
	}
	joined := strings.Join(argv, " ")
	for _, want := range []string{"netns=" + r.Netns, "-name rivet-" + n.UUID, "tap,id=net0,ifname=",
		"e1000e,netdev=net0,mac=" + n.MAC + ",bootindex=1", "megasas-gen2", "isa-ipmi-kcs",
		"chardev:console", "path=" + n.ConsoleLog} {
		if !strings.Contains(joined, want) {
			t.Errorf("machine command lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "if=pflash") {
		t.Errorf("a BIOS node got OVMF: %s", joined)
	}
	if out := ipmi("power", "status"); !strings.Contains(out, "is on") {
		t.Errorf("power status: %s", out)
	}
	ons := n.PowerOns()
	if len(ons) != 1 || ons[0].BootDevice != "pxe" {
		t.Errorf("power ons %+v", ons)
	}
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	if _, _, err := n.WaitConsole(lctx, regexp.MustCompile(`virtual rack: `+n.Name+` powered on by its BMC .* boot device "pxe"`), ons[0].ConsoleSeq); err != nil {
		t.Errorf("no power-on line on the console: %v", err)
	}
	lcancel()
	ipmi("power", "off")
	if out := ipmi("power", "status"); !strings.Contains(out, "is off") {
		t.Errorf("power status after power off: %s", out)
	}

	// The API through a loopback forward.
	addr, err := r.Forward("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/v1/nodes", nil)
	req.SetBasicAuth(r.Username, r.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), r.Nodes[0].UUID) {
		t.Errorf("GET /v1/nodes through the forward: %d %s", resp.StatusCode, body.String())
	}

	ns := r.Netns
	ipmi("power", "on") // left running: Close must stop it
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if files, _ := filepath.Glob(filepath.Join(tmp, "argv-*.txt")); len(files) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second power on did not start the machine")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), ns) {
		t.Errorf("namespace %s left behind", ns)
	}
	for _, n := range r.Nodes {
		if _, err := os.Stat(n.Disk); !os.IsNotExist(err) {
			t.Errorf("disk %s left behind: %v", n.Disk, err)
		}
		if n.BMC.PoweredOn() {
			t.Errorf("%s still powered on", n.Name)
		}
	}
	files, _ := filepath.Glob(filepath.Join(tmp, "argv-*.txt"))
	if len(files) != 2 {
		t.Errorf("machine starts recorded: %v, want 2", files)
	}
	for _, f := range files {
		pid := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "argv-"), ".txt")
		if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.Contains(string(b), "sleep") {
			t.Errorf("machine process %s left behind", pid)
		}
	}
	if _, err := r.Forward("127.0.0.1:0"); err == nil {
		t.Error("Forward after Close accepted")
	}
}
