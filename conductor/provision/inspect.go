package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// In-band inspection: "inspect" boots the deploy ramdisk with
// ipa-inspection-callback-url pointing at the conductor's
// /v1/continue_inspection (inspect wait); the agent POSTs its inventory
// there (ContinueInspection), which is stored on the node
// (driver_internal_info.inspection_inventory) and folded into its
// properties (cpus, cpu_arch, memory_mb, local_gb); the node is then
// powered off and goes back to manageable.

const (
	keyInventory     = "inspection_inventory"
	keyInspectedData = "inspection_data_received"
)

// InspectionCallbackPath is where agents post their inventory.
const InspectionCallbackPath = "/v1/continue_inspection"

// inspect starts or finishes the inspection of a node in "inspecting" (a
// job).
func (e *Engine) inspect(ctx context.Context, uuid string) {
	t, err := e.load(ctx, uuid)
	if err != nil || t.node.ProvisionState != statemachine.Inspecting {
		e.logJobError(uuid, "inspect", err)
		return
	}
	if t.node.DriverInternalInfo[keyInspectedData] == true {
		e.finishInspect(ctx, t)
		return
	}
	if err := t.drv.Validate(t.powerNode()); err != nil {
		e.failInspect(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		return
	}
	cb, err := e.nodeURL(t, strings.TrimSuffix(e.cfg.APIURL, "/")+InspectionCallbackPath)
	if err == nil {
		err = e.bootRamdisk(ctx, t, "ipa-inspection-callback-url="+cb, "ipa-inspection-collectors=default")
	}
	if err != nil {
		if ctx.Err() == nil {
			e.failInspect(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to inspect hardware. Reason: %v", err))
		}
		return
	}
	e.toWait(ctx, uuid, statemachine.Inspecting)
}

// ContinueInspection takes the data an agent posts to
// /v1/continue_inspection: the node (nodeUUID, else the MACs of the
// inventory's interfaces) must be in inspect wait; the inventory is
// stored, the node's properties updated, and the node is powered off and
// moved back to manageable in the background. It returns the node. Errors
// carry errdefs classes (404 for an unknown node or one not being
// inspected, 400 for an inventory without interfaces).
func (e *Engine) ContinueInspection(ctx context.Context, nodeUUID string, data map[string]any) (*store.Node, error) {
	inv, _ := data["inventory"].(map[string]any)
	if inv == nil {
		return nil, errdefs.InvalidArgument("The inspection data has no inventory")
	}
	var macs []string
	for _, i := range toMaps(inv["interfaces"]) {
		if mac, _ := i["mac_address"].(string); mac != "" {
			macs = append(macs, strings.ToLower(mac))
		}
	}
	if len(macs) == 0 {
		return nil, errdefs.InvalidArgument("The inventory has no interfaces with a MAC address")
	}
	n, err := e.nodeByUUIDOrMACs(ctx, nodeUUID, macs)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && n.ProvisionState != statemachine.InspectWait) {
		e.log.Warn("inspection data for no node in inspect wait", "node_uuid", nodeUUID, "addresses", macs)
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	n, err = e.update(ctx, n.UUID, statemachine.InspectWait, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyInventory, inv)
		n.SetInternal(keyInspectedData, true)
		if n.Properties == nil {
			n.Properties = map[string]any{}
		}
		for k, v := range inventoryProperties(inv, data["root_disk"]) {
			n.Properties[k] = v
		}
		_, err := n.Advance(statemachine.EvResume, e.now())
		return err
	})
	if isStateChanged(err) {
		return nil, errdefs.NotFound("Node could not be found or is not being inspected.")
	}
	if err != nil {
		return nil, err
	}
	e.log.Info("inspection data received", "node", n.UUID, "properties", n.Properties)
	if e.owns(ctx, n.UUID) {
		e.submit(n.UUID, jobInspect)
	}
	return n, nil
}

