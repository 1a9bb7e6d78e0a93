package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/boot"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision/imageinfo"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/internal/pause"
)

// target is a node as a job sees it: the node and its typed
// driver_internal_info, its ports, its driver and its boot mode.
type target struct {
	node     *store.Node
	info     *internalinfo.Info
	ports    []*store.Port
	drv      power.Driver
	bootMode string
}

// set replaces the node and its info with a newer committed version.
func (t *target) set(n *store.Node, info *internalinfo.Info) { t.node, t.info = n, info }

// powerNode is the driver's view of the node.
func (t *target) powerNode() power.Node {
	ports := append([]*store.Port(nil), t.ports...)
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].PXEEnabled && !ports[j].PXEEnabled })
	macs := make([]string, len(ports))
	for i, p := range ports {
		macs[i] = p.Address
	}
	return power.Node{UUID: t.node.UUID, Name: t.node.Name, DriverInfo: t.node.DriverInfo, MACs: macs,
		BootMode: power.BootMode(t.bootMode)}
}

// machines is the seam of power-driver calls: every call the engine makes
// to a node's driver (power, boot device, ramdisk, URL mapping) goes
// through it; a job's calls that reach the machine or its BMC are fenced
// first (nodes.fenced); and it records the power state and forgets the
// agent on every power off.
type machines struct {
	drivers map[string]power.Driver
	nodes   *nodes
	certs   *certificates
	cfg     *Config
	log     *slog.Logger
}

// errNoDriver is Ironic's answer for a node whose driver no conductor runs.
func errNoDriver(driver string) error {
	return errdefs.InvalidArgument("No valid host was found. Reason: No conductor service registered which supports driver %s.", driver)
}

// driver returns a node's driver.
func (m *machines) driver(n *store.Node) (power.Driver, error) {
	drv, ok := m.drivers[n.Driver]
	if !ok {
		return nil, errNoDriver(n.Driver)
	}
	return drv, nil
}

// load reads a node, its ports and its driver.
func (m *machines) load(ctx context.Context, ident string) (*target, error) {
	n, info, err := m.nodes.read(ctx, ident)
	if err != nil {
		return nil, err
	}
	return m.targetFor(ctx, n, info)
}

// targetFor completes a node already read with its ports and driver.
func (m *machines) targetFor(ctx context.Context, n *store.Node, info *internalinfo.Info) (*target, error) {
	drv, err := m.driver(n)
	if err != nil {
		return nil, err
	}
	ports, err := m.nodes.st.ListPorts(ctx, store.PortFilter{NodeID: n.ID})
	if err != nil {
		return nil, fmt.Errorf("node %s: list ports: %w", n.UUID, err)
	}
	return &target{node: n, info: info, ports: ports, drv: drv, bootMode: m.bootMode(n, info)}, nil
}

// bootMode is the boot mode a node is deployed in (contract §4.3): the
// secure_boot capability forces UEFI; then instance_info.deploy_boot_mode,
// the boot_mode capability, driver_internal_info.deploy_boot_mode, and the
// conductor's default.
func (m *machines) bootMode(n *store.Node, info *internalinfo.Info) string {
	valid := func(s string) bool { return s == string(power.BootModeUEFI) || s == string(power.BootModeBIOS) }
	caps := imageinfo.Capabilities(n.Properties)
	if sb, _ := strconv.ParseBool(caps["secure_boot"]); sb {
		return string(power.BootModeUEFI)
	}
	if mode, _ := n.InstanceInfo["deploy_boot_mode"].(string); valid(mode) {
		return mode
	}
	if mode := caps["boot_mode"]; valid(mode) {
		return mode
	}
	if valid(info.BootMode) {
		return info.BootMode
	}
	return m.cfg.DefaultBootMode
}

// validate checks the node's driver_info with its driver.
func (m *machines) validate(t *target) error { return t.drv.Validate(t.powerNode()) }

// validateConnection checks the node's driver settings and, for drivers
// that talk to a BMC (power.ConnectionValidator), that the BMC answers;
// the driver bounds the wait.
func (m *machines) validateConnection(ctx context.Context, t *target) error {
	if err := m.validate(t); err != nil {
		return err
	}
	if cv, ok := t.drv.(power.ConnectionValidator); ok {
		if err := m.nodes.fenced(ctx, t.node.UUID); err != nil {
			return err
		}
		return cv.ValidateConnection(ctx, t.powerNode())
	}
	return nil
}

