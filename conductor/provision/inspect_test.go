package provision

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// earlyAgentDriver is a vm driver whose agent posts its inspection data
// while the conductor is still booting the ramdisk: before the node
// waits for it.
type earlyAgentDriver struct {
	vmDriver
	mu   sync.Mutex
	post func(node power.Node)
}

func (d *earlyAgentDriver) PrepareRamdisk(ctx context.Context, node power.Node, rd power.Ramdisk) error {
	if err := d.vmDriver.PrepareRamdisk(ctx, node, rd); err != nil {
		return err
	}
	d.mu.Lock()
	post := d.post
	d.mu.Unlock()
	if post != nil {
		post(node)
	}
	return nil
}

// TestInspectionCallbackBeforeWait: the agent's data arriving while the
// node is still "inspecting" is taken (no 404), the inspection ends
// without the node waiting, its properties are set, its LLDP parsed into
// plugin_data.parsed_lldp, and the ports are created and updated as
// Ironic's inspection hooks do.
func TestInspectionCallbackBeforeWait(t *testing.T) {
	fk, _ := fake.New(fake.Config{})
	drv := &earlyAgentDriver{vmDriver: vmDriver{Driver: fk}}
	e, st := newTestEngine(t, drv, Config{APIURL: "http://127.0.0.1:6385", DeployKernel: "/k", DeployRamdisk: "/r",
		InspectionAddPorts: "all"})
	ctx := context.Background()
	n := &store.Node{Name: "n1", Driver: "vm"}
	if err := st.CreateNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	// A port that exists with the wrong PXE flag; the second NIC has none.
	if err := st.CreatePort(ctx, &store.Port{NodeID: n.ID, Address: "52:54:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	var data wire.InspectionData
	if err := json.Unmarshal([]byte(`{"inventory": {
		"interfaces": [{"name": "eth0", "mac_address": "52:54:00:00:00:01", "ipv4_address": "192.0.2.5",
			"lldp": [[1, "04aabbccddeeff"], [2, "0545746865726e6574312f37"], [5, "737730"], [0, ""]]},
			{"name": "eth1", "mac_address": "52:54:00:00:00:02"}],
		"cpu": {"count": 2, "architecture": "aarch64"},
		"memory": {"physical_mb": 2048},
		"disks": [{"name": "/dev/vda", "size": 10737418240}],
		"boot": {"current_boot_mode": "bios", "pxe_interface": "52:54:00:00:00:01"}},
		"root_disk": {"name": "/dev/vda", "size": 10737418240}}`), &data); err != nil {
		t.Fatal(err)
	}
	posted := make(chan error, 1)
	drv.mu.Lock()
	drv.post = func(node power.Node) {
		got, err := st.GetNode(ctx, node.UUID)
		if err == nil && got.ProvisionState != statemachine.Inspecting {
			t.Errorf("posting in %q, want inspecting", got.ProvisionState)
		}
		_, err = e.Inspection().ContinueInspection(ctx, node.UUID, data)
		posted <- err
	}
	drv.mu.Unlock()

	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "manage"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, n.UUID, statemachine.Manageable)
	if err := e.Provisioning().Provision(ctx, "n1", Request{Target: "inspect"}); err != nil {
		t.Fatal(err)
	}
	if err := <-posted; err != nil {
		t.Fatalf("inspection data posted while booting: %v", err)
	}
	got := waitState(t, st, n.UUID, statemachine.Manageable)
	if got.LastError != "" || got.Properties["cpu_arch"] != "aarch64" || got.Properties["capabilities"] != "boot_mode:bios" {
		t.Fatalf("after inspection: last_error %q properties %v", got.LastError, got.Properties)
	}
	pd, _ := got.DriverInternalInfo["inspection_plugin_data"].(map[string]any)
	if pd["all_interfaces"] == nil || pd["root_disk"] == nil {
		t.Fatalf("plugin_data %v", pd)
	}
	// parsed_lldp through the engine's default parser (conductor/lldp).
	if lldp, _ := pd["parsed_lldp"].(map[string]any); lldp == nil || lldp["eth1"] != nil ||
		lldp["eth0"].(map[string]any)["switch_port_id"] != "Ethernet1/7" || lldp["eth0"].(map[string]any)["switch_system_name"] != "sw0" {
		t.Fatalf("parsed_lldp %v", pd["parsed_lldp"])
	}
	ports, err := st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, p := range ports {
		summary = append(summary, p.Address+map[bool]string{true: " pxe", false: ""}[p.PXEEnabled])
	}
	if !slices.Equal(summary, []string{"52:54:00:00:00:01 pxe", "52:54:00:00:00:02"}) {
		t.Fatalf("ports after inspection: %v", summary)
	}
	drv.mu.Lock()
	rd := drv.prepared[len(drv.prepared)-1]
	drv.mu.Unlock()
	if !slices.Contains(rd.Params, "ipa-inspection-callback-url=http://10.0.2.100:6385/v1/continue_inspection?node_uuid="+n.UUID) {
		t.Fatalf("ramdisk params %v", rd.Params)
	}
}

// TestStaticNetworkParams: network_data's first IPv4 network becomes the
// ramdisk's ip= parameter.
func TestStaticNetworkParams(t *testing.T) {
	nd := func(js string) *store.Node {
		n := &store.Node{UUID: "u1"}
		if err := json.Unmarshal([]byte(js), &n.NetworkData); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		js, want string
		bad      bool
	}{
		{`{}`, "", false},
		{`{"networks": [{"id": "n0", "type": "ipv4_dhcp", "link": "l0"}]}`, "", false},
		{`{"links": [{"id": "l0", "ethernet_mac_address": "52:54:00:00:00:01"}], "networks": [{"id": "n0", "type": "ipv4", "link": "l0",
			"ip_address": "192.0.2.50", "netmask": "255.255.255.0",
			"routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "192.0.2.2"}, {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}]}`,
			"ip=192.0.2.50::192.0.2.1:255.255.255.0:::none", false},
		{`{"networks": [{"type": "ipv4", "ip_address": "198.51.100.7/25"}]}`, "ip=198.51.100.7:::255.255.255.128:::none", false},
		{`{"networks": [{"type": "ipv4", "ip_address": "not-an-ip"}]}`, "", true},
		{`{"networks": [{"type": "ipv4", "ip_address": "192.0.2.5", "routes": [{"network": "0.0.0.0", "gateway": "x"}]}]}`, "", true},
	} {
		got, err := staticNetworkParams(nd(tc.js))
		if (err != nil) != tc.bad {
			t.Errorf("%s: error %v", tc.js, err)
			continue
		}
		if s := ""; len(got) > 0 {
			s = got[0]
			if s != tc.want {
				t.Errorf("%s: %q, want %q", tc.js, s, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: nothing, want %q", tc.js, tc.want)
		}
	}
}
