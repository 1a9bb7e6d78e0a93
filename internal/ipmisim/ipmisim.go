// Package ipmisim runs OpenIPMI's ipmi_sim (Debian package openipmi) as
// the BMC of one test node: a real IPMI 1.5/2.0 LAN BMC that nobody here
// wrote, for the ipmi power driver's tests and for a "virtual rack" of
// QEMU nodes.
//
// Start writes an ipmi_sim configuration (lan.conf and an emulator
// command file) into the node's directory and starts ipmi_sim on a UDP
// port of the given address. ipmi_sim hands chassis commands to an
// external "chassis control" program; this package's helper plays that
// program and forwards each request over a unix socket to the BMC value
// in the process that called Start, which owns the machine:
//
//   - chassis power on runs the caller's start command (Config.Command,
//     given the boot device chosen through IPMI), power off stops it
//     (SIGTERM, then SIGKILL), power cycle and hard reset stop it and start
//     it again, soft off asks the machine to shut down (QMP
//     system_powerdown when Config.QMPSocket is set, else SIGTERM);
//   - chassis status reports whether that process runs, so a machine that
//     powers itself off reads as off;
//   - the boot device set with chassis bootdev (pxe, disk, cdrom, bios) is
//     kept and handed to the next start. ipmi_sim passes on only the
//     device, not the "persistent" or "EFI" flags, so a boot device stays
//     until it is changed.
//
// The same ipmi_sim also listens for QEMU's ipmi-bmc-extern chardev on a
// TCP port (Config.VMPort, see QEMUArgs), so a guest with an isa-ipmi-kcs
// device talks to this BMC in-band through /dev/ipmi0; Get LAN
// Configuration Parameters answer with Config.LAN (through the helper as
// ipmi_sim's lan_config_program).
//
// Programs using the package call RunHelper first thing in main or
// TestMain: ipmi_sim runs the calling executable as its helper.
package ipmisim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Binary is the simulator's program name.
const Binary = "ipmi_sim"

// LAN is what the BMC reports as its own LAN configuration (IPMI Get LAN
// Configuration Parameters, channel 1): the address an operator would
// reach it at on a real rack.
type LAN struct {
	IP      net.IP
	Netmask net.IP
	Gateway net.IP
	MAC     net.HardwareAddr
}

// Config configures one BMC. Dir is required; the rest have defaults.
type Config struct {
	// Dir holds the BMC's files (lan.conf, the emulator file, ipmi_sim's
	// persistent state, the chassis socket, console.log); it is created.
	Dir string
	// Name is the BMC's name in ipmi_sim (default "bmc").
	Name string
	// Address is the IP address the BMC listens on for IPMI over LAN and
	// for the VM chardev (default 127.0.0.1).
	Address string
	// Port is the IPMI UDP port (0 picks a free one).
	Port int
	// VMPort is the TCP port of the VM serial interface that QEMU's
	// ipmi-bmc-extern connects to (0 picks a free one).
	VMPort int
	// Username and Password are the BMC's administrator account (defaults
	// "admin" and a random password, see BMC.Password).
	Username, Password string
	// LAN is reported by Get LAN Configuration Parameters (default: IP
	// 192.0.2.10/24, MAC 52:54:00:00:00:01, no gateway).
	LAN LAN
	// Command returns the argv of the machine for a power on, given the
	// boot device IPMI last set ("pxe", "disk", "cdrom", "bios", or ""
	// when none was set). Nil makes power on fail.
	Command func(bootDevice string) []string
	// QMPSocket, when set, is the machine's QMP unix socket: a soft power
	// off (ACPI) is sent as system_powerdown there. Without it a soft
	// power off sends SIGTERM.
	QMPSocket string
	// Console receives the machine's stdout and stderr (default
	// Dir/console.log).
	Console io.Writer
	// StopTimeout bounds the wait after SIGTERM before SIGKILL (default 5 s).
	StopTimeout time.Duration
	// Helper is the argv prefix ipmi_sim runs as its chassis control and
	// LAN configuration program (default: this executable, which must call
	// RunHelper at start).
	Helper []string
	// Logger receives the fixture's logs (default slog.Default()).
	Logger *slog.Logger
}

// BMC is a running ipmi_sim and the machine it controls.
type BMC struct {
	cfg     Config
	log     *slog.Logger
	sim     *exec.Cmd
	simDone chan struct{}
	simErr  error
	chassis *chassis
	ln      net.Listener
	wg      sync.WaitGroup
	logFile *os.File
	closeMu sync.Mutex
	closed  bool
}

// Available reports whether ipmi_sim is installed, and why not.
func Available() (bool, string) {
	if _, err := exec.LookPath(Binary); err != nil {
		return false, "ipmi_sim not installed (Debian package openipmi; make deps): " + err.Error()
	}
	return true, ""
}

