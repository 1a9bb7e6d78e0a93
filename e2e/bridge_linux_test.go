package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
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
	lan := newBridgeNet(t, "10.77.0")
	f := &fakeIronic{node: "b41d6e00-0b0a-4998-8776-655443322110"}
	apiURL := lan.serve(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	const mac = "52:54:00:77:00:02"
	bn := newBridgedNode(ctx, t, a, lan, apiURL, bridgedNodeSpec{uuid: f.node, mac: mac, kernel: kernel, initramfs: ramdisk,
		driverInfo: map[string]any{qemu.InfoNICModel: "e1000e", qemu.InfoDiskBus: qemu.DiskNVMe}})
	d, n, console := bn.driver, bn.node, bn.console
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
	tr := &http.Transport{DialContext: vmtest.NetnsDialer(lan.ns)}
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