// powerState reads the node's power state from its driver.
func (m *machines) powerState(ctx context.Context, t *target) (power.State, error) {
	if err := m.nodes.fenced(ctx, t.node.UUID); err != nil {
		return "", err
	}
	st, err := t.drv.PowerState(ctx, t.powerNode())
	if err != nil {
		return "", fmt.Errorf("node %s: read power state: %w", t.node.UUID, err)
	}
	return st, nil
}

// setBootDevice sets the device the node boots from next;
// driver_info.force_persistent_boot_device "Always" or "Never" overrides
// persistent (Ironic's).
func (m *machines) setBootDevice(ctx context.Context, t *target, dev power.BootDevice, persistent bool) error {
	if err := m.nodes.fenced(ctx, t.node.UUID); err != nil {
		return err
	}
	switch v, _ := t.node.DriverInfo["force_persistent_boot_device"].(string); strings.ToLower(v) {
	case "always", "true":
		persistent = true
	case "never", "false":
		persistent = false
	}
	if err := t.drv.SetBootDevice(ctx, t.powerNode(), dev, persistent); err != nil {
		return fmt.Errorf("node %s: set boot device %s: %w", t.node.UUID, dev, err)
	}
	return nil
}

// bootDevice reads the node's next boot device; a driver that cannot read
// it back gives ("", false, nil).
func (m *machines) bootDevice(ctx context.Context, t *target) (power.BootDevice, bool, error) {
	r, ok := t.drv.(power.BootDeviceReader)
	if !ok {
		return "", false, nil
	}
	if err := m.nodes.fenced(ctx, t.node.UUID); err != nil {
		return "", false, err
	}
	dev, persistent, err := r.GetBootDevice(ctx, t.powerNode())
	if err != nil {
		return "", false, fmt.Errorf("node %s: read boot device: %w", t.node.UUID, err)
	}
	return dev, persistent, nil
}

// supportedBootDevices lists the boot devices the node's driver can set.
func (m *machines) supportedBootDevices(t *target) []power.BootDevice {
	if l, ok := t.drv.(power.BootDeviceLister); ok {
		return l.SupportedBootDevices(t.powerNode())
	}
	return []power.BootDevice{power.BootPXE, power.BootDisk}
}

// setPower moves the node to want (On, Off, Reboot or the soft variants),
// waits until the driver reports the resulting state, and records it.
// Every power off or reboot forgets the agent (its URL, token, cached
// steps and certificate), as Ironic does: the next ramdisk boot starts
// afresh.
func (m *machines) setPower(ctx context.Context, t *target, want power.State) error {
	return m.setPowerTimeout(ctx, t, want, m.cfg.PowerStateTimeout)
}

func (m *machines) setPowerTimeout(ctx context.Context, t *target, want power.State, timeout time.Duration) error {
	pn := t.powerNode()
	if err := m.nodes.fenced(ctx, pn.UUID); err != nil {
		return err
	}
	if t.node.DisablePowerOff && resultingPower(want) == power.Off {
		return fmt.Errorf("node %s: refusing to power off a node with disable_power_off set", pn.UUID)
	}
	if err := t.drv.SetPowerState(ctx, pn, want); err != nil {
		return fmt.Errorf("node %s: set power %s: %w", pn.UUID, want, err)
	}
	expect := resultingPower(want)
	if err := m.waitPower(ctx, t, expect, timeout); err != nil {
		return err
	}
	return m.recordPower(ctx, t, expect, want != power.On, "")
}

