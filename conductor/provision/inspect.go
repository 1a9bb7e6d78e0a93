package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Inspection is in-band inspection: "inspect" boots the deploy ramdisk
// with ipa-inspection-callback-url pointing at the conductor's
// /v1/continue_inspection (inspect wait); the agent POSTs its inventory
// there (ContinueInspection), which is stored on the node
// (driver_internal_info.inspection_inventory) and folded into its
// properties (cpus, cpu_arch, memory_mb, local_gb); the node is then
// powered off and goes back to manageable.
type Inspection struct {
	nodes    *nodes
	machines *machines
	jobs     *jobs
	cfg      *Config
	log      *slog.Logger
}

// InspectionCallbackPath is where agents post their inventory.
const InspectionCallbackPath = "/v1/continue_inspection"

// inspect starts or finishes the inspection of a node in "inspecting" (a
// job).
func (i *Inspection) inspect(ctx context.Context, uuid string) {
	t, err := i.machines.load(ctx, uuid)
	if err != nil || t.node.ProvisionState != statemachine.Inspecting {
		i.jobs.logError(uuid, "inspect", err)
		return
	}
	if t.info.InspectionReceived {
		i.finish(ctx, t)
		return
	}
	if err := i.machines.validate(t); err != nil {
		i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		return
	}
	cb, err := i.machines.nodeURL(t, strings.TrimSuffix(i.cfg.APIURL, "/")+InspectionCallbackPath)
	if err == nil {
		err = i.machines.bootRamdisk(ctx, t, "ipa-inspection-callback-url="+cb, "ipa-inspection-collectors=default")
	}
	if err != nil {
		if ctx.Err() == nil {
			i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		}
		return
	}
	toWait(ctx, i.nodes, i.jobs, statemachine.Inspecting, uuid, nil)
}

// inventory is the part of IPA's inventory (contract §5.1) the conductor
// reads.
type inventory struct {
	Interfaces []struct {
		MACAddress string `json:"mac_address"`
	} `json:"interfaces"`
	CPU struct {
		Count        float64 `json:"count"`
		Architecture string  `json:"architecture"`
	} `json:"cpu"`
	Memory struct {
		Total      float64 `json:"total"`
		PhysicalMB float64 `json:"physical_mb"`
	} `json:"memory"`
	Disks []disk `json:"disks"`
}

type disk struct {
	Size float64 `json:"size"`
}

// ContinueInspection takes the data an agent posts to
// /v1/continue_inspection (the API has checked it holds an inventory):
// the node (nodeUUID, else the MACs of the inventory's interfaces) must be
// in inspect wait; the inventory is stored, the node's properties
// updated, and the node is powered off and moved back to manageable in
// the background. It returns the node. Errors carry errdefs classes (404
// for an unknown node or one not being inspected, 400 for an inventory
// without interfaces).
func (i *Inspection) ContinueInspection(ctx context.Context, nodeUUID string, data wire.InspectionData) (*store.Node, error) {
	var inv inventory
	if err := json.Unmarshal(data.Inventory, &inv); err != nil {
		return nil, errdefs.InvalidArgument("Invalid inventory: %v", err)
	}
	var stored map[string]any
	if err := json.Unmarshal(data.Inventory, &stored); err != nil {
		return nil, errdefs.InvalidArgument("Invalid inventory: %v", err)
	}
	var macs []string
	for _, iface := range inv.Interfaces {
		if iface.MACAddress != "" {
			macs = append(macs, strings.ToLower(iface.MACAddress))
		}
	}
	if len(macs) == 0 {
		return nil, errdefs.InvalidArgument("The inventory has no interfaces with a MAC address")
	}
	var root *disk
	if len(data.RootDisk) > 0 && string(data.RootDisk) != "null" {
		root = &disk{}
		if err := json.Unmarshal(data.RootDisk, root); err != nil {
			return nil, errdefs.InvalidArgument("Invalid root_disk: %v", err)
		}
	}
	n, err := nodeByUUIDOrMACs(ctx, i.nodes.st, nodeUUID, macs)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && n.ProvisionState != statemachine.InspectWait) {
		i.log.Warn("inspection data for no node in inspect wait", "node_uuid", nodeUUID, "addresses", macs)
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	n, _, err = i.nodes.update(ctx, n.UUID, statemachine.InspectWait, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.Inventory = stored
		info.InspectionReceived = true
		if n.Properties == nil {
			n.Properties = map[string]any{}
		}
		for k, v := range inventoryProperties(inv, root) {
			n.Properties[k] = v
		}
		return i.nodes.advance(n, statemachine.EvResume)
	})
	if isStateChanged(err) {
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	i.log.Info("inspection data received", "node", n.UUID, "properties", n.Properties)
	if i.jobs.owns(ctx, n.UUID) {
		i.jobs.submit(n.UUID, jobInspect)
	}
	return n, nil
}

// inventoryProperties derives Ironic's scheduling properties from an
// inventory: cpus, cpu_arch, memory_mb and local_gb (the root disk's size
// in GiB less one, kept for partitioning; the root disk is the one the
// agent reported, else the smallest of at least 4 GiB).
func inventoryProperties(inv inventory, root *disk) map[string]any {
	out := map[string]any{}
	if inv.CPU.Count >= 1 {
		out["cpus"] = int(inv.CPU.Count)
	}
	if inv.CPU.Architecture != "" {
		out["cpu_arch"] = inv.CPU.Architecture
	}
	switch {
	case inv.Memory.PhysicalMB >= 1:
		out["memory_mb"] = int(inv.Memory.PhysicalMB)
	case inv.Memory.Total > 0:
		out["memory_mb"] = int(inv.Memory.Total / (1 << 20))
	}
	var size float64
	if root != nil {
		size = root.Size
	}
	if size == 0 {
		for _, d := range inv.Disks {
			if d.Size >= 4<<30 && (size == 0 || d.Size < size) {
				size = d.Size
			}
		}
	}
	if gb := int(size/(1<<30)) - 1; gb > 0 {
		out["local_gb"] = gb
	}
	return out
}

// finish powers the inspected node off (unless fast-track keeps its
// agent) and moves it to manageable.
func (i *Inspection) finish(ctx context.Context, t *target) {
	uuid := t.node.UUID
	fast := fastTrackable(i.cfg, t.node, t.info)
	if !fast {
		if err := i.machines.setPower(ctx, t, power.Off); err != nil {
			if ctx.Err() == nil {
				i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to power off node %s after inspection: %v", uuid, err))
			}
			return
		}
	}
	_, _, err := i.nodes.update(ctx, uuid, statemachine.Inspecting, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.InspectionReceived = false
		if !fast {
			info.Agent.WipeTokenAndURL()
		}
		return i.nodes.advance(n, statemachine.EvDone)
	})
	i.jobs.logError(uuid, "inspect", err)
}

// fail moves an inspecting node to inspect failed and powers it off.
func (i *Inspection) fail(ctx context.Context, uuid string, from statemachine.State, msg string) {
	n, info, err := i.nodes.update(ctx, uuid, from, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		n.LastError = msg
		info.InspectionReceived = false
		info.Agent.WipeTokenAndURL()
		return i.nodes.advance(n, statemachine.EvFail)
	})
	if err != nil {
		i.jobs.logError(uuid, "fail inspect", err)
		return
	}
	i.machines.powerOffAfterFailure(ctx, n, info)
}
