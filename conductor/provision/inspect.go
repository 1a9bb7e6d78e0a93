package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/inspectdata"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Inspection is in-band inspection (inspect_interface "agent"): "inspect"
// boots the deploy ramdisk with ipa-inspection-callback-url pointing at
// the conductor's /v1/continue_inspection; the agent POSTs its data there
// (ContinueInspection) as soon as it runs — the callback is accepted from
// the moment inspection starts, not only once the node waits for it. The
// data is processed as Ironic's inspection hooks do (conductor/inspectdata):
// the inventory and plugin_data are stored
// (driver_internal_info.inspection_inventory and inspection_plugin_data),
// the node's properties set (cpus, cpu_arch, memory_mb, local_gb, and
// the boot_mode capability when it has none), its ports created or
// updated; the node is then
// powered off (rebooted with disable_power_off) and goes back to
// manageable. inspect_interface "fake" inspects nothing and succeeds.
type Inspection struct {
	nodes    *nodes
	machines *machines
	jobs     *jobs
	cfg      *Config
	log      *slog.Logger
}

// InspectionCallbackPath is where agents post their inventory.
const InspectionCallbackPath = "/v1/continue_inspection"

// Keys of driver_internal_info that keep the last inspection's data.
const (
	keyInventory  = "inspection_inventory"
	keyPluginData = "inspection_plugin_data"
)

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
	switch impl := t.iface("inspect"); {
	case impl == "fake":
		i.log.Info("fake inspection: nothing to inspect", "node", uuid)
		i.done(ctx, uuid, true)
		return
	case impl == "no-inspect" || !hardwaretype.Implemented("inspect", impl):
		i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %s", hardwaretype.NotImplemented("inspect", impl)))
		return
	}
	if err := i.machines.validate(t); err != nil {
		i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		return
	}
	// The node is named in the callback URL: it may have no ports yet
	// (inspection creates them), and the agent's NICs need not match.
	cb, err := i.machines.nodeURL(t, strings.TrimSuffix(i.cfg.APIURL, "/")+InspectionCallbackPath+"?node_uuid="+uuid)
	if err == nil {
		err = i.machines.bootRamdisk(ctx, t, "ipa-inspection-callback-url="+cb, "ipa-inspection-collectors=default")
	}
	if err != nil {
		if ctx.Err() == nil {
			i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		}
		return
	}
	// The agent may have posted its data while the node booted: then the
	// inspection is over at once; otherwise wait for it.
	received := false
	n, info, err := i.nodes.update(ctx, uuid, statemachine.Inspecting, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if info.InspectionReceived {
			received = true
			return nil
		}
		return i.nodes.advance(n, statemachine.EvWait)
	})
	if err != nil {
		i.jobs.logError(uuid, "inspect", err)
		return
	}
	if received {
		t.set(n, info)
		i.finish(ctx, t)
	}
}

