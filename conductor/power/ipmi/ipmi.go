// Package ipmi is the "ipmi" power driver: power and boot-device control
// of a node through its BMC over IPMI on the LAN (RMCP+ "lanplus" by
// default, IPMI 1.5 "lan" on request), using go-ipmi. Each operation opens
// a session, does its work and closes the session.
//
// driver_info keys, as Ironic's ipmi hardware type names them:
//
//	ipmi_address           BMC host; required
//	ipmi_port              UDP port (default 623)
//	ipmi_username, ipmi_password
//	ipmi_protocol_version  "2.0" (default, lanplus) or "1.5" (lan)
//	ipmi_priv_level        ADMINISTRATOR (default), OPERATOR, USER or CALLBACK
//	ipmi_cipher_suite      RMCP+ cipher suite number (default: Config.CipherSuites)
//
// Cipher suites. A node with ipmi_cipher_suite uses that suite only, as
// Ironic does. Without it the driver does not ask the BMC which suites it
// has: Get Channel Cipher Suites is optional and some BMCs (OpenIPMI's
// ipmi_sim among them) never answer it, which cost a timeout with every
// retry on every call. Instead it offers the suites of
// Config.CipherSuites in order (Ironic's [ipmi]cipher_suite_versions; by
// default 17, then 3, the order Ironic's documentation recommends). A BMC
// refuses a suite it lacks in its Open Session response at once, so
// falling back costs one round trip.
//
// Every error names the node, the operation and the BMC's address.
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	goipmi "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/rivetmetal/rivet/conductor/power"
)

// Name is the driver name nodes use.
const Name = "ipmi"

// Config configures the driver; the zero value is usable.
type Config struct {
	// Timeout bounds each IPMI request (default 5 s) and Retries is how
	// often one is resent (default 2).
	Timeout time.Duration
	Retries int
	// SoftOffTimeout bounds the wait for a soft power off to take effect
	// during a soft reboot (default 120 s), polled every PollInterval
	// (default 1 s).
	SoftOffTimeout time.Duration
	PollInterval   time.Duration
	// CipherSuites are the RMCP+ cipher suites offered, in order, to a
	// BMC of a node without ipmi_cipher_suite (Ironic's
	// [ipmi]cipher_suite_versions; default DefaultCipherSuites).
	CipherSuites []int
	// ProbeTimeout bounds ValidateConnection (default Timeout, one try).
	ProbeTimeout time.Duration
	// Logger receives debug logs (default slog.Default()); credentials are
	// never logged.
	Logger *slog.Logger
}

// DefaultCipherSuites are the suites offered when neither driver_info nor
// Config name one: 17 (RAKP-HMAC-SHA256, AES-CBC-128) and 3
// (RAKP-HMAC-SHA1, AES-CBC-128), which the IPMI 2.0 spec requires.
var DefaultCipherSuites = []int{17, 3}

// Driver is the ipmi driver. It implements power.Driver,
// power.BootDeviceReader and power.BootDeviceLister.
type Driver struct {
	cfg Config
}

var (
	_ power.Driver              = (*Driver)(nil)
	_ power.BootDeviceReader    = (*Driver)(nil)
	_ power.BootDeviceLister    = (*Driver)(nil)
	_ power.ConnectionValidator = (*Driver)(nil)
)

// New returns a driver.
func New(cfg Config) *Driver {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 2
	}
	if cfg.SoftOffTimeout <= 0 {
		cfg.SoftOffTimeout = 120 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if len(cfg.CipherSuites) == 0 {
		cfg.CipherSuites = DefaultCipherSuites
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = cfg.Timeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Driver{cfg: cfg}
}

// Name implements power.Driver.
func (d *Driver) Name() string { return Name }

// info is a node's parsed driver_info.
type info struct {
	host        string
	port        int
	username    string
	password    string
	lan15       bool
	priv        types.PrivilegeLevel
	cipherSuite *types.CipherSuiteID
}

var privLevels = map[string]types.PrivilegeLevel{
	"ADMINISTRATOR": types.PrivilegeLevelAdministrator,
	"OPERATOR":      types.PrivilegeLevelOperator,
	"USER":          types.PrivilegeLevelUser,
	"CALLBACK":      types.PrivilegeLevelCallback,
}

// intValue reads an integer that Ironic clients send as a number or a
// string.
func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		return int(x), x == float64(int(x))
	case int:
		return x, true
	case int64:
		return int(x), true
	case string:
		i, err := strconv.Atoi(x)
		return i, err == nil
	default:
		return 0, false
	}
}

