// Package dhcpd is the boot services' DHCPv4 server, on
// github.com/insomniacslk/dhcp's message codec. It answers only clients
// its Decide function accepts, in one of two modes:
//
//   - Proxy (proxyDHCP, PXE 2.1 §2.2.3): another server hands out the
//     addresses. On port 67 a PXE client's DISCOVER gets an OFFER without
//     an address that carries only the boot options (option 60
//     "PXEClient" or "HTTPClient", PXE vendor options in option 43 telling
//     the client to download the file named here, next-server and boot
//     file); a REQUEST naming this server is ACKed the same way. On port
//     4011 a client's REQUEST gets an ACK with the boot options, sent back
//     to it directly.
//   - Full: this server also leases addresses from a range, with subnet
//     mask, router, DNS and lease time, from an in-memory lease table.
//
// A client that Decide refuses gets no answer and no lease.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode is how the server takes part in DHCP.
type Mode string

// Modes.
const (
	Proxy Mode = "proxy"
	Full  Mode = "full"
)

// PXEPort is the PXE boot server port (ProxyDHCP requests after the
// address is known).
const PXEPort = 4011

// Request is what Decide learns of a client.
type Request struct {
	MAC net.HardwareAddr
	// Archs are the client system architectures of option 93 (none when
	// absent).
	Archs []iana.Arch
	// VendorClass is option 60 ("PXEClient:Arch:00007:…", "HTTPClient:…").
	VendorClass string
	// UserClasses are option 77's entries ("iPXE" for iPXE).
	UserClasses []string
}

// IsPXE reports whether the client is a network boot client (PXE, UEFI
// HTTP boot or iPXE), as opposed to an OS's DHCP client.
func (r Request) IsPXE() bool {
	return strings.HasPrefix(r.VendorClass, "PXEClient") || r.IsHTTP() || r.IsIPXE()
}

// IsHTTP reports whether the client is a UEFI HTTP boot client.
func (r Request) IsHTTP() bool { return strings.HasPrefix(r.VendorClass, "HTTPClient") }

// IsIPXE reports whether the client is iPXE (user class "iPXE").
func (r Request) IsIPXE() bool {
	for _, uc := range r.UserClasses {
		if uc == "iPXE" {
			return true
		}
	}
	return false
}

// Boot is Decide's answer for an accepted client.
type Boot struct {
	// File is the boot file: a path on the TFTP server (next-server) or an
	// http(s) URL; empty gives an address only (Full mode).
	File string
	// HTTP marks an answer to a UEFI HTTP boot client (option 60
	// "HTTPClient" is echoed).
	HTTP bool
}

// Config configures the server.
type Config struct {
	Mode Mode
	// ServerIP is this server's address on the boot network: the server
	// identifier and the next-server (TFTP) address.
	ServerIP net.IP
	// RangeStart and RangeEnd bound the addresses leased in Full mode.
	RangeStart, RangeEnd net.IP
	// Netmask (default: /24), Router and DNS are given with leases.
	Netmask net.IPMask
	Router  net.IP
	DNS     []net.IP
	// LeaseTime is the lease duration (default 1 h).
	LeaseTime time.Duration
	// Decide accepts a client and chooses its boot file, or refuses it
	// (required).
	Decide func(ctx context.Context, r Request) (Boot, bool)
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server answers DHCP requests.
type Server struct {
	cfg    Config
	log    *slog.Logger
	leases *leases
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Decide == nil {
		return nil, errors.New("dhcp: no Decide function")
	}
	if cfg.ServerIP.To4() == nil {
		return nil, fmt.Errorf("dhcp: server address %v is not IPv4", cfg.ServerIP)
	}
	cfg.ServerIP = cfg.ServerIP.To4()
	if cfg.Netmask == nil {
		cfg.Netmask = net.CIDRMask(24, 32)
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	switch cfg.Mode {
	case Proxy:
	case Full:
		l, err := newLeases(cfg.RangeStart, cfg.RangeEnd)
		if err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
		if cfg.Router != nil && cfg.Router.To4() == nil {
			return nil, fmt.Errorf("dhcp: router %v is not IPv4", cfg.Router)
		}
		subnet := &net.IPNet{IP: cfg.ServerIP.Mask(cfg.Netmask), Mask: cfg.Netmask}
		if !subnet.Contains(cfg.RangeStart) || !subnet.Contains(cfg.RangeEnd) {
			return nil, fmt.Errorf("dhcp: range %v-%v is not in the server's subnet %v", cfg.RangeStart, cfg.RangeEnd, subnet)
		}
		if l.contains(cfg.ServerIP) {
			return nil, fmt.Errorf("dhcp: range %v-%v contains the server's own address", cfg.RangeStart, cfg.RangeEnd)
		}
		s.leases = l
	default:
		return nil, fmt.Errorf("dhcp: mode %q is not proxy or full", cfg.Mode)
	}
	return s, nil
}

// Leases returns the current leases (MAC → address), for tests and logs.
func (s *Server) Leases() map[string]net.IP {
	if s.leases == nil {
		return nil
	}
	return s.leases.snapshot(s.cfg.Now())
}

// Serve answers requests on the DHCP port connection (bound to port 67 on
// the boot interface, broadcast allowed) and, when pxe is not nil, on the
// PXE port connection (4011), until ctx ends; it closes both.
func (s *Server) Serve(ctx context.Context, dhcp, pxe net.PacketConn) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		dhcp.Close()
		if pxe != nil {
			pxe.Close()
		}
	})
	defer stop()
	errc := make(chan error, 2)
	run := func(conn net.PacketConn, port int) {
		defer wg.Done()
		errc <- s.serve(ctx, conn, port)
	}
	wg.Add(1)
	go run(dhcp, dhcpv4.ServerPort)
	if pxe != nil {
		wg.Add(1)
		go run(pxe, PXEPort)
	}
	wg.Wait()
	close(errc)
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(<-errc, <-errc)
}

