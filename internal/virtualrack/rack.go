package virtualrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/internal/ipmisim"
	"github.com/rivetmetal/rivet/internal/netns"
)

// Bridge names inside the rack's namespace.
const (
	provBridge = "br-prov"
	bmcBridge  = "br-bmc"
)

// Rack is a running virtual rack.
type Rack struct {
	// Netns is the network namespace everything runs in.
	Netns string
	// APIURL is the conductor's API as the nodes (and anything inside
	// the namespace) reach it.
	APIURL string
	// Username and Password are the API user the rack made (http_basic,
	// admin role).
	Username, Password string
	// Nodes are the rack's nodes, in Config order.
	Nodes []*Node

	cfg       Config
	log       *slog.Logger
	plan      addressPlan
	ip        string
	qemu      *qemu.Driver
	api       *apiClient
	conductor *conductorProc

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start builds the rack: the namespace and its bridges, a BMC per node,
// the conductor, and the nodes enrolled (driver ipmi, one port each) and
// made available. On error everything started is torn down again.
func Start(ctx context.Context, cfg Config) (_ *Rack, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("virtualrack: ip (iproute2): %w", err)
	}
	for _, p := range []string{cfg.Conductor, cfg.DeployKernel, cfg.DeployRamdisk} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("virtualrack: %w", err)
		}
	}
	if ok, why := ipmisim.Available(); !ok {
		return nil, fmt.Errorf("virtualrack: %s", why)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("virtualrack: %w", err)
	}
	r := &Rack{cfg: cfg, log: cfg.Logger.With("component", "virtualrack"), plan: planFor(cfg.Network), ip: ip}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	if r.qemu, err = qemu.New(qemu.Config{StateDir: filepath.Join(cfg.Dir, "qemu"), FilesDir: filepath.Join(cfg.Dir, "nodes"), Relay: []string{cfg.Conductor, "relay"},
		Binary: cfg.QEMU, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("virtualrack: %w", err)
	}
	if r.Netns, err = netns.Add(ctx, "rivet-rack-"); err != nil {
		return nil, fmt.Errorf("virtualrack: %w", err)
	}
	r.log.Info("namespace created", "netns", r.Netns)
	if err := r.network(ctx); err != nil {
		return nil, err
	}
	for i, spec := range cfg.Nodes {
		if err := r.addNode(ctx, i, spec); err != nil {
			return nil, err
		}
	}
	if err := r.startConductor(ctx); err != nil {
		return nil, err
	}
	if err := r.enroll(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// network makes the two bridges and the conductor's and BMCs' addresses.
func (r *Rack) network(ctx context.Context) error {
	cmds := [][]string{
		{"link", "add", provBridge, "type", "bridge"},
		{"addr", "add", r.plan.conductorProv().String() + "/24", "dev", provBridge},
		{"link", "set", provBridge, "up"},
		{"link", "add", bmcBridge, "type", "bridge"},
		{"addr", "add", r.plan.conductorBMC().String() + "/24", "dev", bmcBridge},
	}
	for i := range r.cfg.Nodes {
		cmds = append(cmds, []string{"addr", "add", r.plan.bmcAddr(i).String() + "/24", "dev", bmcBridge})
	}
	cmds = append(cmds, []string{"link", "set", bmcBridge, "up"})
	for _, c := range cmds {
		if err := r.run(ctx, append([]string{"-n", r.Netns}, c...)...); err != nil {
			return err
		}
	}
	return nil
}

// run runs ip with args.
func (r *Rack) run(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, r.ip, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("virtualrack: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addNode makes node i's directory, disk and BMC, and adds it to the rack
// (which Close then tears down, whatever was made).
func (r *Rack) addNode(ctx context.Context, i int, spec NodeSpec) error {
	dir := filepath.Join(r.cfg.Dir, "nodes", spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("virtualrack: %w", err)
	}
	n := &Node{Name: spec.Name, UUID: uuid.NewString(), Firmware: spec.Firmware, NICModel: spec.NICModel,
		DiskBus: spec.DiskBus, MAC: nodeMAC(i), Disk: filepath.Join(dir, "disk.raw"),
		ConsoleLog: filepath.Join(dir, "console.log"), spec: spec, rack: r}
	n.console = newConsole(n.ConsoleLog)
	r.Nodes = append(r.Nodes, n)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		n.console.follow(r.ctx)
	}()
	f, err := os.OpenFile(n.Disk, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("virtualrack: node %s: disk: %w", n.Name, err)
	}
	err = f.Truncate(spec.DiskSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("virtualrack: node %s: disk: %w", n.Name, err)
	}

	addr := r.plan.bmcAddr(i)
	mac, _ := net.ParseMAC(bmcMAC(i))
	bcfg := ipmisim.Config{
		Dir:     filepath.Join(dir, "bmc"),
		Name:    n.Name,
		Address: addr.String(),
		Port:    IPMIPort,
		LAN: ipmisim.LAN{IP: net.IP(addr.AsSlice()), Netmask: net.IPv4(255, 255, 255, 0),
			Gateway: net.IPv4zero, MAC: mac},
		Command:   n.machineCommand,
		QMPSocket: filepath.Join(r.cfg.Dir, "qemu", n.UUID, "qmp.sock"),
		Logger:    r.cfg.Logger,
	}
	// ipmi_sim starts from a thread in the namespace, so it listens there.
	var bmc *ipmisim.BMC
	err = netns.Do(r.Netns, func() error {
		var err error
		bmc, err = ipmisim.Start(ctx, bcfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("virtualrack: node %s: BMC: %w", n.Name, err)
	}
	// The BMC's chassis goroutine reads it when it powers the machine on.
	n.mu.Lock()
	n.BMC, n.BMCAddress = bmc, bmc.Addr()
	n.mu.Unlock()
	return nil
}

// enroll creates each node (driver ipmi) and its port, then manages and
// provides it.
func (r *Rack) enroll(ctx context.Context) error {
	for _, n := range r.Nodes {
		info := n.BMC.DriverInfo()
		info["kernel_append_params"] = r.cfg.KernelAppendParams
		body := map[string]any{"uuid": n.UUID, "name": n.Name, "driver": "ipmi", "driver_info": info,
			"properties": map[string]any{"cpu_arch": "x86_64", "capabilities": "boot_mode:" + n.Firmware}}
		if err := r.api.do(ctx, http.MethodPost, "/v1/nodes", body, nil); err != nil {
			return fmt.Errorf("virtualrack: enroll %s: %w", n.Name, err)
		}
		if err := r.api.do(ctx, http.MethodPost, "/v1/ports", map[string]any{"address": n.MAC, "node_uuid": n.UUID}, nil); err != nil {
			return fmt.Errorf("virtualrack: enroll %s: port: %w", n.Name, err)
		}
	}
	for _, step := range []struct{ verb, state string }{{"manage", "manageable"}, {"provide", "available"}} {
		for _, n := range r.Nodes {
			if err := r.SetProvisionState(ctx, n.Name, step.verb, nil); err != nil {
				return fmt.Errorf("virtualrack: %s %s: %w", step.verb, n.Name, err)
			}
		}
		for _, n := range r.Nodes {
			if _, err := r.api.waitState(ctx, n.Name, step.state, "enroll", "clean failed"); err != nil {
				return fmt.Errorf("virtualrack: %s %s: %w", step.verb, n.Name, err)
			}
		}
	}
	r.log.Info("nodes enrolled and available", "nodes", len(r.Nodes))
	return nil
}

// Node returns the node with the given name, or nil.
func (r *Rack) Node(name string) *Node {
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// API sends a JSON request to the conductor's API as the rack's user and
// decodes the answer into out (when not nil); an error status is an
// *APIError.
func (r *Rack) API(ctx context.Context, method, path string, body, out any) error {
	return r.api.do(ctx, method, path, body, out)
}

// SetProvisionState asks for a provision state change (PUT
// /v1/nodes/{ident}/states/provision); extra fields join the body.
func (r *Rack) SetProvisionState(ctx context.Context, ident, target string, extra map[string]any) error {
	body := map[string]any{"target": target}
	for k, v := range extra {
		body[k] = v
	}
	return r.api.do(ctx, http.MethodPut, "/v1/nodes/"+ident+"/states/provision", body, nil)
}

// WaitState polls a node until its provision state is want with nothing
// pending, or one of fail (an error wrapping ErrFailed); it returns the
// node document.
func (r *Rack) WaitState(ctx context.Context, ident, want string, fail ...string) (map[string]any, error) {
	return r.api.waitState(ctx, ident, want, fail...)
}

// ConductorLog is the conductor's log file.
func (r *Rack) ConductorLog() string { return filepath.Join(r.cfg.Dir, "conductor.log") }

// ImageURL is the URL at which the nodes fetch a file of Config.ImageDir.
func (r *Rack) ImageURL(name string) string { return r.APIURL + "/images/" + name }

// Close stops the conductor, every BMC and machine and the forwarders,
// removes the namespace (bridges and taps go with it) and the nodes'
// disks. It is safe to call more than once.
func (r *Rack) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		if r.conductor != nil {
			errs = append(errs, r.conductor.stop())
		}
		for _, n := range r.Nodes {
			if n.BMC != nil {
				if err := n.BMC.Close(); err != nil {
					errs = append(errs, fmt.Errorf("virtualrack: node %s: BMC: %w", n.Name, err))
				}
			}
		}
		r.cancel()
		r.wg.Wait()
		if r.Netns != "" {
			errs = append(errs, netns.Delete(r.Netns))
		}
		for _, n := range r.Nodes {
			if err := os.Remove(n.Disk); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("virtualrack: %w", err))
			}
		}
		r.closeErr = errors.Join(errs...)
		r.log.Info("rack closed", "netns", r.Netns)
	})
	return r.closeErr
}

// apiAddr is the conductor's API listen address.
func (r *Rack) apiAddr() string {
	return net.JoinHostPort(r.plan.conductorProv().String(), strconv.Itoa(APIPort))
}
