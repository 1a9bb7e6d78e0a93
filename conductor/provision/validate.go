package provision

import (
	"context"
	"fmt"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
)

// InterfaceValidation is the result of validating one hardware interface
// of a node (an entry of GET /v1/nodes/{id}/validate): Result is true,
// false, or nil when the interface is not in use ("not supported"), and
// Reason says why it is false or nil.
type InterfaceValidation struct {
	Result *bool
	Reason string
}

// ValidateNode validates a node's interfaces without changing it (GET
// /v1/nodes/{id}/validate): power and management from the driver's
// Validate (and, for drivers that talk to a BMC, a connection to it),
// deploy from the checks made before a deploy (instance_info,
// ports), boot from the deploy ramdisk settings; the interfaces Rivet does
// not implement are "not supported".
func (e *Engine) ValidateNode(ctx context.Context, ident string) (map[string]InterfaceValidation, error) {
	n, err := e.st.GetNode(ctx, ident)
	if err != nil {
		return nil, err
	}
	ok := func() InterfaceValidation { t := true; return InterfaceValidation{Result: &t} }
	bad := func(err error) InterfaceValidation {
		f := false
		return InterfaceValidation{Result: &f, Reason: err.Error()}
	}
	unsupported := InterfaceValidation{Reason: "not supported"}
	out := map[string]InterfaceValidation{}
	for _, k := range []string{"console", "network", "raid", "rescue", "storage", "bios", "firmware"} {
		out[k] = unsupported
	}
	drv, found := e.drivers[n.Driver]
	if !found {
		err := fmt.Errorf("no conductor service registered which supports driver %s", n.Driver)
		for _, k := range []string{"boot", "deploy", "inspect", "management", "power"} {
			out[k] = bad(err)
		}
		return out, nil
	}
	t, err := e.targetFor(ctx, n)
	if err != nil {
		return nil, err
	}
	err = drv.Validate(t.powerNode())
	if cv, ok := drv.(power.ConnectionValidator); ok && err == nil {
		// The BMC must answer, too; the driver bounds the wait.
		err = cv.ValidateConnection(ctx, t.powerNode())
	}
	if err != nil {
		out["power"], out["management"] = bad(err), bad(err)
	} else {
		out["power"], out["management"] = ok(), ok()
	}
	boot := ok()
	if _, isBooter := drv.(power.RamdiskBooter); isBooter {
		if _, err := e.ramdiskFiles(n); err != nil {
			boot = bad(err)
		}
	}
	out["boot"], out["inspect"] = boot, boot
	switch {
	case len(t.ports) == 0:
		out["deploy"] = bad(fmt.Errorf("node %s has no ports: the deploy agent finds its node by the MAC addresses of its ports", n.UUID))
	default:
		if err := imageinfo.Validate(n, e.cfg.ImageCache != nil); err != nil {
			out["deploy"] = bad(err)
		} else {
			out["deploy"] = ok()
		}
	}
	return out, nil
}