// inventoryProperties derives Ironic's scheduling properties from an
// inventory: cpus, cpu_arch, memory_mb and local_gb (the root disk's size
// in GiB less one, kept for partitioning; the root disk is the one the
// agent reported, else the smallest of at least 4 GiB).
func inventoryProperties(inv map[string]any, rootDisk any) map[string]any {
	out := map[string]any{}
	if cpu, _ := inv["cpu"].(map[string]any); cpu != nil {
		if c, ok := asInt(cpu["count"]); ok && c > 0 {
			out["cpus"] = c
		}
		if a, _ := cpu["architecture"].(string); a != "" {
			out["cpu_arch"] = a
		}
	}
	if mem, _ := inv["memory"].(map[string]any); mem != nil {
		if mb, ok := asInt(mem["physical_mb"]); ok && mb > 0 {
			out["memory_mb"] = mb
		} else if total, ok := mem["total"].(float64); ok && total > 0 {
			out["memory_mb"] = int(total / (1 << 20))
		}
	}
	var size float64
	if rd, _ := rootDisk.(map[string]any); rd != nil {
		size, _ = rd["size"].(float64)
	}
	if size == 0 {
		for _, d := range toMaps(inv["disks"]) {
			s, _ := d["size"].(float64)
			if s >= 4<<30 && (size == 0 || s < size) {
				size = s
			}
		}
	}
	if gb := int(size/(1<<30)) - 1; gb > 0 {
		out["local_gb"] = gb
	}
	return out
}

func toMaps(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// finishInspect powers the inspected node off (unless fast-track keeps
// its agent) and moves it to manageable.
func (e *Engine) finishInspect(ctx context.Context, t *target) {
	uuid := t.node.UUID
	fast := e.fastTrackable(t.node)
	if !fast {
		if err := e.setPower(ctx, t, power.Off); err != nil {
			if ctx.Err() == nil {
				e.failInspect(ctx, uuid, statemachine.Inspecting, fmt.Sprintf("Failed to power off node %s after inspection: %v", uuid, err))
			}
			return
		}
	}
	_, err := e.update(ctx, uuid, statemachine.Inspecting, func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyInspectedData, nil)
		if !fast {
			wipeTokenAndURL(n)
		}
		_, err := n.Advance(statemachine.EvDone, e.now())
		return err
	})
	e.logJobError(uuid, "inspect", err)
}

// failInspect moves an inspecting node to inspect failed and powers it
// off.
func (e *Engine) failInspect(ctx context.Context, uuid string, from statemachine.State, msg string) {
	n, err := e.update(ctx, uuid, from, func(_ store.Tx, n *store.Node) error {
		n.LastError = msg
		n.SetInternal(keyInspectedData, nil)
		wipeTokenAndURL(n)
		_, err := n.Advance(statemachine.EvFail, e.now())
		return err
	})
	if err != nil {
		e.logJobError(uuid, "fail inspect", err)
		return
	}
	e.powerOffAfterFailure(ctx, n)
}

// prepareAbort records an abort in the transaction that makes it (wait
// call-back, clean wait or inspect wait -> the failure state): last_error
// says what was aborted, and the operation's fields are wiped. A clean
// step that is not abortable refuses it.
func (e *Engine) prepareAbort(n *store.Node) error {
	switch n.ProvisionState {
	case statemachine.DeployWait:
		n.LastError = fmt.Sprintf("Deploy of node %s was aborted by request at step %s.", n.UUID, pyRepr(n.DeployStep))
		n.DeployStep = map[string]any{}
		n.SetInternal(keyTimestamps, nil)
		wipeDeploy(n)
		e.setWriting(n.UUID, false)
	case statemachine.CleanWait:
		step := n.CleanStep()
		if len(step) > 0 && step["abortable"] != true {
			return errdefsAbort(n.UUID, step)
		}
		n.LastError = fmt.Sprintf(`By request, the clean operation was aborted for node %s on step "%s".`, n.UUID, stepName(step))
		wipeClean(n)
		wipeTokenAndURL(n)
	case statemachine.InspectWait:
		n.LastError = "By request, the inspection operation has been aborted"
		n.SetInternal(keyInspectedData, nil)
		wipeTokenAndURL(n)
	}
	return nil
}

func errdefsAbort(uuid string, step map[string]any) error {
	return errdefs.InvalidArgument(`Can not abort the cleaning of node %s: its current clean step "%s" is not abortable.`, uuid, stepName(step))
}

// afterAbort powers an aborted node off, stopping its agent (a job).
func (e *Engine) afterAbort(ctx context.Context, uuid string) {
	n, err := e.st.GetNode(ctx, uuid)
	if err != nil {
		e.logJobError(uuid, "abort", err)
		return
	}
	e.powerOffAfterFailure(ctx, n)
}