func parseInfo(n power.Node) (info, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: node %s: %s", power.ErrInvalidDriverInfo, n.UUID, fmt.Sprintf(format, args...))
	}
	str := func(k string) (string, error) {
		switch v := n.DriverInfo[k].(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		default:
			return "", bad("%s must be a string", k)
		}
	}
	in := info{port: 623, priv: types.PrivilegeLevelAdministrator}
	var errs []error
	get := func(dst *string, k string) {
		v, err := str(k)
		errs = append(errs, err)
		*dst = v
	}
	var version, priv string
	get(&in.host, "ipmi_address")
	get(&in.username, "ipmi_username")
	get(&in.password, "ipmi_password")
	get(&version, "ipmi_protocol_version")
	get(&priv, "ipmi_priv_level")
	if err := errors.Join(errs...); err != nil {
		return info{}, err
	}
	if in.host == "" {
		return info{}, bad("missing ipmi_address")
	}
	if v, ok := n.DriverInfo["ipmi_port"]; ok && v != nil {
		p, ok := intValue(v)
		if !ok || p < 1 || p > 65535 {
			return info{}, bad("ipmi_port %v is not a port number", v)
		}
		in.port = p
	}
	switch version {
	case "", "2.0":
	case "1.5":
		in.lan15 = true
	default:
		return info{}, bad(`ipmi_protocol_version %q is not "1.5" or "2.0"`, version)
	}
	if priv != "" {
		p, ok := privLevels[priv]
		if !ok {
			return info{}, bad("ipmi_priv_level %q is not one of ADMINISTRATOR, OPERATOR, USER, CALLBACK", priv)
		}
		in.priv = p
	}
	if v, ok := n.DriverInfo["ipmi_cipher_suite"]; ok && v != nil {
		cs, ok := intValue(v)
		if !ok || cs < 0 || cs > 255 {
			return info{}, bad("ipmi_cipher_suite %v is not a cipher suite number", v)
		}
		id := types.CipherSuiteID(cs)
		in.cipherSuite = &id
	}
	return in, nil
}

// Validate implements power.Driver.
func (d *Driver) Validate(node power.Node) error {
	_, err := parseInfo(node)
	return err
}

// with runs fn in an IPMI session with the node's BMC.
func (d *Driver) with(ctx context.Context, node power.Node, op string, fn func(c *goipmi.Client) error) error {
	return d.session(ctx, node, op, d.cfg.Retries, fn)
}

// session runs fn in an IPMI session, each request sent up to retries+1
// times.
func (d *Driver) session(ctx context.Context, node power.Node, op string, retries int, fn func(c *goipmi.Client) error) error {
	in, err := parseInfo(node)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(in.host, strconv.Itoa(in.port))
	wrap := func(err error) error {
		return fmt.Errorf("ipmi: node %s: BMC %s: %s: %w", node.UUID, addr, op, err)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	c, err := goipmi.NewClient(in.host, in.port, in.username, in.password)
	if err != nil {
		return wrap(err)
	}
	c = c.WithTimeout(d.cfg.Timeout).WithRetry(retries).WithMaxPrivilegeLevel(in.priv)
	if in.lan15 {
		c = c.WithInterface(goipmi.InterfaceLan)
	} else {
		c = c.WithCipherSuiteID(d.cipherSuites(in)...)
	}
	start := time.Now()
	if err := c.Connect(ctx); err != nil {
		return wrap(fmt.Errorf("open session: %w", err))
	}
	d.cfg.Logger.Debug("ipmi session open", "node", node.UUID, "bmc", addr, "op", op,
		"took", time.Since(start).Round(time.Millisecond))
	defer func() {
		// Close with a fresh, short context: the session must be closed
		// on the BMC even when ctx was cancelled mid-operation.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			d.cfg.Logger.Debug("ipmi session close failed", "node", node.UUID, "bmc", addr, "error", err)
		}
	}()
	if err := fn(c); err != nil {
		return wrap(err)
	}
	return nil
}

// cipherSuites are the RMCP+ suites offered to a node's BMC, in order.
func (d *Driver) cipherSuites(in info) []types.CipherSuiteID {
	if in.cipherSuite != nil {
		return []types.CipherSuiteID{*in.cipherSuite}
	}
	out := make([]types.CipherSuiteID, len(d.cfg.CipherSuites))
	for i, cs := range d.cfg.CipherSuites {
		out[i] = types.CipherSuiteID(cs)
	}
	return out
}

// ValidateConnection implements power.ConnectionValidator: it opens a
// session with the node's BMC and reads the chassis status, each request
// tried once and the whole bounded by ProbeTimeout, so that validating a
// node whose BMC does not answer fails quickly, naming the BMC.
func (d *Driver) ValidateConnection(ctx context.Context, node power.Node) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
	defer cancel()
	return d.session(ctx, node, "validate connection", 0, func(c *goipmi.Client) error {
		_, err := isOn(ctx, c)
		return err
	})
}

func isOn(ctx context.Context, c *goipmi.Client) (bool, error) {
	st, err := c.GetChassisStatus(ctx)
	if err != nil {
		return false, fmt.Errorf("get chassis status: %w", err)
	}
	return st.PowerIsOn, nil
}

