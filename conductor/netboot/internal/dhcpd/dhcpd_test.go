package dhcpd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	serverIP = net.IPv4(192, 0, 2, 1).To4()
	knownMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	otherMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}
	strange  = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x99}
)

// decideKnown accepts the two known MACs and boots file "boot.file".
func decideKnown(_ context.Context, r Request) (Boot, bool) {
	if !bytes.Equal(r.MAC, knownMAC) && !bytes.Equal(r.MAC, otherMAC) {
		return Boot{}, false
	}
	if !r.IsPXE() {
		return Boot{}, true
	}
	return Boot{File: "boot.file", HTTP: r.IsHTTP()}, true
}

func newServer(t *testing.T, mode Mode, now *time.Time) *Server {
	t.Helper()
	cfg := Config{Mode: mode, ServerIP: serverIP, Decide: decideKnown,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mode == Full {
		cfg.RangeStart, cfg.RangeEnd = net.IPv4(192, 0, 2, 100), net.IPv4(192, 0, 2, 101)
		cfg.Router = net.IPv4(192, 0, 2, 254)
		cfg.DNS = []net.IP{net.IPv4(192, 0, 2, 53)}
		cfg.LeaseTime = 10 * time.Minute
	}
	if now != nil {
		cfg.Now = func() time.Time { return *now }
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pxeMessage(t *testing.T, typ dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	all := append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
	}, mods...)
	m, err := dhcpv4.New(all...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestProxyOffersBootOptionsOnly(t *testing.T) {
	s := newServer(t, Proxy, nil)
	ctx := context.Background()
	reply := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeDiscover, knownMAC), 67)
	if reply == nil {
		t.Fatal("no offer for a known PXE client")
	}
	if reply.MessageType() != dhcpv4.MessageTypeOffer || !reply.YourIPAddr.IsUnspecified() {
		t.Fatalf("offer %v with address %v; want an OFFER without an address", reply.MessageType(), reply.YourIPAddr)
	}
	if !reply.ServerIPAddr.Equal(serverIP) || !reply.ServerIdentifier().Equal(serverIP) {
		t.Errorf("next-server %v, server id %v; want %v", reply.ServerIPAddr, reply.ServerIdentifier(), serverIP)
	}
	if reply.BootFileName != "boot.file" || reply.ClassIdentifier() != "PXEClient" {
		t.Errorf("file %q, class %q", reply.BootFileName, reply.ClassIdentifier())
	}
	if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, []byte{6, 1, 8, 255}) {
		t.Errorf("PXE vendor options = %x", got)
	}
	if len(reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) != 17 {
		t.Error("client UUID (option 97) not echoed")
	}
	if reply.Options.Has(dhcpv4.OptionSubnetMask) || reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Error("proxy offer carries address options")
	}
	// PXE port 4011: a REQUEST is ACKed with the same boot options.
	req := pxeMessage(t, dhcpv4.MessageTypeRequest, knownMAC, dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 50)))
	ack := s.Handle(ctx, req, PXEPort)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "boot.file" {
		t.Fatalf("PXE port answer = %v", ack)
	}
	peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 50), Port: 68}
	if dst := s.destination(req, ack, peer, PXEPort); dst.String() != peer.String() {
		t.Errorf("PXE port reply goes to %v, want the client %v", dst, peer)
	}
	// Port 67: a REQUEST for another server is not ours; one naming us is.
	if r := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeRequest, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 9)))), 67); r != nil {
		t.Errorf("answered a REQUEST meant for another server: %v", r)
	}
	if r := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeRequest, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))), 67); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("REQUEST naming this server = %v, want an ACK", r)
	}
}

func TestProxyIgnores(t *testing.T) {
	s := newServer(t, Proxy, nil)
	ctx := context.Background()
	if r := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeDiscover, strange), 67); r != nil {
		t.Errorf("answered an unknown MAC: %v", r)
	}
	plain, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(knownMAC))
	if r := s.Handle(ctx, plain, 67); r != nil {
		t.Errorf("proxy answered a plain DHCP client: %v", r)
	}
	reply := pxeMessage(t, dhcpv4.MessageTypeOffer, knownMAC)
	reply.OpCode = dhcpv4.OpcodeBootReply
	if r := s.Handle(ctx, reply, 67); r != nil {
		t.Errorf("answered a BOOTREPLY: %v", r)
	}
}

func TestHTTPClientGetsHTTPClientClass(t *testing.T) {
	s := newServer(t, Proxy, nil)
	m := pxeMessage(t, dhcpv4.MessageTypeDiscover, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)))
	r := s.Handle(context.Background(), m, 67)
	if r == nil || r.ClassIdentifier() != "HTTPClient" {
		t.Fatalf("HTTP boot answer = %v", r)
	}
	if r.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
		t.Error("HTTP boot answer carries PXE vendor options")
	}
}

