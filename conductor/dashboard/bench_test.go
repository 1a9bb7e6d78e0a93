package dashboard

import (
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/changefeed"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

func writingNode() *store.Node {
	return &store.Node{UUID: "0b9b1f0e-6c65-4a8b-9a3f-1b2c3d4e5f60", Name: "rack3-n17", Driver: "ipmi",
		ProvisionState: statemachine.DeployWait, TargetProvisionState: statemachine.Active, PowerState: "power on",
		DeployStep: map[string]any{"step": "write_image", "interface": "deploy"}, ProvisionUpdatedAt: time.Now(),
		DriverInternalInfo: map[string]any{"agent_last_heartbeat": "2026-12-05T01:00:00",
			"deploy_progress": map[string]any{"phase": "write", "bytes_read": 1e9, "bytes_written": 9e8, "total_bytes": 2e9,
				"rate_bytes_per_sec": 5e8, "eta_seconds": 2.0, "updated_at": 1.7e9}}}
}

// A heartbeat: the node changed, its summary did not; nothing is sent.
func BenchmarkFleetHeartbeat(b *testing.B) {
	f := newFleet(0)
	n := writingNode()
	f.set(summarize(n))
	items := []changefeed.Item[changefeed.Change]{{Value: changefeed.Change{Kind: changefeed.NodeChanged, NodeUUID: n.UUID, Node: n}}}
	b.ReportAllocs()
	for b.Loop() {
		f.apply(items)
	}
}

// A progress update: the summary changed; it is encoded once and offered
// to 100 browsers' queues.
func BenchmarkFleetProgressTo100Browsers(b *testing.B) {
	f := newFleet(0)
	var subs []*changefeed.Subscription[*fleetItem]
	for range 100 {
		subs = append(subs, f.hub.Subscribe())
	}
	n := writingNode()
	p := n.DriverInternalInfo["deploy_progress"].(map[string]any)
	items := []changefeed.Item[changefeed.Change]{{Value: changefeed.Change{Kind: changefeed.NodeChanged, NodeUUID: n.UUID, Node: n}}}
	b.ReportAllocs()
	i := 0.0
	for b.Loop() {
		i++
		p["bytes_read"] = i
		f.apply(items)
	}
	for _, s := range subs {
		s.Close()
	}
}
