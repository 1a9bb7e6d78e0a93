package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// bridgeNet is a Linux bridge br0 with the address <subnet>.1/24 inside a
// network namespace the test makes; nothing on it reaches the host's
// networks.
type bridgeNet struct {
	ns, ipBin, subnet string
}

// newBridgeNet makes the namespace and its bridge; subnet is the first
// three octets of a /24, e.g. "10.77.0".
func newBridgeNet(t *testing.T, subnet string) bridgeNet {
	t.Helper()
	b := bridgeNet{ns: vmtest.Netns(t), ipBin: vmtest.Tool(t, "ip"), subnet: subnet}
	vmtest.Run(t, b.ipBin, "-n", b.ns, "link", "add", "br0", "type", "bridge")
	vmtest.Run(t, b.ipBin, "-n", b.ns, "addr", "add", b.gateway()+"/24", "dev", "br0")
	vmtest.Run(t, b.ipBin, "-n", b.ns, "link", "set", "br0", "up")
	return b
}

func (b bridgeNet) gateway() string { return b.subnet + ".1" }

// nodeAddr is the static address the one node on the bridge is given.
func (b bridgeNet) nodeAddr() string { return b.subnet + ".2" }

// serve serves h on the bridge's address until the test ends and returns
// its base URL.
func (b bridgeNet) serve(t *testing.T, h http.Handler) string {
	t.Helper()
	var ln net.Listener
	if err := vmtest.InNetns(b.ns, func() error {
		var err error
		ln, err = net.Listen("tcp", b.gateway()+":0")
		return err
	}); err != nil {
		t.Fatalf("listen on the bridge: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// bridgedNode is one node of the qemu power driver with its NIC on the
// bridge, its ramdisk prepared and its boot device set: the test powers
// it on.
type bridgedNode struct {
	driver  *qemu.Driver
	node    power.Node
	console string
}

// bridgedNodeSpec says what the node is: its NIC's MAC, driver_info beyond
// disk, BIOS boot, 1 GiB of memory and the bridge, the ramdisk it boots
// and the kernel parameters beyond the API URL and its static address.
type bridgedNodeSpec struct {
	uuid, mac         string
	driverInfo        map[string]any
	kernel, initramfs string
	params            []string
}

// newBridgedNode prepares a node of the qemu driver whose QEMU (and ifup
// script) runs inside the bridge's namespace, with a sparse 4 GiB disk.
// It checks that the driver leaves the API URL as it is on a bridge (no
// user-networking relay). On failure the console log is logged; the node
// is powered off when the test ends.
func newBridgedNode(ctx context.Context, t *testing.T, a artefacts, b bridgeNet, apiURL string, s bridgedNodeSpec) *bridgedNode {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "qemu-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s -k 5 300 %s \"$@\"\n", b.ipBin, b.ns, vmtest.Tool(t, "timeout"), vmtest.QEMU(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Short, under /tmp: QEMU's monitor socket path has a length limit.
	stateDir, err := os.MkdirTemp("/tmp", "rivet-e2e-br-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	files := t.TempDir()
	d, err := qemu.New(qemu.Config{StateDir: stateDir, FilesDir: files, Relay: []string{a.conductor, "relay"}, Binary: wrapper})
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(files, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 4<<30); err != nil {
		t.Fatal(err)
	}
	info := map[string]any{qemu.InfoDisk: disk, qemu.InfoBootMode: qemu.BootBIOS, qemu.InfoMemoryMB: 1024, qemu.InfoBridge: "br0"}
	for k, v := range s.driverInfo {
		info[k] = v
	}
	n := power.Node{UUID: s.uuid, DriverInfo: info, MACs: []string{s.mac}}
	if err := d.Validate(n); err != nil {
		t.Fatal(err)
	}
	nodeURL, err := d.NodeURL(n, apiURL)
	if err != nil || nodeURL != apiURL {
		t.Fatalf("NodeURL(%s) = %s, %v: want it unchanged on a bridge", apiURL, nodeURL, err)
	}
	params := append([]string{
		"ipa-api-url=" + nodeURL,
		fmt.Sprintf("ip=%s::%s:255.255.255.0::eth0:off", b.nodeAddr(), b.gateway()),
	}, s.params...)
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: s.kernel, Initramfs: s.initramfs, Params: params}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	bn := &bridgedNode{driver: d, node: n, console: filepath.Join(stateDir, n.UUID, "console.log")}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(bn.console)
			t.Logf("console log:\n%s", b)
		}
		_ = d.SetPowerState(context.Background(), n, power.Off)
	})
	return bn
}