func (s *Server) serve(ctx context.Context, conn net.PacketConn, port int) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read on port %d: %w", port, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp: malformed packet ignored", "peer", peer.String(), "error", err)
			continue
		}
		reply := s.Handle(ctx, req, port)
		if reply == nil {
			continue
		}
		dst := s.destination(req, reply, peer, port)
		if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
			s.log.Warn("dhcp: reply not sent", "mac", req.ClientHWAddr.String(), "to", dst.String(), "error", err)
		}
	}
}

// destination is where a reply goes (RFC 2131 §4.1): back through the
// relay; to a PXE-port client directly; to a client that has an address
// at that address; else broadcast.
func (s *Server) destination(req, reply *dhcpv4.DHCPv4, peer net.Addr, port int) net.Addr {
	if port == PXEPort {
		return peer
	}
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// requestOf extracts what Decide looks at.
func requestOf(m *dhcpv4.DHCPv4) Request {
	return Request{
		MAC:         m.ClientHWAddr,
		Archs:       m.ClientArch(),
		VendorClass: m.ClassIdentifier(),
		UserClasses: m.UserClass(),
	}
}

// Handle answers one message received on port (67 or PXEPort); nil means
// no answer.
func (s *Server) Handle(ctx context.Context, m *dhcpv4.DHCPv4, port int) *dhcpv4.DHCPv4 {
	if m.OpCode != dhcpv4.OpcodeBootRequest || m.HWType != iana.HWTypeEthernet || len(m.ClientHWAddr) != 6 {
		return nil
	}
	mac := m.ClientHWAddr.String()
	r := requestOf(m)
	typ := m.MessageType()
	log := s.log.With("mac", mac, "type", typ.String(), "port", port)
	if s.cfg.Mode == Proxy && !r.IsPXE() {
		// Not a network boot client: the network's DHCP server's business.
		log.Debug("dhcp: not a PXE client, ignored (proxy mode)")
		return nil
	}
	boot, ok := s.cfg.Decide(ctx, r)
	if !ok {
		return nil
	}
	if s.cfg.Mode == Proxy || port == PXEPort {
		return s.proxyReply(m, r, boot, log)
	}
	return s.fullReply(m, r, boot, log)
}

// proxyReply is the boot-options-only answer of proxy mode and of the PXE
// port.
func (s *Server) proxyReply(m *dhcpv4.DHCPv4, r Request, boot Boot, log *slog.Logger) *dhcpv4.DHCPv4 {
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		// On port 67 a REQUEST is for the server the client chose; answer
		// only when that is this one (some PXE ROMs select the proxy).
		if sid := serverID(m); m.MessageType() == dhcpv4.MessageTypeRequest && sid != nil && !sid.Equal(s.cfg.ServerIP) {
			return nil
		}
		typ = dhcpv4.MessageTypeAck
	default:
		return nil
	}
	if boot.File == "" {
		return nil
	}
	reply, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(typ))
	if err != nil {
		log.Warn("dhcp: building reply failed", "error", err)
		return nil
	}
	reply.YourIPAddr = net.IPv4zero
	s.bootOptions(reply, m, r, boot, true)
	log.Info("dhcp: proxy boot answer", "reply", typ.String(), "file", boot.File)
	return reply
}

