package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Name is the driver name nodes use.
const Name = "qemu"

// Defaults for Config fields.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultGuestHost = "10.0.2.100"
)

// ovmfCandidates are Debian's OVMF code/variable pairs, preferred first.
var ovmfCandidates = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// Config configures the driver.
type Config struct {
	// StateDir holds one directory per node: pid file, console log, OVMF
	// variables, allocated ports, boot device and prepared ramdisk.
	// Required; created if missing.
	StateDir string

	// FilesDir is the only place a node's driver_info may name files:
	// qemu_disk (which must exist) and qemu_console_log are relative to
	// it or absolute paths inside it, regular files reached without
	// leaving it. It may not hold StateDir. Zero: StateDir/files; created
	// if missing.
	FilesDir string

	// Relay is the argv prefix of the relay program that guestfwd runs
	// for each guest connection; the driver appends "127.0.0.1" and the
	// port. Its first element is looked up on PATH and made absolute; no
	// element may contain whitespace, commas or quotes (QEMU's option
	// syntax). Required, e.g. {"/usr/bin/rivet-conductor", "relay"}.
	Relay []string

	// Binary is the QEMU program. Zero: DefaultBinary, found on PATH
	// when a VM starts.
	Binary string

	// GuestHost is the address at which a guest reaches forwarded host
	// ports: an IPv4 address in QEMU user networking's 10.0.2.0/24 that
	// slirp does not use itself. Zero: DefaultGuestHost.
	GuestHost string

	// OVMFCode and OVMFVars are the UEFI firmware and its variable-store
	// template (copied once per node). Zero: Debian's ovmf package files,
	// detected when New runs; nodes in uefi mode fail to start if none
	// are found.
	OVMFCode, OVMFVars string

	// Logger receives the driver's logs. Zero: slog.Default().
	Logger *slog.Logger
}

// Driver is the qemu power driver. It implements power.Driver,
// power.RamdiskBooter and power.NodeView. Its methods are safe for
// concurrent use; calls for one node are serialized.
type Driver struct {
	cfg        Config
	files      *files
	relay      []string
	guestHost  netip.Addr
	log        *slog.Logger
	stopGrace  time.Duration
	startLimit time.Duration

	mu    sync.Mutex
	nodes map[string]*nodeEntry
}

// New checks cfg, fills in defaults and creates StateDir.
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("qemu driver: no StateDir")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: state dir %s: %w", cfg.StateDir, err)
	}
	cfg.StateDir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu driver: create state dir: %w", err)
	}
	relay, err := checkRelay(cfg.Relay)
	if err != nil {
		return nil, err
	}
	if cfg.FilesDir == "" {
		cfg.FilesDir = filepath.Join(dir, "files")
	}
	fl, err := openFiles(cfg.FilesDir, dir)
	if err != nil {
		return nil, err
	}
	cfg.FilesDir = fl.dir
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.GuestHost == "" {
		cfg.GuestHost = DefaultGuestHost
	}
	guest, err := checkGuestHost(cfg.GuestHost)
	if err != nil {
		return nil, err
	}
	if cfg.OVMFCode == "" && cfg.OVMFVars == "" {
		cfg.OVMFCode, cfg.OVMFVars = detectOVMF()
	} else if cfg.OVMFCode == "" || cfg.OVMFVars == "" {
		return nil, errors.New("qemu driver: give both OVMFCode and OVMFVars, or neither")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Driver{
		cfg:        cfg,
		files:      fl,
		relay:      relay,
		guestHost:  guest,
		log:        cfg.Logger.With("driver", Name),
		stopGrace:  5 * time.Second,
		startLimit: 30 * time.Second,
		nodes:      map[string]*nodeEntry{},
	}, nil
}

// checkRelay resolves the relay program and rejects arguments QEMU's
// guestfwd cmd: syntax cannot carry.
func checkRelay(relay []string) ([]string, error) {
	if len(relay) == 0 || relay[0] == "" {
		return nil, errors.New("qemu driver: no Relay program (guest connections to the conductor need it)")
	}
	for _, a := range relay {
		if a == "" || strings.ContainsAny(a, " \t\n,'\"\\") {
			return nil, fmt.Errorf("qemu driver: relay argument %q: empty or contains whitespace, a comma, a quote or a backslash", a)
		}
	}
	prog, err := exec.LookPath(relay[0])
	if err != nil {
		return nil, fmt.Errorf("qemu driver: relay program: %w", err)
	}
	if prog, err = filepath.Abs(prog); err != nil {
		return nil, fmt.Errorf("qemu driver: relay program: %w", err)
	}
	if strings.ContainsAny(prog, " \t\n,'\"\\") {
		return nil, fmt.Errorf("qemu driver: relay program path %q contains whitespace, a comma, a quote or a backslash", prog)
	}
	return append([]string{prog}, relay[1:]...), nil
}

// slirpNet is QEMU user networking's default network, and the addresses
// slirp itself uses in it: network, gateway/host, DNS, first DHCP lease,
// broadcast.
var (
	slirpNet      = netip.MustParsePrefix("10.0.2.0/24")
	slirpReserved = []string{"10.0.2.0", "10.0.2.2", "10.0.2.3", "10.0.2.15", "10.0.2.255"}
)

func checkGuestHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !slirpNet.Contains(a) {
		return netip.Addr{}, fmt.Errorf("qemu driver: GuestHost %q: want an IPv4 address in %s", s, slirpNet)
	}
	for _, r := range slirpReserved {
		if a == netip.MustParseAddr(r) {
			return netip.Addr{}, fmt.Errorf("qemu driver: GuestHost %s is used by QEMU user networking itself", s)
		}
	}
	return a, nil
}

func detectOVMF() (code, vars string) {
	for _, c := range ovmfCandidates {
		if fileExists(c[0]) && fileExists(c[1]) {
			return c[0], c[1]
		}
	}
	return "", ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
