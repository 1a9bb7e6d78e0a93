// Package netboot is the conductor's network boot services on one
// interface: DHCP (proxyDHCP beside an existing DHCP server, or a full
// DHCP server for an isolated provisioning network), TFTP of the iPXE
// binaries, and the iPXE binaries over HTTP for UEFI HTTP boot. It
// answers only MACs of enrolled ports whose node is in a state that boots
// the deploy ramdisk from the network (NeedsNetworkBoot); others are
// ignored, and unknown MACs get no answer and no lease.
//
// What a client gets depends on what it is (docs/netboot.md):
//
//	BIOS PXE (option 93 = 0, or none)       TFTP  BIOSFile (undionly.kpxe)
//	UEFI PXE (option 93 = 7 or 9)           TFTP  UEFIFile (snponly.efi)
//	UEFI HTTP boot (93 = 16, HTTPClient)    HTTP  <HTTPURL>/boot/firmware/<UEFIFile>
//	iPXE (user class "iPXE")                HTTP  <HTTPURL>/boot/<mac>.ipxe (conductor/boot)
//	an OS's DHCP client (full mode only)    an address, no boot file
package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/netboot/internal/dhcpd"
	"github.com/rivetmetal/rivet/conductor/netboot/internal/tftpd"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Nodes finds the node owning a port's MAC (the store implements it).
type Nodes interface {
	// NodeByMACs returns the node owning ports with any of the addresses
	// (errdefs.ErrNotFound if none).
	NodeByMACs(ctx context.Context, macs []string) (*store.Node, error)
}

// networkBoot are the provision states in which the conductor boots a
// node's deploy ramdisk from the network.
var networkBoot = map[statemachine.State]bool{
	statemachine.Deploying: true, statemachine.DeployWait: true,
	statemachine.Cleaning: true, statemachine.CleanWait: true,
	statemachine.Inspecting: true, statemachine.InspectWait: true,
	statemachine.Rescuing: true, statemachine.RescueWait: true,
	statemachine.Servicing: true, statemachine.ServiceWait: true,
}

// NeedsNetworkBoot reports whether a node in state s boots the deploy
// ramdisk from the network: deploying, cleaning, inspecting, rescuing,
// servicing and their wait states.
func NeedsNetworkBoot(s statemachine.State) bool { return networkBoot[s] }

// DHCPMode selects the DHCP role.
type DHCPMode = dhcpd.Mode

// DHCP modes.
const (
	ProxyDHCP = dhcpd.Proxy
	FullDHCP  = dhcpd.Full
)

// Defaults.
const (
	DefaultIPXEDir  = "/usr/lib/ipxe"
	DefaultBIOSFile = "undionly.kpxe"
	DefaultUEFIFile = "snponly.efi"
)

// Config configures the boot services. Interface, ServerIP, HTTPURL and
// Nodes are required.
type Config struct {
	// Interface is the boot network interface (--boot-interface).
	Interface string
	// ServerIP is the conductor's IPv4 address on that interface: DHCP
	// server identifier and TFTP server (default: the interface's first
	// IPv4 address).
	ServerIP net.IP
	// HTTPURL is the conductor's API URL as nodes on the boot network
	// reach it (iPXE scripts and HTTP boot files are under /boot/).
	HTTPURL string
	// Mode is ProxyDHCP (default) or FullDHCP.
	Mode DHCPMode
	// RangeStart and RangeEnd are FullDHCP's lease range (required there).
	RangeStart, RangeEnd net.IP
	// Netmask (default: the interface's), Router, DNS and LeaseTime
	// (default 1 h) go with FullDHCP leases.
	Netmask   net.IPMask
	Router    net.IP
	DNS       []net.IP
	LeaseTime time.Duration
	// IPXEDir holds the iPXE binaries served over TFTP and HTTP (default
	// DefaultIPXEDir, Debian's ipxe package).
	IPXEDir string
	// BIOSFile and UEFIFile are the iPXE binaries for BIOS and UEFI
	// firmware (defaults DefaultBIOSFile, DefaultUEFIFile). Debian's
	// ipxe.efi is a symlink out of /usr/lib/ipxe, which the path
	// confinement refuses: use snponly.efi or a directory with a real
	// ipxe.efi.
	BIOSFile, UEFIFile string
	// NoTFTP turns the TFTP server off (HTTP boot and iPXE only).
	NoTFTP bool
	// Nodes finds nodes by MAC.
	Nodes Nodes
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
}

