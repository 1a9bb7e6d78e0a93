package changefeed

import (
	"fmt"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// deployingNode is a node as it looks while its image is written, with an
// inspection inventory of 4 disks and 4 NICs.
func deployingNode() *store.Node {
	var disks, nics []any
	for i := range 4 {
		disks = append(disks, map[string]any{"name": fmt.Sprintf("/dev/sd%c", 'a'+i), "size": 1.92e12, "rotational": false,
			"model": "SAMSUNG MZ7LH1T9", "serial": "S455NY0M123456", "wwn": "0x5002538e4"})
		nics = append(nics, map[string]any{"name": fmt.Sprintf("eno%d", i), "mac_address": "52:54:00:12:34:56",
			"ipv4_address": "10.0.0.1", "speed_mbps": 25000.0})
	}
	return &store.Node{UUID: "0b9b1f0e-6c65-4a8b-9a3f-1b2c3d4e5f60", Name: "rack3-n17", Driver: "ipmi",
		ProvisionState: statemachine.DeployWait, TargetProvisionState: statemachine.Active, PowerState: "power on",
		InstanceInfo: map[string]any{"image_source": "http://images/os.qcow2", "image_os_hash_algo": "sha256"},
		DriverInfo:   map[string]any{"ipmi_address": "10.1.0.17", "ipmi_username": "admin", "ipmi_password": "x"},
		DeployStep:   map[string]any{"step": "write_image", "interface": "deploy", "priority": 80.0},
		DriverInternalInfo: map[string]any{
			"agent_url": "https://10.0.0.1:9999", "agent_last_heartbeat": "2026-12-05T01:00:00.000000",
			"deploy_steps": []any{map[string]any{"step": "write_image", "interface": "deploy", "priority": 80.0}},
			"deploy_progress": map[string]any{"phase": "write", "bytes_read": 1e9, "bytes_written": 9e8, "total_bytes": 2e9,
				"rate_bytes_per_sec": 5e8, "eta_seconds": 2.0, "started_at": 1.7e9, "updated_at": 1.7e9 + 2},
			"inspection_inventory": map[string]any{"disks": disks, "interfaces": nics,
				"cpu": map[string]any{"model_name": "Xeon", "count": 64.0}, "memory": map[string]any{"physical_mb": 524288.0}},
		},
		UpdatedAt: time.Now()}
}

// The feed's cost per committed write: the copy of the node and its
// publication to two subscribers (the dashboard and the node-state
// gauge), both of which coalesce it with the pending change of the node.
func BenchmarkPublishCommittedNode(b *testing.B) {
	f := New(nil, Config{})
	subs := []*Subscription[Change]{f.Subscribe(), f.Subscribe()}
	n := deployingNode()
	b.ReportAllocs()
	for b.Loop() {
		f.publish(Change{Kind: NodeChanged, NodeUUID: n.UUID, Node: n.Clone()})
	}
	for _, s := range subs {
		s.Close()
	}
}