// inventoryMACs are the MAC addresses of an inventory's interfaces, to
// find the node by.
func inventoryMACs(raw json.RawMessage) ([]string, error) {
	var inv struct {
		Interfaces []struct {
			MACAddress string `json:"mac_address"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal(raw, &inv); err != nil {
		return nil, err
	}
	var macs []string
	for _, iface := range inv.Interfaces {
		if iface.MACAddress != "" {
			macs = append(macs, strings.ToLower(iface.MACAddress))
		}
	}
	return macs, nil
}

// inspecting are the states in which inspection data is taken.
var inspecting = map[statemachine.State]bool{statemachine.Inspecting: true, statemachine.InspectWait: true}

// ContinueInspection takes the data an agent posts to
// /v1/continue_inspection (the API has checked it holds an inventory):
// the node (nodeUUID, else the MACs of the inventory's interfaces) must
// be inspecting; the data is processed and stored, the node's properties
// and ports updated, and the node is powered off and moved back to
// manageable in the background. It returns the node. Errors carry errdefs
// classes (404 for an unknown node or one not being inspected, 400 for
// data that cannot be used — which also fails the inspection).
func (i *Inspection) ContinueInspection(ctx context.Context, nodeUUID string, data wire.InspectionData) (*store.Node, error) {
	macs, err := inventoryMACs(data.Inventory)
	if err != nil {
		return nil, errdefs.InvalidArgument("Invalid inventory: %v", err)
	}
	if len(macs) == 0 && nodeUUID == "" {
		return nil, errdefs.InvalidArgument("The inventory has no interfaces with a MAC address")
	}
	n, err := nodeByUUIDOrMACs(ctx, i.nodes.st, nodeUUID, macs)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && !inspecting[n.ProvisionState]) {
		i.log.Warn("inspection data for no node being inspected", "node_uuid", nodeUUID, "addresses", macs)
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	res, perr := inspectdata.Process(data, inspectdata.Options{AddPorts: i.cfg.InspectionAddPorts, ParseLLDP: i.cfg.ParseLLDP})
	if perr != nil {
		msg := fmt.Sprintf("Failed to process inspection data: %v", perr)
		if n.ProvisionState == statemachine.InspectWait {
			i.fail(ctx, n.UUID, statemachine.InspectWait, msg)
		}
		return nil, errdefs.InvalidArgument("%s", msg)
	}
	for _, p := range res.Problems {
		i.log.Warn("inspection data: skipped", "node", n.UUID, "problem", p)
	}
	resumed := false
	n, _, err = i.nodes.update(ctx, n.UUID, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		if !inspecting[n.ProvisionState] {
			return fmt.Errorf("node %s: in %q: %w", n.UUID, n.ProvisionState, errStateChanged)
		}
		n.SetInternal(keyInventory, res.Inventory)
		n.SetInternal(keyPluginData, res.PluginData)
		info.InspectionReceived = true
		if n.Properties == nil {
			n.Properties = map[string]any{}
		}
		for k, v := range res.Properties {
			n.Properties[k] = v
		}
		// The boot mode the ramdisk ran in fills the boot_mode capability
		// unless the operator (Metal3, from the host's spec) set one.
		if caps, _ := n.Properties["capabilities"].(string); res.BootMode != "" && !inspectdata.HasCapability(caps, "boot_mode") {
			n.Properties["capabilities"] = inspectdata.MergeCapabilities(caps, "boot_mode", res.BootMode)
		}
		if n.ProvisionState == statemachine.InspectWait {
			resumed = true
			return i.nodes.advance(n, statemachine.EvResume)
		}
		return nil
	})
	if isStateChanged(err) {
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	i.log.Info("inspection data received", "node", n.UUID, "properties", res.Properties, "boot_mode", res.BootMode)
	i.applyPorts(ctx, n, res.Ports)
	if resumed && i.jobs.owns(ctx, n.UUID) {
		i.jobs.submit(n.UUID, jobInspect)
	}
	return n, nil
}

// applyPorts creates the ports inspection adds and updates the
// pxe_enabled flag and client-id of the node's existing ones (Ironic's
// "ports" hook with keep_ports = all). A MAC already on another node is
// logged and left alone. pxe_enabled is updated only when the agent said
// which NIC it booted from.
func (i *Inspection) applyPorts(ctx context.Context, n *store.Node, ports []inspectdata.Port) {
	existing, err := i.nodes.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		i.log.Error("inspection: listing ports failed", "node", n.UUID, "error", err)
		return
	}
	byMAC := map[string]*store.Port{}
	for _, p := range existing {
		byMAC[p.Address] = p
	}
	pxeKnown := false
	for _, p := range ports {
		pxeKnown = pxeKnown || p.PXEEnabled
	}
	pu, canUpdate := i.nodes.st.(store.PortUpdater)
	for _, want := range ports {
		p, ok := byMAC[want.Address]
		if !ok {
			if !want.Add {
				continue
			}
			np := &store.Port{NodeID: n.ID, Address: want.Address, PXEEnabled: want.PXEEnabled}
			if want.ClientID != "" {
				np.Extra = map[string]any{"client-id": want.ClientID}
			}
			switch err := i.nodes.st.CreatePort(ctx, np); {
			case err == nil:
				i.log.Info("inspection: port created", "node", n.UUID, "address", want.Address, "pxe_enabled", want.PXEEnabled)
			case errors.Is(err, errdefs.ErrAlreadyExists):
				i.log.Info("inspection: a port with this MAC already exists", "node", n.UUID, "address", want.Address)
			default:
				i.log.Error("inspection: creating a port failed", "node", n.UUID, "address", want.Address, "error", err)
			}
			continue
		}
		changed := false
		if pxeKnown && p.PXEEnabled != want.PXEEnabled {
			p.PXEEnabled, changed = want.PXEEnabled, true
		}
		if cid, _ := p.Extra["client-id"].(string); want.ClientID != "" && cid != want.ClientID {
			if p.Extra == nil {
				p.Extra = map[string]any{}
			}
			p.Extra["client-id"], changed = want.ClientID, true
		}
		if !changed {
			continue
		}
		if !canUpdate {
			i.log.Warn("inspection: the store cannot update ports; port left as it is", "node", n.UUID, "address", p.Address)
			continue
		}
		if err := pu.UpdatePort(ctx, p); err != nil {
			i.log.Error("inspection: updating a port failed", "node", n.UUID, "address", p.Address, "error", err)
			continue
		}
		i.log.Info("inspection: port updated", "node", n.UUID, "address", p.Address, "pxe_enabled", p.PXEEnabled)
	}
}

// finish ends an inspection whose data arrived: the node is powered off
// (rebooted with disable_power_off, left alone with fast-track) and goes
// to manageable.
func (i *Inspection) finish(ctx context.Context, t *target) {
	uuid := t.node.UUID
	fast := fastTrackable(i.cfg, t.node, t.info)
	if !fast {
		want := power.Off
		if t.node.DisablePowerOff {
			want = power.Reboot
		}
		if err := i.machines.setPower(ctx, t, want); err != nil {
			if ctx.Err() == nil {
				i.fail(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to power off node %s after inspection: %v", uuid, err))
			}
			return
		}
	}
	i.done(ctx, uuid, !fast)
}

// done moves an inspecting node to manageable; wipe forgets its agent.
func (i *Inspection) done(ctx context.Context, uuid string, wipe bool) {
	_, _, err := i.nodes.update(ctx, uuid, statemachine.Inspecting, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.InspectionReceived = false
		if wipe {
			info.Agent.WipeTokenAndURL()
		}
		n.LastError = ""
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