// fullReply leases an address (Full mode, port 67).
func (s *Server) fullReply(m *dhcpv4.DHCPv4, r Request, boot Boot, log *slog.Logger) *dhcpv4.DHCPv4 {
	now := s.cfg.Now()
	mac := m.ClientHWAddr.String()
	var typ dhcpv4.MessageType
	var ip net.IP
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		ip = s.leases.offer(mac, m.RequestedIPAddress(), now)
		if ip == nil {
			log.Warn("dhcp: no free address in the range", "range", fmt.Sprintf("%v-%v", s.cfg.RangeStart, s.cfg.RangeEnd))
			return nil
		}
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		sid := serverID(m)
		if sid != nil && !sid.Equal(s.cfg.ServerIP) {
			// The client took another server's offer.
			s.leases.release(mac, nil)
			return nil
		}
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr // renewing or rebinding
		}
		if want == nil || want.IsUnspecified() {
			return nil
		}
		if !s.leases.contains(want) {
			if sid == nil {
				// INIT-REBOOT with an address from elsewhere: RFC 2131
				// says NAK when it is wrong for this network.
				subnet := &net.IPNet{IP: s.cfg.ServerIP.Mask(s.cfg.Netmask), Mask: s.cfg.Netmask}
				if subnet.Contains(want) {
					return nil
				}
			}
			return s.nak(m, log, "address outside the range")
		}
		if !s.leases.bind(mac, want, now, s.cfg.LeaseTime) {
			return s.nak(m, log, "address leased to another client")
		}
		ip, typ = want, dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeRelease:
		s.leases.release(mac, m.ClientIPAddr)
		log.Info("dhcp: lease released", "ip", m.ClientIPAddr.String())
		return nil
	case dhcpv4.MessageTypeDecline:
		s.leases.decline(m.RequestedIPAddress(), now, s.cfg.LeaseTime)
		log.Warn("dhcp: address declined by the client (in use?)", "ip", fmt.Sprint(m.RequestedIPAddress()))
		return nil
	default:
		return nil
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(ip),
		dhcpv4.WithNetmask(s.cfg.Netmask),
		dhcpv4.WithLeaseTime(uint32(s.cfg.LeaseTime / time.Second)),
	}
	if s.cfg.Router != nil {
		mods = append(mods, dhcpv4.WithRouter(s.cfg.Router))
	}
	if len(s.cfg.DNS) > 0 {
		mods = append(mods, dhcpv4.WithDNS(s.cfg.DNS...))
	}
	reply, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		log.Warn("dhcp: building reply failed", "error", err)
		return nil
	}
	reply.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
	if boot.File != "" {
		s.bootOptions(reply, m, r, boot, false)
	}
	log.Info("dhcp: lease", "reply", typ.String(), "ip", ip.String(), "file", boot.File)
	return reply
}

func (s *Server) nak(m *dhcpv4.DHCPv4, log *slog.Logger, why string) *dhcpv4.DHCPv4 {
	reply, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak))
	if err != nil {
		return nil
	}
	reply.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
	reply.UpdateOption(dhcpv4.OptMessage(why))
	log.Info("dhcp: NAK", "requested", fmt.Sprint(m.RequestedIPAddress()), "reason", why)
	return reply
}

// pxeDiscoveryControl is PXE vendor sub-option 6 with bit 3 set: "a boot
// file name is in this offer: download it, skip boot server discovery".
var pxeVendorOptions = []byte{6, 1, 0x08, 255}

// bootOptions adds the boot file and the PXE identification to a reply.
func (s *Server) bootOptions(reply, req *dhcpv4.DHCPv4, r Request, boot Boot, proxy bool) {
	reply.ServerIPAddr = s.cfg.ServerIP
	reply.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP))
	if len(boot.File) < 128 {
		reply.BootFileName = boot.File
	}
	reply.UpdateOption(dhcpv4.OptBootFileName(boot.File))
	switch {
	case boot.HTTP:
		// UEFI HTTP boot: the offer must identify itself as HTTPClient.
		reply.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	case proxy:
		reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
	}
	// PXE: the client's machine identifier (option 97) is echoed.
	if uuid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
}

func serverID(m *dhcpv4.DHCPv4) net.IP {
	if ip := m.ServerIdentifier(); ip != nil && !ip.IsUnspecified() {
		return ip
	}
	return nil
}
