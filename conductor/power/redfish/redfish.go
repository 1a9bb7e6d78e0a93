// Package redfish is the "redfish" power driver: power and boot-device
// control of a node through its BMC's DMTF Redfish service
// (ComputerSystem.Reset and Boot.BootSourceOverride*), reading of its
// BIOS settings and firmware versions, and its virtual media, using
// gofish.
//
// driver_info keys, as Ironic's redfish hardware type names them:
//
//	redfish_address    BMC URL or host (https:// is assumed without a scheme); required
//	redfish_system_id  the ComputerSystem's @odata.id; optional when the BMC has one system
//	redfish_username, redfish_password
//	redfish_verify_ca  true (default), false, or the path of a CA bundle
//	redfish_auth_type  basic, session or auto (default: session, falling back to basic)
package redfish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	rf "github.com/stmcginnis/gofish/redfish"

	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/power"
)

// Name is the driver name nodes use.
const Name = "redfish"

// IDRACName is the name of Ironic's idrac hardware type, which drives
// Dell iDRACs through Redfish (the idrac-redfish implementations): the
// same driver under that name (Config.Name).
const IDRACName = "idrac"

// Config configures the driver; the zero value is usable.
type Config struct {
	// Timeout bounds each request to a BMC (default 60 s).
	Timeout time.Duration
	// Logger receives debug logs (default slog.Default()); credentials are
	// never logged.
	Logger *slog.Logger
	// Name is the hardware type the driver serves (default Name;
	// IDRACName for Ironic's idrac type, whose driver_info is the same).
	Name string
}

// Driver is the redfish driver. It implements power.Driver,
// power.BootDeviceReader, power.BootDeviceLister, power.BIOSReader and
// power.FirmwareReader (bios.go) and power.VirtualMediaDriver
// (vmedia.go).
type Driver struct {
	cfg Config
}

var (
	_ power.Driver           = (*Driver)(nil)
	_ power.BootDeviceReader = (*Driver)(nil)
	_ power.BootDeviceLister = (*Driver)(nil)
)

// New returns a driver.
func New(cfg Config) *Driver {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	return &Driver{cfg: cfg}
}

// Name implements power.Driver.
func (d *Driver) Name() string { return d.cfg.Name }

// info is a node's parsed driver_info.
type info struct {
	endpoint string
	systemID string
	username string
	password string
	verify   bool
	caFile   string
	auth     string
}

// parseInfo reads and checks driver_info.
func parseInfo(n power.Node) (info, error) {
	str := func(k string) (string, error) {
		switch v := n.DriverInfo[k].(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		default:
			return "", fmt.Errorf("%w: node %s: %s must be a string", power.ErrInvalidDriverInfo, n.UUID, k)
		}
	}
	var in info
	var errs []error
	get := func(dst *string, k string) {
		v, err := str(k)
		errs = append(errs, err)
		*dst = v
	}
	var addr, verify string
	get(&addr, "redfish_address")
	get(&in.systemID, "redfish_system_id")
	get(&in.username, "redfish_username")
	get(&in.password, "redfish_password")
	get(&in.auth, "redfish_auth_type")
	if err := errors.Join(errs...); err != nil {
		return info{}, err
	}
	if addr == "" {
		return info{}, fmt.Errorf("%w: node %s: missing redfish_address", power.ErrInvalidDriverInfo, n.UUID)
	}
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return info{}, fmt.Errorf("%w: node %s: invalid redfish_address %q", power.ErrInvalidDriverInfo, n.UUID, addr)
	}
	in.endpoint = strings.TrimSuffix(u.String(), "/")
	switch in.auth {
	case "":
		in.auth = "auto"
	case "basic", "session", "auto":
	default:
		return info{}, fmt.Errorf("%w: node %s: redfish_auth_type %q is not basic, session or auto", power.ErrInvalidDriverInfo, n.UUID, in.auth)
	}
	in.verify = true
	switch v := n.DriverInfo["redfish_verify_ca"].(type) {
	case nil:
	case bool:
		in.verify = v
	case string:
		verify = v
		if b, err := strconv.ParseBool(v); err == nil {
			in.verify = b
		} else {
			in.caFile = verify
		}
	default:
		return info{}, fmt.Errorf("%w: node %s: redfish_verify_ca must be a boolean or a file path", power.ErrInvalidDriverInfo, n.UUID)
	}
	if in.caFile != "" {
		if _, err := hostpath.ReadSmallFile(in.caFile, maxCAFile); err != nil {
			return info{}, fmt.Errorf("%w: node %s: redfish_verify_ca: %v", power.ErrInvalidDriverInfo, n.UUID, err)
		}
	}
	return in, nil
}