func TestFullLeases(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	s := newServer(t, Full, &now)
	ctx := context.Background()
	offer := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeDiscover, knownMAC), 67)
	if offer == nil || !offer.YourIPAddr.Equal(net.IPv4(192, 0, 2, 100)) {
		t.Fatalf("offer = %v", offer)
	}
	if !bytes.Equal(offer.SubnetMask(), net.CIDRMask(24, 32)) || !offer.Router()[0].Equal(net.IPv4(192, 0, 2, 254)) ||
		!offer.DNS()[0].Equal(net.IPv4(192, 0, 2, 53)) || offer.IPAddressLeaseTime(0) != 10*time.Minute {
		t.Errorf("offer options: mask %v router %v dns %v lease %v", offer.SubnetMask(), offer.Router(), offer.DNS(), offer.IPAddressLeaseTime(0))
	}
	if offer.BootFileName != "boot.file" || offer.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
		t.Errorf("full-mode boot options: file %q, option 43 %v", offer.BootFileName, offer.Options.Has(dhcpv4.OptionVendorSpecificInformation))
	}
	// An unknown MAC gets nothing and no lease.
	if r := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeDiscover, strange), 67); r != nil {
		t.Fatalf("offer to an unknown MAC: %v", r)
	}
	// The second client gets the other address; the range is then full.
	offer2 := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeDiscover, otherMAC), 67)
	if offer2 == nil || !offer2.YourIPAddr.Equal(net.IPv4(192, 0, 2, 101)) {
		t.Fatalf("second offer = %v", offer2)
	}
	ack := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeRequest, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr))), 67)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("ack = %v", ack)
	}
	// Asking for the other client's address is refused.
	nak := s.Handle(ctx, pxeMessage(t, dhcpv4.MessageTypeRequest, knownMAC,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 101)))), 67)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request for a taken address = %v, want NAK", nak)
	}
	leases := s.Leases()
	if len(leases) != 2 || !leases[knownMAC.String()].Equal(net.IPv4(192, 0, 2, 100)) {
		t.Fatalf("leases = %v", leases)
	}
	if _, ok := leases[strange.String()]; ok {
		t.Fatal("an unknown MAC holds a lease")
	}
	// The unbound offer expires; the bound lease lasts its lease time.
	now = now.Add(2 * time.Minute)
	if l := s.Leases(); len(l) != 1 {
		t.Fatalf("after the offer hold: leases = %v", l)
	}
	// Release frees the address.
	rel := pxeMessage(t, dhcpv4.MessageTypeRelease, knownMAC, dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 100)))
	if r := s.Handle(ctx, rel, 67); r != nil {
		t.Fatalf("answered a RELEASE: %v", r)
	}
	if l := s.Leases(); len(l) != 0 {
		t.Fatalf("after release: leases = %v", l)
	}
}

func TestFullPlainClientGetsAddressOnly(t *testing.T) {
	s := newServer(t, Full, nil)
	m, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(knownMAC))
	r := s.Handle(context.Background(), m, 67)
	if r == nil || r.YourIPAddr.IsUnspecified() {
		t.Fatalf("offer = %v", r)
	}
	if r.BootFileName != "" || r.Options.Has(dhcpv4.OptionBootfileName) {
		t.Errorf("a plain client got boot file %q", r.BootFileName)
	}
}

func TestFullConfigChecks(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no range":         {},
		"reversed":         {RangeStart: net.IPv4(192, 0, 2, 20), RangeEnd: net.IPv4(192, 0, 2, 10)},
		"other subnet":     {RangeStart: net.IPv4(10, 0, 0, 10), RangeEnd: net.IPv4(10, 0, 0, 20)},
		"holds the server": {RangeStart: net.IPv4(192, 0, 2, 1), RangeEnd: net.IPv4(192, 0, 2, 20)},
		"huge":             {RangeStart: net.IPv4(192, 0, 0, 1), RangeEnd: net.IPv4(192, 2, 0, 1), Netmask: net.CIDRMask(8, 32)},
	} {
		cfg.Mode, cfg.ServerIP, cfg.Decide = Full, serverIP, decideKnown
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Mode: "relay", ServerIP: serverIP, Decide: decideKnown}); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestDestination(t *testing.T) {
	s := newServer(t, Proxy, nil)
	req, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	rep, _ := dhcpv4.NewReplyFromRequest(req)
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	if d := s.destination(req, rep, peer, 67); d.String() != "255.255.255.255:68" {
		t.Errorf("no address yet: %v", d)
	}
	req.GatewayIPAddr = net.IPv4(10, 0, 0, 1)
	if d := s.destination(req, rep, peer, 67); d.String() != "10.0.0.1:67" {
		t.Errorf("relayed: %v", d)
	}
}