// Start writes the configuration and starts ipmi_sim; it returns once the
// BMC answers on its UDP port. ctx bounds only the start; Close stops it.
func Start(ctx context.Context, cfg Config) (*BMC, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ipmisim: no directory")
	}
	if cfg.Name == "" {
		cfg.Name = "bmc"
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.Username == "" {
		cfg.Username = "admin"
	}
	if cfg.Password == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.Password = hex.EncodeToString(b)
	}
	if err := validName(cfg.Username); err != nil {
		return nil, fmt.Errorf("ipmisim: username: %w", err)
	}
	if err := validName(cfg.Password); err != nil {
		return nil, fmt.Errorf("ipmisim: password: %w", err)
	}
	if cfg.LAN.IP == nil {
		cfg.LAN.IP = net.IPv4(192, 0, 2, 10)
	}
	if cfg.LAN.Netmask == nil {
		cfg.LAN.Netmask = net.IPv4(255, 255, 255, 0)
	}
	if cfg.LAN.Gateway == nil {
		cfg.LAN.Gateway = net.IPv4zero
	}
	if cfg.LAN.MAC == nil {
		cfg.LAN.MAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Helper) == 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("ipmisim: find own executable for the helper: %w", err)
		}
		cfg.Helper = []string{self}
	}
	// lan.conf quotes these in double quotes without escapes.
	for _, s := range append([]string{cfg.Dir, cfg.Name}, cfg.Helper...) {
		if strings.ContainsAny(s, "\\\"\n") {
			return nil, fmt.Errorf("ipmisim: %q: lan.conf cannot carry quotes, backslashes or newlines", s)
		}
	}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("ipmisim: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "state"), 0o700); err != nil {
		return nil, fmt.Errorf("ipmisim: %w", err)
	}
	if cfg.Port == 0 {
		if cfg.Port, err = freePort("udp", cfg.Address); err != nil {
			return nil, err
		}
	}
	if cfg.VMPort == 0 {
		if cfg.VMPort, err = freePort("tcp", cfg.Address); err != nil {
			return nil, err
		}
	}

	b := &BMC{cfg: cfg, log: cfg.Logger.With("bmc", cfg.Name), simDone: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	console := cfg.Console
	if console == nil {
		if b.logFile, err = os.OpenFile(filepath.Join(cfg.Dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return nil, fmt.Errorf("ipmisim: %w", err)
		}
		console = b.logFile
	}
	b.chassis = newChassis(cfg, console, b.log)

	sock := filepath.Join(cfg.Dir, "chassis.sock")
	_ = os.Remove(sock)
	if b.ln, err = net.Listen("unix", sock); err != nil {
		return nil, fmt.Errorf("ipmisim: chassis socket: %w", err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.chassis.serve(b.ln)
	}()

	files := map[string]string{
		"lan.conf": lanConf(cfg, sock),
		"bmc.emu":  emuFile,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("ipmisim: %w", err)
		}
	}
	simLog, err := os.OpenFile(filepath.Join(cfg.Dir, "ipmi_sim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipmisim: %w", err)
	}
	defer simLog.Close()
	b.sim = exec.Command(bin, "-n", "-c", filepath.Join(cfg.Dir, "lan.conf"),
		"-f", filepath.Join(cfg.Dir, "bmc.emu"), "-s", filepath.Join(cfg.Dir, "state"))
	b.sim.Dir = cfg.Dir
	b.sim.Stdout, b.sim.Stderr = simLog, simLog
	if err := b.sim.Start(); err != nil {
		return nil, fmt.Errorf("ipmisim: start %s: %w", bin, err)
	}
	go func() {
		b.simErr = b.sim.Wait()
		close(b.simDone)
	}()
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	b.log.Debug("ipmi_sim started", "addr", b.Addr(), "vm_port", cfg.VMPort, "dir", cfg.Dir)
	ok = true
	return b, nil
}

// waitReady pings the BMC (RMCP presence ping) until it answers.
func (b *BMC) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if err := Ping(ctx, b.Addr(), 200*time.Millisecond); err == nil {
			return nil
		}
		select {
		case <-b.simDone:
			log, _ := os.ReadFile(filepath.Join(b.cfg.Dir, "ipmi_sim.log"))
			return fmt.Errorf("ipmisim: ipmi_sim exited (%v): %s", b.simErr, strings.TrimSpace(string(log)))
		case <-ctx.Done():
			return fmt.Errorf("ipmisim: BMC at %s not answering: %w", b.Addr(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addr is the BMC's IPMI LAN address (host:port).
func (b *BMC) Addr() string {
	return net.JoinHostPort(b.cfg.Address, strconv.Itoa(b.cfg.Port))
}

// Username is the BMC's administrator user.
func (b *BMC) Username() string { return b.cfg.Username }

// Password is the administrator's password.
func (b *BMC) Password() string { return b.cfg.Password }

// DriverInfo is the driver_info of an "ipmi" node managed by this BMC.
func (b *BMC) DriverInfo() map[string]any {
	return map[string]any{
		"ipmi_address":  b.cfg.Address,
		"ipmi_port":     float64(b.cfg.Port),
		"ipmi_username": b.cfg.Username,
		"ipmi_password": b.cfg.Password,
	}
}

// QEMUArgs are the QEMU arguments that give a VM this BMC in-band: a KCS
// system interface connected through the ipmi-bmc-extern chardev to the
// simulator's VM port. QEMU reconnects when ipmi_sim restarts.
func (b *BMC) QEMUArgs() []string {
	return []string{
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=%s,port=%d,reconnect=1", b.cfg.Address, b.cfg.VMPort),
		"-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
		"-device", "isa-ipmi-kcs,bmc=bmc0",
	}
}

// PoweredOn reports whether the machine's process runs.
func (b *BMC) PoweredOn() bool { return b.chassis.running() }

// BootDevice is the boot device IPMI last set ("" when none).
func (b *BMC) BootDevice() string { return b.chassis.bootDevice() }

// Starts lists the boot device of every power on so far, in order.
func (b *BMC) Starts() []string { return b.chassis.startLog() }

// SetPower powers the machine on or off behind the BMC's back (the OS
// shutting down, a button pressed).
func (b *BMC) SetPower(on bool) error {
	if on {
		return b.chassis.powerOn()
	}
	return b.chassis.powerOff()
}

// Close stops the machine and ipmi_sim and removes the socket.
func (b *BMC) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	if b.chassis != nil {
		errs = append(errs, b.chassis.powerOff())
	}
	if b.sim != nil && b.sim.Process != nil {
		_ = b.sim.Process.Kill()
		<-b.simDone
	}
	if b.ln != nil {
		b.ln.Close()
		b.wg.Wait()
	}
	if b.logFile != nil {
		errs = append(errs, b.logFile.Close())
	}
	return errors.Join(errs...)
}

// freePort finds a port that is free now on addr.
func freePort(network, addr string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return 0, fmt.Errorf("ipmisim: pick a UDP port on %s: %w", addr, err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return 0, fmt.Errorf("ipmisim: pick a TCP port on %s: %w", addr, err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// validName refuses what lan.conf's quoting cannot carry.
func validName(s string) error {
	if len(s) > 16 {
		return errors.New("longer than 16 characters (IPMI's limit)")
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' || r == '\'' {
			return fmt.Errorf("%q: only printable ASCII without quotes or backslashes", s)
		}
	}
	return nil
}

// shellQuote quotes s for the sh -c that ipmi_sim runs its programs in.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// helperCommand is the shell command ipmi_sim runs for the helper. A
// helper built with the race detector would sleep a second at exit
// (GORACE's atexit_sleep_ms) on every chassis request: turn that off.
func helperCommand(helper []string, args ...string) string {
	parts := make([]string, 0, len(helper)+len(args)+1)
	parts = append(parts, "GORACE=atexit_sleep_ms=0")
	for _, a := range append(append([]string(nil), helper...), args...) {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// lanConf renders ipmi_sim's configuration: one BMC at IPMB 0x20 with a
// LAN channel (RMCP+ with every auth type allowed), the helper as chassis
// control and LAN configuration program, the VM serial interface on
// channel 15, and one administrator.
func lanConf(cfg Config, sock string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by rivet's ipmisim fixture.\nname \"%s\"\n\nset_working_mc 0x20\n", cfg.Name)
	b.WriteString("  startlan 1\n")
	fmt.Fprintf(&b, "    addr %s %d\n", cfg.Address, cfg.Port)
	b.WriteString("    priv_limit admin\n")
	for _, lvl := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&b, "    allowed_auths_%s md5 straight\n", lvl)
	}
	b.WriteString("    guid a123456789abcdefa123456789abcdef\n")
	lan := helperCommand(cfg.Helper, helperLAN, cfg.LAN.IP.String(), cfg.LAN.Netmask.String(),
		cfg.LAN.Gateway.String(), cfg.LAN.MAC.String())
	fmt.Fprintf(&b, "    lan_config_program \"%s\"\n", lan)
	b.WriteString("  endlan\n")
	fmt.Fprintf(&b, "  chassis_control \"%s\"\n", helperCommand(cfg.Helper, helperChassis, sock))
	fmt.Fprintf(&b, "  serial 15 %s %d codec VM\n", cfg.Address, cfg.VMPort)
	fmt.Fprintf(&b, "  user 2 true \"%s\" \"%s\" admin 10 md5 straight\n", cfg.Username, cfg.Password)
	return b.String()
}

// emuFile is the emulator's start-up commands: the BMC at IPMB 0x20
// (device id 0x23, IPMI 2.0, chassis device support), enabled.
const emuFile = `# Written by rivet's ipmisim fixture.
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`