// Service is the configured boot services.
type Service struct {
	cfg      Config
	log      *slog.Logger
	dhcp     *dhcpd.Server
	firmware *Firmware
}

// New checks cfg and prepares the services; Run serves them.
func New(cfg Config) (*Service, error) {
	if cfg.Nodes == nil {
		return nil, errors.New("netboot: no node lookup")
	}
	if cfg.Interface == "" {
		return nil, errors.New("netboot: no boot interface")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Mode == "" {
		cfg.Mode = ProxyDHCP
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = DefaultIPXEDir
	}
	if cfg.BIOSFile == "" {
		cfg.BIOSFile = DefaultBIOSFile
	}
	if cfg.UEFIFile == "" {
		cfg.UEFIFile = DefaultUEFIFile
	}
	u, err := url.Parse(cfg.HTTPURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("netboot: HTTP URL %q is not an http(s) URL", cfg.HTTPURL)
	}
	cfg.HTTPURL = strings.TrimSuffix(cfg.HTTPURL, "/")
	if cfg.ServerIP == nil || cfg.Netmask == nil {
		ip, mask, err := interfaceAddr(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("netboot: %w", err)
		}
		if cfg.ServerIP == nil {
			cfg.ServerIP = ip
		}
		if cfg.Netmask == nil {
			cfg.Netmask = mask
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("boot_interface", cfg.Interface)}
	if s.firmware, err = NewFirmware(cfg.IPXEDir, s.log); err != nil {
		return nil, err
	}
	for _, f := range []string{cfg.BIOSFile, cfg.UEFIFile} {
		fh, err := s.firmware.files.Open(f)
		if err != nil {
			s.firmware.Close()
			return nil, fmt.Errorf("netboot: boot file %s in %s: %w", f, cfg.IPXEDir, err)
		}
		fh.Close()
	}
	s.dhcp, err = dhcpd.New(dhcpd.Config{
		Mode: cfg.Mode, ServerIP: cfg.ServerIP,
		RangeStart: cfg.RangeStart, RangeEnd: cfg.RangeEnd,
		Netmask: cfg.Netmask, Router: cfg.Router, DNS: cfg.DNS, LeaseTime: cfg.LeaseTime,
		Decide: s.decide, Logger: s.log,
	})
	if err != nil {
		s.firmware.Close()
		return nil, fmt.Errorf("netboot: %w", err)
	}
	return s, nil
}

// interfaceAddr returns an interface's first IPv4 address and its mask.
func interfaceAddr(name string) (net.IP, net.IPMask, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("boot interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("boot interface %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), n.Mask, nil
		}
	}
	return nil, nil, fmt.Errorf("boot interface %s has no IPv4 address", name)
}

// Firmware serves the iPXE binaries over HTTP (UEFI HTTP boot); the
// conductor mounts it at /boot/firmware/.
func (s *Service) Firmware() http.Handler { return s.firmware }

// Leases returns FullDHCP's current leases (MAC → address).
func (s *Service) Leases() map[string]net.IP { return s.dhcp.Leases() }

// ServerIP is the address the services answer from.
func (s *Service) ServerIP() net.IP { return s.cfg.ServerIP }

// Listeners are the boot services' open sockets.
type Listeners struct {
	dhcp, pxe *net.UDPConn
	tftp      *net.UDPConn
}

// Close closes the sockets (Serve does, too).
func (l *Listeners) Close() {
	for _, c := range []*net.UDPConn{l.dhcp, l.pxe, l.tftp} {
		if c != nil {
			c.Close()
		}
	}
}