// PowerState implements power.Driver.
func (d *Driver) PowerState(ctx context.Context, node power.Node) (power.State, error) {
	var on bool
	err := d.with(ctx, node, "get power state", func(c *goipmi.Client) (err error) {
		on, err = isOn(ctx, c)
		return err
	})
	if err != nil {
		return power.Error, err
	}
	if on {
		return power.On, nil
	}
	return power.Off, nil
}

func control(ctx context.Context, c *goipmi.Client, ctl chassis.ChassisControl) error {
	if _, err := c.ChassisControl(ctx, ctl); err != nil {
		return fmt.Errorf("chassis control %d: %w", ctl, err)
	}
	return nil
}

// SetPowerState implements power.Driver with Chassis Control: power up,
// power down, soft shutdown (ACPI); a reboot is a power down (when on)
// followed by a power up, and a soft reboot a soft shutdown, a wait for
// the machine to go off, and a power up, as Ironic's ipmitool driver does.
func (d *Driver) SetPowerState(ctx context.Context, node power.Node, target power.State) error {
	op := "set power " + string(target)
	switch target {
	case power.On, power.Off, power.Reboot, power.SoftOff, power.SoftReboot:
	default:
		return fmt.Errorf("ipmi: node %s: %s: %w", node.UUID, op, power.ErrUnsupported)
	}
	return d.with(ctx, node, op, func(c *goipmi.Client) error {
		switch target {
		case power.On:
			return control(ctx, c, chassis.ChassisControlPowerUp)
		case power.Off:
			return control(ctx, c, chassis.ChassisControlPowerDown)
		case power.SoftOff:
			return control(ctx, c, chassis.ChassisControlSoftShutdown)
		case power.Reboot:
			on, err := isOn(ctx, c)
			if err != nil {
				return err
			}
			if on {
				if err := control(ctx, c, chassis.ChassisControlPowerDown); err != nil {
					return err
				}
			}
			return control(ctx, c, chassis.ChassisControlPowerUp)
		default: // power.SoftReboot
			if err := control(ctx, c, chassis.ChassisControlSoftShutdown); err != nil {
				return err
			}
			if err := d.waitOff(ctx, c); err != nil {
				return err
			}
			return control(ctx, c, chassis.ChassisControlPowerUp)
		}
	})
}

// waitOff polls the chassis until it is off or SoftOffTimeout passes.
func (d *Driver) waitOff(ctx context.Context, c *goipmi.Client) error {
	deadline := time.Now().Add(d.cfg.SoftOffTimeout)
	for {
		on, err := isOn(ctx, c)
		if err != nil {
			return err
		}
		if !on {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still powered on %s after a soft power off", d.cfg.SoftOffTimeout)
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// selectors maps boot devices onto IPMI boot device selectors.
var selectors = map[power.BootDevice]types.BootDeviceSelector{
	power.BootPXE:  types.BootDeviceSelectorForcePXE,
	power.BootDisk: types.BootDeviceSelectorForceHardDrive,
	"cdrom":        types.BootDeviceSelectorForceCDROM,
	"bios":         types.BootDeviceSelectorForceBIOSSetup,
	"safe":         types.BootDeviceSelectorForceHardDriveSafe,
}

// SetBootDevice implements power.Driver with the boot flags system boot
// option: device, next boot only or persistent, EFI unless the node boots
// in BIOS mode.
func (d *Driver) SetBootDevice(ctx context.Context, node power.Node, dev power.BootDevice, persistent bool) error {
	op := "set boot device " + string(dev)
	sel, ok := selectors[dev]
	if !ok {
		return fmt.Errorf("ipmi: node %s: %s: %w", node.UUID, op, power.ErrUnsupported)
	}
	bootType := types.BIOSBootTypeEFI
	if node.BootMode == power.BootModeBIOS {
		bootType = types.BIOSBootTypeLegacy
	}
	return d.with(ctx, node, op, func(c *goipmi.Client) error {
		return c.SetBootDevice(ctx, sel, bootType, persistent)
	})
}

// GetBootDevice implements power.BootDeviceReader from the boot flags.
// Like Ironic's ipmitool driver it reads the device selector whether or
// not the BMC marks the flags valid: some BMCs (ipmi_sim) never set that
// bit. No override reads as no device.
func (d *Driver) GetBootDevice(ctx context.Context, node power.Node) (power.BootDevice, bool, error) {
	var flags types.BootOptionParam_BootFlags
	err := d.with(ctx, node, "get boot device", func(c *goipmi.Client) error {
		return c.GetSystemBootOptionsParamFor(ctx, &flags)
	})
	if err != nil {
		return "", false, err
	}
	for dev, sel := range selectors {
		if sel == flags.BootDeviceSelector {
			return dev, flags.Persist, nil
		}
	}
	return "", false, nil
}

// SupportedBootDevices implements power.BootDeviceLister.
func (d *Driver) SupportedBootDevices(node power.Node) []power.BootDevice {
	return []power.BootDevice{power.BootPXE, power.BootDisk, "cdrom", "bios", "safe"}
}
