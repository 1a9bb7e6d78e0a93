package provision

import (
	"context"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Request is a provision action: the target of PUT
// /v1/nodes/{id}/states/provision and its optional configdrive.
type Request struct {
	// Target is the verb ("manage", "provide", "active", "deleted", ...).
	Target string
	// Configdrive is the config drive for "active": a gzipped,
	// base64-encoded ISO or an URL. Nil when absent.
	Configdrive any
}

// Provision validates and applies a provision action to a node: the
// transition is committed under the node lock, and only then the
// background work it needs is queued. Errors carry errdefs classes.
func (e *Engine) Provision(ctx context.Context, ident string, req Request) error {
	ev, ok := statemachine.Verbs[req.Target]
	if !ok {
		return errdefs.InvalidArgument(`The requested action "%s" could not be understood.`, req.Target)
	}
	if req.Configdrive != nil && ev != statemachine.EvDeploy {
		return errdefs.InvalidArgument("Adding a config drive is only supported when setting provision state to active")
	}
	var ports []*store.Port
	n, err := e.update(ctx, ident, "", func(tx store.Tx, n *store.Node) error {
		if !statemachine.Allowed(n.ProvisionState, ev) {
			if !statemachine.IsStable(n.ProvisionState) {
				return errdefs.Conflict("Node %s is locked by a running operation (provision state %q), please retry after the current operation is completed.",
					n.UUID, n.ProvisionState)
			}
			return errdefs.InvalidArgument(`The requested action "%s" can not be performed on node "%s" while it is in state "%s".`,
				req.Target, n.UUID, n.ProvisionState)
		}
		drv, ok := e.drivers[n.Driver]
		if !ok {
			return errdefs.InvalidArgument("No valid host was found. Reason: No conductor service registered which supports driver %s.", n.Driver)
		}
		var err error
		if ports, err = tx.Ports(ctx); err != nil {
			return err
		}
		if ev == statemachine.EvDeploy {
			if err := e.prepareDeploy(n, ports, drv, req.Configdrive); err != nil {
				return err
			}
		}
		n.LastError = ""
		_, err = n.Advance(ev, e.now())
		return err
	})
	if err != nil {
		return err
	}
	switch n.ProvisionState {
	case statemachine.Verifying:
		e.submit(n.UUID, jobVerify)
	case statemachine.Cleaning:
		e.submit(n.UUID, jobClean)
	case statemachine.Deploying:
		e.submit(n.UUID, jobDeploy)
	case statemachine.Deleting:
		e.submit(n.UUID, jobTeardown)
	}
	return nil
}

// prepareDeploy validates a node for deployment and records what the
// deploy needs (Ironic's do_node_deploy validation and prepare).
func (e *Engine) prepareDeploy(n *store.Node, ports []*store.Port, drv power.Driver, configdrive any) error {
	if n.Maintenance {
		return errdefs.InvalidArgument("The provisioning operation can't be performed on node %s because it's in maintenance mode.", n.UUID)
	}
	t := &target{node: n, ports: ports, drv: drv}
	if err := drv.Validate(t.powerNode()); err != nil {
		return errdefs.InvalidArgument("Failed to validate power driver interface for node %s. Error: %v", n.UUID, err)
	}
	if len(ports) == 0 {
		return errdefs.InvalidArgument("Node %s has no ports: the deploy agent finds its node by the MAC addresses of its ports.", n.UUID)
	}
	if _, ok := drv.(power.RamdiskBooter); ok {
		if _, err := e.ramdiskFiles(n); err != nil {
			return err
		}
	}
	if n.InstanceInfo == nil {
		n.InstanceInfo = map[string]any{}
	}
	if configdrive != nil {
		n.InstanceInfo["configdrive"] = configdrive
	} else {
		delete(n.InstanceInfo, "configdrive")
	}
	if err := imageinfo.Validate(n); err != nil {
		return err
	}
	n.InstanceInfo["image_url"] = n.InstanceInfo["image_source"]
	if _, ok := n.InstanceInfo["image_type"]; !ok {
		n.InstanceInfo["image_type"] = "whole-disk"
	}
	n.DeployStep = map[string]any{}
	wipeDeploy(n)
	for _, k := range []string{"deploy_progress", "root_uuid_or_disk_id", "efi_system_partition_uuid"} {
		n.SetInternal(k, nil)
	}
	n.SetInternal("is_whole_disk_image", true)
	n.SetInternal("deploy_steps", stepList())
	return nil
}

// ramdiskFiles returns the deploy kernel and ramdisk of a node, or an
// InvalidArgument error naming what is missing.
func (e *Engine) ramdiskFiles(n *store.Node) ([2]string, error) {
	kernel, _ := n.DriverInfo["deploy_kernel"].(string)
	initrd, _ := n.DriverInfo["deploy_ramdisk"].(string)
	if kernel == "" {
		kernel = e.cfg.DeployKernel
	}
	if initrd == "" {
		initrd = e.cfg.DeployRamdisk
	}
	var missing []string
	if kernel == "" {
		missing = append(missing, "'deploy_kernel'")
	}
	if initrd == "" {
		missing = append(missing, "'deploy_ramdisk'")
	}
	if len(missing) > 0 {
		return [2]string{}, errdefs.InvalidArgument("Some parameters were missing in node's driver_info. Missing are: %v", missing)
	}
	return [2]string{kernel, initrd}, nil
}