// Listen opens the sockets on the boot interface: DHCP on 67 and 4011
// (bound to the interface, broadcast allowed) and TFTP on ServerIP:69.
func (s *Service) Listen() (*Listeners, error) {
	var l Listeners
	var err error
	if l.dhcp, err = server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort}); err != nil {
		return nil, fmt.Errorf("netboot: DHCP port 67 on %s: %w", s.cfg.Interface, err)
	}
	if l.pxe, err = server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: dhcpd.PXEPort}); err != nil {
		l.Close()
		return nil, fmt.Errorf("netboot: PXE port %d on %s: %w", dhcpd.PXEPort, s.cfg.Interface, err)
	}
	if !s.cfg.NoTFTP {
		if l.tftp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: s.cfg.ServerIP, Port: 69}); err != nil {
			l.Close()
			return nil, fmt.Errorf("netboot: TFTP port 69 on %s: %w", s.cfg.ServerIP, err)
		}
	}
	return &l, nil
}

// Run listens and serves until ctx ends, then closes the service.
func (s *Service) Run(ctx context.Context) error {
	defer s.Close()
	l, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// Close closes the iPXE directory (the Firmware handler then serves
// nothing). Call it once Serve has returned.
func (s *Service) Close() { s.firmware.Close() }

// Serve serves on l until ctx ends, then closes l.
func (s *Service) Serve(ctx context.Context, l *Listeners) error {
	defer l.Close()
	s.log.Info("boot services serving", "dhcp_mode", string(s.cfg.Mode), "server_ip", s.cfg.ServerIP.String(),
		"ipxe_dir", s.cfg.IPXEDir, "tftp", l.tftp != nil, "http_url", s.cfg.HTTPURL)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.dhcp.Serve(ctx, l.dhcp, l.pxe); err != nil {
			errc <- err
			cancel()
		}
	}()
	if l.tftp != nil {
		srv := tftpd.New(s.firmware.files, s.log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l.tftp); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
		<-ctx.Done()
		srv.Shutdown()
		// Shutdown may have run before Serve took the socket: closing it
		// ends Serve either way.
		l.tftp.Close()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// decide is the DHCP policy: only nodes that need a network boot, and the
// boot file for what the client is.
func (s *Service) decide(ctx context.Context, r dhcpd.Request) (dhcpd.Boot, bool) {
	mac := r.MAC.String()
	log := s.log.With("mac", mac)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := s.cfg.Nodes.NodeByMACs(ctx, []string{mac})
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			log.Debug("DHCP from an unknown MAC ignored")
		} else {
			log.Warn("DHCP: node lookup failed; not answering", "error", err)
		}
		return dhcpd.Boot{}, false
	}
	if !NeedsNetworkBoot(n.ProvisionState) {
		log.Debug("DHCP from a node that is not booting from the network ignored",
			"node", n.UUID, "provision_state", string(n.ProvisionState))
		return dhcpd.Boot{}, false
	}
	boot, ok := s.bootFile(r)
	if !ok {
		log.Info("DHCP from an unsupported client architecture ignored", "node", n.UUID, "arch", fmt.Sprint(r.Archs))
		return dhcpd.Boot{}, false
	}
	log.Debug("DHCP answer", "node", n.UUID, "provision_state", string(n.ProvisionState), "file", boot.File)
	return boot, true
}

// bootFile chooses the boot file for a client (see the package comment).
func (s *Service) bootFile(r dhcpd.Request) (dhcpd.Boot, bool) {
	switch {
	case r.IsIPXE():
		return dhcpd.Boot{File: s.cfg.HTTPURL + "/boot/" + r.MAC.String() + ".ipxe"}, true
	case r.IsHTTP() || hasArch(r.Archs, iana.EFI_X86_64_HTTP):
		return dhcpd.Boot{File: s.cfg.HTTPURL + "/boot/firmware/" + s.cfg.UEFIFile, HTTP: true}, true
	case hasArch(r.Archs, iana.EFI_X86_64) || hasArch(r.Archs, iana.EFI_BC):
		return dhcpd.Boot{File: s.cfg.UEFIFile}, true
	case hasArch(r.Archs, iana.INTEL_X86PC) || len(r.Archs) == 0 && r.IsPXE():
		return dhcpd.Boot{File: s.cfg.BIOSFile}, true
	case len(r.Archs) == 0:
		// An OS's DHCP client (the deploy ramdisk's): an address only.
		return dhcpd.Boot{}, true
	default:
		return dhcpd.Boot{}, false
	}
}

func hasArch(archs []iana.Arch, a iana.Arch) bool {
	for _, x := range archs {
		if x == a {
			return true
		}
	}
	return false
}