// maxCAFile caps the CA bundle driver_info names (a file on the
// conductor's host, read as a regular file only: never /dev/zero).
const maxCAFile = 1 << 20

// Validate implements power.Driver.
func (d *Driver) Validate(node power.Node) error {
	_, err := parseInfo(node)
	return err
}

// session is one connection to a BMC, for one operation.
type session struct {
	client *gofish.APIClient
	tr     *http.Transport
	system *rf.ComputerSystem
	// loggedIn is set when a Redfish session was created (not basic auth).
	loggedIn bool
}

// close logs out (deleting the Redfish session, if any) and drops idle
// connections.
func (s *session) close() {
	if s.client != nil && s.loggedIn {
		s.client.Logout()
	}
	s.tr.CloseIdleConnections()
}

// connect opens a session to the node's BMC and finds its system.
func (d *Driver) connect(ctx context.Context, node power.Node, op string) (*session, error) {
	in, err := parseInfo(node)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !in.verify} // redfish_verify_ca=false is the operator's choice
	if in.caFile != "" {
		pem, err := hostpath.ReadSmallFile(in.caFile, maxCAFile)
		if err != nil {
			return nil, fmt.Errorf("redfish: node %s: %s: read CA %s: %w", node.UUID, op, in.caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redfish: node %s: %s: no certificate in %s: %w", node.UUID, op, in.caFile, power.ErrInvalidDriverInfo)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment,
		TLSHandshakeTimeout: d.cfg.Timeout, ResponseHeaderTimeout: d.cfg.Timeout}
	s := &session{tr: tr}
	cc := gofish.ClientConfig{
		Endpoint:   in.endpoint,
		Username:   in.username,
		Password:   in.password,
		HTTPClient: &http.Client{Transport: tr, Timeout: d.cfg.Timeout},
		BasicAuth:  in.auth == "basic",
	}
	s.client, err = gofish.ConnectContext(ctx, cc)
	if err != nil && in.auth == "auto" && ctx.Err() == nil {
		d.cfg.Logger.Debug("redfish session login failed; trying basic authentication", "node", node.UUID, "error", err)
		cc.BasicAuth = true
		s.client, err = gofish.ConnectContext(ctx, cc)
	}
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("redfish: node %s: %s: connect to %s: %w", node.UUID, op, in.endpoint, err)
	}
	s.loggedIn = !cc.BasicAuth && in.username != ""
	if in.systemID != "" {
		s.system, err = rf.GetComputerSystem(s.client, in.systemID)
	} else {
		var systems []*rf.ComputerSystem
		if systems, err = s.client.Service.Systems(); err == nil {
			if len(systems) != 1 {
				err = fmt.Errorf("the BMC has %d systems; set redfish_system_id: %w", len(systems), power.ErrInvalidDriverInfo)
			} else {
				s.system = systems[0]
			}
		}
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("redfish: node %s: %s: find system: %w", node.UUID, op, err)
	}
	return s, nil
}

// PowerState implements power.Driver.
func (d *Driver) PowerState(ctx context.Context, node power.Node) (power.State, error) {
	s, err := d.connect(ctx, node, "get power state")
	if err != nil {
		return power.Error, err
	}
	defer s.close()
	return stateOf(s.system.PowerState), nil
}

func stateOf(ps rf.PowerState) power.State {
	switch ps {
	case rf.OnPowerState, rf.PoweringOffPowerState:
		return power.On
	case rf.OffPowerState, rf.PoweringOnPowerState:
		return power.Off
	default:
		return power.Error
	}
}

