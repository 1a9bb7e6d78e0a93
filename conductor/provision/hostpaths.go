package provision

import (
	"fmt"
	"os"
	"reflect"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Host paths a node names (conductor/hostpath): its deploy kernel and
// ramdisk (driver_info deploy_kernel, deploy_ramdisk: a path or file://
// URL; the conductor's own defaults are the operator's and not checked),
// a file:// image_source, and the files its driver keeps on the host
// (power.HostPathChecker). They are checked when the API stores them
// (CheckHostPaths), when the node is validated or deployed (checkHostFiles)
// and opened through Config.HostFiles when used.

// deployFileKeys are the driver_info keys naming deploy ramdisk files.
var deployFileKeys = []string{"deploy_kernel", "deploy_ramdisk"}

// CheckHostPaths checks the host paths node n names that prev (the node
// before the change; nil for a new node) did not name alike, so that the
// API refuses a path outside the allowed directories at once (400, an
// errdefs.InvalidArgument saying why).
func (p *Provisioning) CheckHostPaths(n, prev *store.Node) error {
	var prevDI, prevII map[string]any
	if prev != nil {
		prevDI, prevII = prev.DriverInfo, prev.InstanceInfo
	}
	changed := func(now, before map[string]any, k string) bool {
		v, ok := now[k]
		if !ok {
			return false
		}
		w, had := before[k]
		return !had || !reflect.DeepEqual(v, w)
	}
	for _, k := range deployFileKeys {
		if changed(n.DriverInfo, prevDI, k) {
			if err := p.machines.checkDeployFile(n.DriverInfo, k); err != nil {
				return err
			}
		}
	}
	if changed(n.InstanceInfo, prevII, "image_source") {
		if err := p.machines.checkImageSource(n.InstanceInfo); err != nil {
			return err
		}
	}
	drv, ok := p.machines.drivers[n.Driver]
	if !ok {
		return nil // the API refuses unknown drivers itself
	}
	hc, ok := drv.(power.HostPathChecker)
	if !ok {
		return nil
	}
	sub := map[string]any{}
	for k, v := range n.DriverInfo {
		if prev == nil || prev.Driver != n.Driver || changed(n.DriverInfo, prevDI, k) {
			sub[k] = v
		}
	}
	if len(sub) == 0 {
		return nil
	}
	if err := hc.CheckHostPaths(power.Node{UUID: n.UUID, Name: n.Name, DriverInfo: sub}); err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	return nil
}

// checkHostFiles checks every host path a node names, for validation and
// before a deploy: its deploy files and a file:// image source.
func (m *machines) checkHostFiles(n *store.Node) error {
	for _, k := range deployFileKeys {
		if err := m.checkDeployFile(n.DriverInfo, k); err != nil {
			return err
		}
	}
	return m.checkImageSource(n.InstanceInfo)
}

// checkDeployFile checks driver_info's deploy file k, if it names a host
// file other than the conductor's default.
func (m *machines) checkDeployFile(di map[string]any, k string) error {
	v, present := di[k]
	if !present || v == nil {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return errdefs.InvalidArgument("driver_info %s must be a string: a path, a file:// or an http(s) URL.", k)
	}
	if s == "" || s == m.defaultDeployFile(k) {
		return nil
	}
	path, local, err := hostpath.Local(s)
	if err != nil || !local {
		return err
	}
	if err := m.hostFiles().Check(path); err != nil {
		return fmt.Errorf("driver_info %s: %w", k, err)
	}
	return nil
}

// checkImageSource checks a file:// image_source.
func (m *machines) checkImageSource(ii map[string]any) error {
	src, _ := ii["image_source"].(string)
	if !hostpath.IsFileURL(src) {
		return nil
	}
	path, err := hostpath.FromFileURL(src)
	if err == nil {
		err = m.hostFiles().Check(path)
	}
	if err != nil {
		return fmt.Errorf("instance_info image_source: %w", err)
	}
	return nil
}

// hostFiles is the confiner of host paths; without one, none is allowed.
func (m *machines) hostFiles() *hostpath.Confiner {
	if m.cfg.HostFiles == nil {
		return noHostFiles
	}
	return m.cfg.HostFiles
}

// noHostFiles allows no directory.
var noHostFiles, _ = hostpath.New(hostpath.Config{})

func (m *machines) defaultDeployFile(k string) string {
	if k == "deploy_kernel" {
		return m.cfg.DeployKernel
	}
	return m.cfg.DeployRamdisk
}

// openDeployFile opens a deploy ramdisk file for a driver that boots it
// itself: the conductor's defaults as they are, a node's own through the
// allowed directories.
func (m *machines) openDeployFile(path string) (*os.File, error) {
	if path == m.cfg.DeployKernel || path == m.cfg.DeployRamdisk {
		return os.Open(path)
	}
	p, local, err := hostpath.Local(path)
	if err != nil {
		return nil, err
	}
	if !local {
		return nil, errdefs.InvalidArgument("Deploy file %s is not a host file; this driver boots the ramdisk from host files.", path)
	}
	return m.hostFiles().Open(p)
}