// recordPower stores the power state the node was seen in and, when the
// node was powered off or rebooted (wipe), forgets its agent. expect, when
// set, is the provision state the node must be in.
func (m *machines) recordPower(ctx context.Context, t *target, st power.State, wipe bool, expect statemachine.State) error {
	n, info, err := m.nodes.update(ctx, t.node.UUID, expect, func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		n.PowerState = string(st)
		n.TargetPowerState = ""
		if wipe {
			info.WipeOnPowerOff()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wipe {
		m.certs.remove(n.UUID)
	}
	t.set(n, info)
	return nil
}

// resultingPower is the state a power request ends in.
func resultingPower(want power.State) power.State {
	switch want {
	case power.Reboot, power.SoftReboot:
		return power.On
	case power.SoftOff:
		return power.Off
	}
	return want
}

// waitPower polls the driver until the node is in state want or timeout
// passes.
func (m *machines) waitPower(ctx context.Context, t *target, want power.State, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := m.powerState(ctx, t)
		if err != nil {
			return err
		}
		if st == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: power state is %q after %s, want %q", t.node.UUID, st, timeout, want)
		}
		if err := pause.For(ctx, m.cfg.PowerStateInterval); err != nil {
			return err
		}
	}
}

// bootRamdisk powers a node off and boots the deploy ramdisk: network
// boot, the ramdisk prepared for drivers that boot it themselves, power
// on. extra are additional kernel parameters, recorded for boot interfaces
// that build their own command line (conductor/boot's iPXE scripts).
func (m *machines) bootRamdisk(ctx context.Context, t *target, extra ...string) error {
	if impl := t.iface("boot"); !hardwaretype.Implemented("boot", impl) {
		return lastError(hardwaretype.NotImplemented("boot", impl))
	}
	if impl := t.iface("network"); !hardwaretype.Implemented("network", impl) {
		return lastError(hardwaretype.NotImplemented("network", impl))
	}
	// A node that must not be powered off is rebooted into the ramdisk
	// once its boot is set up (Ironic's power_off_and_on).
	if !t.node.DisablePowerOff {
		if err := m.setPower(ctx, t, power.Off); err != nil {
			return err
		}
	}
	static, err := staticNetworkParams(t.node)
	if err != nil {
		return err
	}
	n, info, err := m.nodes.update(ctx, t.node.UUID, "", func(_ store.Tx, n *store.Node, info *internalinfo.Info) error {
		info.KernelParams = append(static, extra...)
		if n.ProvisionState == statemachine.Deploying {
			markTime(info, markRamdiskOn, m.nodes.now())
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.set(n, info)
	if err := m.setBootDevice(ctx, t, power.BootPXE, false); err != nil {
		return err
	}
	if rb, ok := t.drv.(power.RamdiskBooter); ok {
		rd, err := m.ramdisk(t, extra...)
		if err != nil {
			return err
		}
		if err := m.nodes.fenced(ctx, t.node.UUID); err != nil {
			return err
		}
		if err := rb.PrepareRamdisk(ctx, t.powerNode(), rd); err != nil {
			return fmt.Errorf("node %s: prepare ramdisk: %w", t.node.UUID, err)
		}
	}
	if t.node.DisablePowerOff {
		return m.setPower(ctx, t, power.Reboot)
	}
	return m.setPower(ctx, t, power.On)
}

// bootInstance boots a node from its disk, persistently: powered on, or
// rebooted when it must not be powered off (and so still runs).
func (m *machines) bootInstance(ctx context.Context, t *target) error {
	if err := m.setBootDevice(ctx, t, power.BootDisk, true); err != nil {
		return err
	}
	if t.node.DisablePowerOff {
		return m.setPower(ctx, t, power.Reboot)
	}
	return m.setPower(ctx, t, power.On)
}

// leaveRamdisk ends an operation's ramdisk boot: the node is powered off,
// or rebooted (to its disk) when it must not be powered off.
func (m *machines) leaveRamdisk(ctx context.Context, t *target) error {
	if t.node.DisablePowerOff {
		return m.setPower(ctx, t, power.Reboot)
	}
	return m.setPower(ctx, t, power.Off)
}

// ramdisk describes the deploy ramdisk boot of a node: kernel and
// initramfs from driver_info or the conductor's defaults, and the kernel
// parameters the agent reads (extra ones last).
func (m *machines) ramdisk(t *target, extra ...string) (power.Ramdisk, error) {
	files, err := m.ramdiskFiles(t.node)
	if err != nil {
		return power.Ramdisk{}, err
	}
	apiURL, err := m.nodeURL(t, m.cfg.APIURL)
	if err != nil {
		return power.Ramdisk{}, err
	}
	params, err := boot.KernelAppendParams(t.node, nil)
	if err != nil {
		return power.Ramdisk{}, err
	}
	params = append(params, "ipa-api-url="+apiURL)
	if macs := t.powerNode().MACs; len(macs) > 0 {
		params = append(params, "BOOTIF="+macs[0])
	}
	params = append(params, "ipa-global-request-id=req-"+uuid.NewString())
	params = append(params, extra...)
	return power.Ramdisk{Kernel: files[0], Initramfs: files[1], Params: params, Open: m.openDeployFile}, nil
}

// ramdiskFiles returns the deploy kernel and ramdisk of a node, or an
// InvalidArgument error naming what is missing.
func (m *machines) ramdiskFiles(n *store.Node) ([2]string, error) {
	kernel, _ := n.DriverInfo["deploy_kernel"].(string)
	initrd, _ := n.DriverInfo["deploy_ramdisk"].(string)
	if kernel == "" {
		kernel = m.cfg.DeployKernel
	}
	if initrd == "" {
		initrd = m.cfg.DeployRamdisk
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

// bootsRamdisk reports whether the node's driver boots the ramdisk itself
// (and so needs the deploy kernel and ramdisk files).
func (m *machines) bootsRamdisk(drv power.Driver) bool {
	_, ok := drv.(power.RamdiskBooter)
	return ok
}

// nodeURL translates a URL the conductor reaches into the one the node
// reaches, for drivers that implement power.NodeView.
func (m *machines) nodeURL(t *target, hostURL string) (string, error) {
	nv, ok := t.drv.(power.NodeView)
	if !ok {
		return hostURL, nil
	}
	u, err := nv.NodeURL(t.powerNode(), hostURL)
	if err != nil {
		return "", fmt.Errorf("node %s: map %s for the node: %w", t.node.UUID, hostURL, err)
	}
	return u, nil
}

// powerOffAfterFailure powers a failed node off so that its ramdisk stops.
func (m *machines) powerOffAfterFailure(ctx context.Context, n *store.Node, info *internalinfo.Info) {
	m.certs.remove(n.UUID)
	if n.DisablePowerOff {
		m.log.Warn("not powering off a failed node: disable_power_off is set", "node", n.UUID)
		return
	}
	t, err := m.targetFor(ctx, n, info)
	if err == nil {
		err = m.setPower(ctx, t, power.Off)
	}
	if err != nil && ctx.Err() == nil {
		m.log.Error("power off after a failure failed; the node may still run the ramdisk", "node", n.UUID, "error", err)
	}
}

// fastTrackEnabled reports whether fast-track is on for a node
// ([deploy]fast_track, or driver_info.fast_track).
func fastTrackEnabled(cfg *Config, n *store.Node) bool {
	switch v := n.DriverInfo["fast_track"].(type) {
	case bool:
		return v
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return cfg.FastTrack
}

// fastTrackable reports whether a node's running agent can be reused
// (contract §4.7): fast-track on, no last error, power on, an agent URL,
// and a heartbeat within FastTrackTimeout.
func fastTrackable(cfg *Config, n *store.Node, info *internalinfo.Info) bool {
	if !fastTrackEnabled(cfg, n) || n.LastError != "" || n.PowerState != string(power.On) || info.Agent.URL == "" {
		return false
	}
	last, err := time.Parse(agentTimeLayout, info.Agent.LastHeartbeat)
	return err == nil && cfg.Now().UTC().Sub(last) <= cfg.FastTrackTimeout
}

// certificates keeps the agents' certificates as files
// (<dir>/<node>.crt, Ironic's [agent]certificates_path).
type certificates struct {
	dir string
	log *slog.Logger
}

func (c *certificates) path(uuid string) string { return filepath.Join(c.dir, uuid+".crt") }

// ensure writes the certificate file if this conductor has none (it took
// the node over, or the heartbeat reached another conductor).
func (c *certificates) ensure(uuid, pemText string) {
	p := c.path(uuid)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == strings.TrimSpace(pemText) {
		return
	}
	if err := os.WriteFile(p, []byte(pemText), 0o640); err != nil {
		c.log.Warn("saving the agent certificate failed", "node", uuid, "path", p, "error", err)
	}
}

// remove deletes a node's certificate file after the agent went away.
func (c *certificates) remove(uuid string) {
	if err := os.Remove(c.path(uuid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("removing the agent certificate failed", "node", uuid, "error", err)
	}
}