// SetPowerState implements power.Driver with the ComputerSystem.Reset
// action: On, ForceOff, GracefulShutdown, GracefulRestart, and for a
// reboot ForceRestart (On when the system is off), as Ironic does.
func (d *Driver) SetPowerState(ctx context.Context, node power.Node, target power.State) error {
	op := "set power " + string(target)
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return err
	}
	defer s.close()
	var rt rf.ResetType
	switch target {
	case power.On:
		rt = rf.OnResetType
	case power.Off:
		rt = rf.ForceOffResetType
	case power.SoftOff:
		rt = rf.GracefulShutdownResetType
	case power.SoftReboot:
		rt = rf.GracefulRestartResetType
	case power.Reboot:
		rt = rf.ForceRestartResetType
		if stateOf(s.system.PowerState) == power.Off {
			rt = rf.OnResetType
		}
	default:
		return fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, power.ErrUnsupported)
	}
	if err := s.system.Reset(rt); err != nil {
		return fmt.Errorf("redfish: node %s: %s (reset %s): %w", node.UUID, op, rt, err)
	}
	d.cfg.Logger.Debug("redfish reset", "node", node.UUID, "reset_type", string(rt))
	return nil
}

// targets maps boot devices onto BootSourceOverrideTarget values.
var targets = map[power.BootDevice]rf.BootSourceOverrideTarget{
	power.BootPXE:  rf.PxeBootSourceOverrideTarget,
	power.BootDisk: rf.HddBootSourceOverrideTarget,
	"cdrom":        rf.CdBootSourceOverrideTarget,
	"bios":         rf.BiosSetupBootSourceOverrideTarget,
	"uefihttp":     "UefiHttp",
}

// SetBootDevice implements power.Driver: it patches Boot with the
// override target, Once or Continuous, and the mode (UEFI unless the node
// is set up for BIOS boot).
func (d *Driver) SetBootDevice(ctx context.Context, node power.Node, dev power.BootDevice, persistent bool) error {
	op := "set boot device " + string(dev)
	target, ok := targets[dev]
	if !ok {
		return fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, power.ErrUnsupported)
	}
	s, err := d.connect(ctx, node, op)
	if err != nil {
		return err
	}
	defer s.close()
	boot := rf.Boot{
		BootSourceOverrideTarget:  target,
		BootSourceOverrideEnabled: rf.OnceBootSourceOverrideEnabled,
		BootSourceOverrideMode:    rf.UEFIBootSourceOverrideMode,
	}
	if persistent {
		boot.BootSourceOverrideEnabled = rf.ContinuousBootSourceOverrideEnabled
	}
	if node.BootMode == power.BootModeBIOS {
		boot.BootSourceOverrideMode = rf.LegacyBootSourceOverrideMode
	}
	if err := s.system.SetBoot(boot); err != nil {
		return fmt.Errorf("redfish: node %s: %s: %w", node.UUID, op, err)
	}
	return nil
}

// GetBootDevice implements power.BootDeviceReader.
func (d *Driver) GetBootDevice(ctx context.Context, node power.Node) (power.BootDevice, bool, error) {
	s, err := d.connect(ctx, node, "get boot device")
	if err != nil {
		return "", false, err
	}
	defer s.close()
	b := s.system.Boot
	if b.BootSourceOverrideEnabled == rf.DisabledBootSourceOverrideEnabled || b.BootSourceOverrideEnabled == "" {
		return "", false, nil
	}
	for dev, t := range targets {
		if t == b.BootSourceOverrideTarget {
			return dev, b.BootSourceOverrideEnabled == rf.ContinuousBootSourceOverrideEnabled, nil
		}
	}
	return "", false, nil
}

// SupportedBootDevices implements power.BootDeviceLister.
func (d *Driver) SupportedBootDevices(node power.Node) []power.BootDevice {
	return []power.BootDevice{power.BootPXE, power.BootDisk, "cdrom", "bios", "uefihttp"}
}
