package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// TestHardwareRamdiskOnBridge drives a node through the qemu power driver
// as the conductor does, with emulated physical hardware on a real
// network: qemu_bridge (a bridge in a network namespace the test makes),
// qemu_nic_model=e1000e, qemu_disk_bus=nvme, the hardware ramdisk on the
// kernel shortcut with a static address. The fake Ironic API listens on
// the bridge inside the namespace. The agent looks up, heartbeats with
// its address on the bridge (no user-networking translation), and the
// test calls the agent's API back across the bridge. One VM boot, about
// 15 s of CI.
func TestHardwareRamdiskOnBridge(t *testing.T) {
	a := needArtefacts(t)
	kernel, ramdisk := vmtest.GenericKernel(t), vmtest.HardwareRamdisk(t)
	ns := vmtest.Netns(t)
	ipBin := vmtest.Tool(t, "ip")
	vmtest.Run(t, ipBin, "-n", ns, "link", "add", "br0", "type", "bridge")
	vmtest.Run(t, ipBin, "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "br0")
	vmtest.Run(t, ipBin, "-n", ns, "link", "set", "br0", "up")

	f := &fakeIronic{node: "b41d6e00-0b0a-4998-8776-655443322110"}
	var ln net.Listener
	if err := vmtest.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "10.77.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen on the bridge: %v", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	apiURL := "http://" + ln.Addr().String()

	// The driver runs QEMU (and its ifup script) inside the namespace.
	wrapper := filepath.Join(t.TempDir(), "qemu-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s -k 5 300 %s \"$@\"\n", ipBin, ns, vmtest.Tool(t, "timeout"), vmtest.QEMU(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
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
	const mac = "52:54:00:77:00:02"
	n := power.Node{UUID: f.node, DriverInfo: map[string]any{
		qemu.InfoDisk: disk, qemu.InfoBootMode: qemu.BootBIOS, qemu.InfoMemoryMB: 1024,
		qemu.InfoBridge: "br0", qemu.InfoNICModel: "e1000e", qemu.InfoDiskBus: qemu.DiskNVMe,
	}, MACs: []string{mac}}
	if err := d.Validate(n); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	nodeURL, err := d.NodeURL(n, apiURL)
	if err != nil || nodeURL != apiURL {
		t.Fatalf("NodeURL(%s) = %s, %v: want it unchanged on a bridge", apiURL, nodeURL, err)
	}
	if err := d.PrepareRamdisk(ctx, n, power.Ramdisk{Kernel: kernel, Initramfs: ramdisk, Params: []string{
		"ipa-api-url=" + nodeURL, "ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off",
	}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetBootDevice(ctx, n, power.BootPXE, false); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(stateDir, n.UUID, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("console log:\n%s", b)
		}
		_ = d.SetPowerState(context.Background(), n, power.Off)
	})
	start := time.Now()
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	if _, err := f.firstHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	f.mu.Lock()
	beat, lookupMACs := f.lastBeat, f.lookupMACs
	f.mu.Unlock()
	if lookupMACs != mac {
		t.Errorf("lookup MACs %q, want the e1000e NIC's %s", lookupMACs, mac)
	}
	if !strings.Contains(beat.CallbackURL, "://10.77.0.2:9999") {
		t.Errorf("heartbeat callback_url %q, want the node's address on the bridge", beat.CallbackURL)
	}

	// Conductor → agent across the bridge.
	tr := &http.Transport{DialContext: vmtest.NetnsDialer(ns)}
	if beat.AgentVerifyCA != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(beat.AgentVerifyCA))
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "10.77.0.2"}
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get(strings.TrimRight(beat.CallbackURL, "/") + "/v1/status")
	if err != nil {
		t.Fatalf("agent API across the bridge: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var status map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &status) != nil {
		t.Errorf("GET /v1/status: %d %s", resp.StatusCode, body)
	}
	b, _ := os.ReadFile(console)
	for _, want := range []string{"module=e1000e", "module=nvme "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("console lacks %q: the driver was not loaded by device", want)
		}
	}
	t.Logf("qemu driver, bridge + e1000e + nvme, hardware ramdisk: power on → first heartbeat %.1f s; agent API answered across the bridge", took.Seconds())
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
}
