package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/lldp"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"github.com/rivetmetal/rivet/internal/testswitch"
	"github.com/rivetmetal/rivet/wire"
)

// notYetInspecting is the fake Ironic API of a conductor that has not yet
// moved the node to inspect wait when the agent first posts: the first
// `refuse` inspection posts get 404 "not being inspected".
type notYetInspecting struct {
	*fakeIronic
	refuse int

	mu    sync.Mutex
	posts int
}

func (n *notYetInspecting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/continue_inspection" {
		n.mu.Lock()
		n.posts++
		refused := n.posts <= n.refuse
		n.mu.Unlock()
		if refused {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(wire.NewIronicError("Client", "Node could not be found or is not being inspected."))
			return
		}
	}
	n.fakeIronic.ServeHTTP(w, r)
}

// TestLLDPInspectionOnBridge boots the virtual ramdisk (virtio NIC) with
// ipa-collect-lldp=1 on a bridge in a network namespace the test makes,
// where Debian's lldpd, on the bridge, announces a switch: system name and
// description, a port ID and description, a management address, the
// port's VLAN and a VLAN name. The fake Ironic API, on the bridge too,
// answers the agent's first inspection post 404, as a conductor that has
// not yet moved the node to inspect wait. The agent posts again after
// IPA's 5 s; that inventory carries the switch's TLVs on the NIC, and
// conductor/lldp parses them into the parsed_lldp entry Metal3 reads.
func TestLLDPInspectionOnBridge(t *testing.T) {
	a := needArtefacts(t)
	lan := newBridgeNet(t, "10.78.0")
	ns, ipBin := lan.ns, lan.ipBin
	vmtest.Tool(t, "lldpd")
	var bridgeMAC net.HardwareAddr
	if err := vmtest.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName("br0")
		if err == nil {
			bridgeMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sw := testswitch.Announce{SystemName: "tor-e2e-01", SystemDescription: "Rivet e2e switch", PortID: "Ethernet1/12",
		PortDescription: "node-e2e uplink", MgmtAddress: "10.78.0.1", PVID: 78, VLANs: []testswitch.VLAN{{ID: 78, Name: "provisioning"}}}
	testswitch.StartLLDPD(t, ipBin, ns, "br0", sw)

	f := &notYetInspecting{fakeIronic: &fakeIronic{node: "d7f3c2b1-0b0a-4998-8776-655443322178"}, refuse: 1}
	apiURL := lan.serve(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	const mac = "52:54:00:78:00:02"
	bn := newBridgedNode(ctx, t, a, lan, apiURL, bridgedNodeSpec{uuid: f.node, mac: mac, kernel: a.kernel, initramfs: a.ramdisk,
		params: []string{"ipa-inspection-callback-url=" + apiURL + "/v1/continue_inspection", "ipa-collect-lldp=1", "ipa-lldp-timeout=60"}})
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
	posts := f.posts
	f.mu.Unlock()
	f.fakeIronic.mu.Lock()
	raw := f.inventory
	f.fakeIronic.mu.Unlock()
	if posts != 2 || raw == nil {
		t.Fatalf("%d inspection posts (want the refused one and its retry), inventory %s", posts, raw)
	}

	var inv wire.Inventory
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	var nic *wire.NetworkInterface
	for i := range inv.Interfaces {
		if inv.Interfaces[i].MACAddress == mac {
			nic = &inv.Interfaces[i]
		}
	}
	if nic == nil || len(nic.LLDP) == 0 {
		t.Fatalf("no LLDP on the node's NIC: %s", raw)
	}
	parsed, problems := lldp.ParseInterfaces(inv.Interfaces, nil)
	got, ok := parsed[nic.Name]
	if !ok {
		t.Fatalf("parsed_lldp %v, problems %v", parsed, problems)
	}
	b, _ := json.Marshal(got)
	t.Logf("parsed_lldp[%s] = %s", nic.Name, b)
	str := func(p *string) string {
		if p == nil {
			return "<unset>"
		}
		return *p
	}
	for _, c := range []struct{ key, got, want string }{
		{"switch_chassis_id", str(got.ChassisID), bridgeMAC.String()},
		{"switch_port_id", str(got.PortID), sw.PortID},
		{"switch_port_description", str(got.PortDescription), sw.PortDescription},
		{"switch_system_name", str(got.SystemName), sw.SystemName},
		{"switch_system_description", str(got.SystemDescription), sw.SystemDescription},
		{"switch_mgmt_addresses", strings.Join(got.MgmtAddresses, ","), sw.MgmtAddress},
		{"switch_port_vlans", fmt.Sprint(got.PortVLANs), "[{78 provisioning}]"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}
	if got.PortUntaggedVLANID == nil || *got.PortUntaggedVLANID != sw.PVID {
		t.Errorf("switch_port_untagged_vlan_id %v", got.PortUntaggedVLANID)
	}
	cons, _ := os.ReadFile(console)
	for _, want := range []string{"LLDP: frame received", "inspection callback failed; retrying", "inspection data sent"} {
		if !strings.Contains(string(cons), want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, line := range strings.Split(string(cons), "\n") {
		if strings.Contains(line, "msg=") && (strings.Contains(line, "LLDP") || strings.Contains(line, "inspection") ||
			strings.Contains(line, "hardware inventory collected")) {
			t.Log(strings.TrimSpace(line))
		}
	}
	t.Logf("virtual ramdisk on a bridge with lldpd: power on → first heartbeat %.1f s (one refused inspection post, retried after 5 s)", took.Seconds())
}
