package lldp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"unicode/utf8"

	"github.com/rivetmetal/rivet/wire"
)

// Limits on the input, whatever it says about itself.
const (
	// MaxValueLen is the longest TLV value LLDP can carry (a 9-bit
	// length); a longer one is malformed, as Ironic checks.
	MaxValueLen = 511
	// MaxTLVs is the most TLVs read for one interface (the agent keeps at
	// most 512 from one frame); the rest are reported and ignored.
	MaxTLVs = 1024
	// MaxInterfaces is the most interfaces ParseInterfaces reads, as
	// Ironic's hook; the rest are reported and ignored.
	MaxInterfaces = 64
)

// ErrMalformed wraps every problem Parse reports: a TLV that could not be
// read and was skipped.
var ErrMalformed = errors.New("malformed LLDP TLV")

// TLV types of the basic management set that are read.
const (
	typeChassisID   = 1
	typePortID      = 2
	typePortDesc    = 4
	typeSysName     = 5
	typeSysDesc     = 6
	typeSysCaps     = 7
	typeMgmtAddress = 8
	typeOrg         = 127
)

// Organizationally unique identifiers of the TLV sets that are read.
var (
	oui8021 = [3]byte{0x00, 0x80, 0xc2}
	oui8023 = [3]byte{0x00, 0x12, 0x0f}
)

// ParseInterfaces is Ironic's parse_lldp inspection hook: for each of the
// inventory's interfaces (the first MaxInterfaces), the TLVs that lldpRaw
// (the "lldp" collector's lldp_raw, may be nil) holds for it or, when it
// holds none, the interface's own lldp list, parsed. Only interfaces for
// which something was parsed are in the map; nil when there are none, and
// parsed_lldp is then left out. Problems are returned, each naming its
// interface, for the caller to log; none stops the parse.
func ParseInterfaces(ifaces []wire.NetworkInterface, lldpRaw map[string][]wire.LLDPTLV) (map[string]Neighbor, []error) {
	var problems []error
	if len(ifaces) > MaxInterfaces {
		problems = append(problems, fmt.Errorf("%d interfaces; only the first %d are read", len(ifaces), MaxInterfaces))
		ifaces = ifaces[:MaxInterfaces]
	}
	var out map[string]Neighbor
	for _, it := range ifaces {
		tlvs := lldpRaw[it.Name]
		if len(tlvs) == 0 {
			tlvs = it.LLDP
		}
		n, errs := Parse(tlvs)
		for _, err := range errs {
			problems = append(problems, fmt.Errorf("interface %s: %w", it.Name, err))
		}
		if n.IsZero() {
			continue
		}
		if out == nil {
			out = map[string]Neighbor{}
		}
		out[it.Name] = n
	}
	return out, problems
}

// Parse reads one interface's TLVs. TLVs of types it does not read are
// ignored; a TLV it reads but that is malformed (not hex, too long,
// truncated, an unknown subtype or address family, text that is not
// UTF-8, an unknown MAU type) is skipped and reported, wrapped in
// ErrMalformed.
func Parse(tlvs []wire.LLDPTLV) (Neighbor, []error) {
	var p parser
	for i, t := range tlvs {
		if i == MaxTLVs {
			p.problems = append(p.problems, fmt.Errorf("%w: %d TLVs; only the first %d are read", ErrMalformed, len(tlvs), MaxTLVs))
			break
		}
		switch t.Type {
		case typeChassisID, typePortID, typePortDesc, typeSysName, typeSysDesc, typeSysCaps, typeMgmtAddress, typeOrg:
		default:
			continue // the TTL, End, and types Ironic does not read either
		}
		if len(t.Value) > 2*MaxValueLen {
			p.problem(i, t.Type, fmt.Errorf("%d hex digits: longer than %d bytes", len(t.Value), MaxValueLen))
			continue
		}
		b, err := hex.DecodeString(t.Value)
		if err != nil {
			p.problem(i, t.Type, fmt.Errorf("value is not hexadecimal: %w", err))
			continue
		}
		if err := p.tlv(t.Type, b); err != nil {
			p.problem(i, t.Type, err)
		}
	}
	return p.n, p.problems
}

// parser accumulates one interface's Neighbor.
type parser struct {
	n        Neighbor
	problems []error
}

func (p *parser) problem(i, typ int, err error) {
	p.problems = append(p.problems, fmt.Errorf("%w: TLV %d (type %d): %w", ErrMalformed, i+1, typ, err))
}

func (p *parser) tlv(typ int, b []byte) error {
	switch typ {
	case typeChassisID:
		return p.id(&p.n.ChassisID, b, chassisSubtypes)
	case typePortID:
		return p.id(&p.n.PortID, b, portSubtypes)
	case typePortDesc:
		return setText(&p.n.PortDescription, b)
	case typeSysName:
		return setText(&p.n.SystemName, b)
	case typeSysDesc:
		return setText(&p.n.SystemDescription, b)
	case typeSysCaps:
		if len(b) != 4 {
			return fmt.Errorf("system capabilities: %d bytes, want 4", len(b))
		}
		if p.n.CapabilitiesSupport == nil {
			p.n.CapabilitiesSupport = capabilities(binary.BigEndian.Uint16(b))
			p.n.CapabilitiesEnabled = capabilities(binary.BigEndian.Uint16(b[2:]))
		}
		return nil
	case typeMgmtAddress:
		// Address string length, family, address; the interface
		// numbering and OID that follow are not read.
		if len(b) < 2 {
			return fmt.Errorf("management address: %d bytes", len(b))
		}
		a, err := address(b[1:])
		if err != nil {
			return fmt.Errorf("management address: %w", err)
		}
		p.n.MgmtAddresses = append(p.n.MgmtAddresses, a)
		return nil
	case typeOrg:
		if len(b) < 4 {
			return fmt.Errorf("organizationally specific: %d bytes, want at least 4", len(b))
		}
		oui, sub, data := [3]byte(b[:3]), b[3], b[4:]
		switch oui {
		case oui8021:
			return p.dot1(sub, data)
		case oui8023:
			return p.dot3(sub, data)
		}
		return nil // another organisation's TLV (LLDP-MED, a vendor's)
	}
	return nil
}

// How an ID subtype's value reads.
type idKind int

const (
	idText idKind = iota + 1
	idMAC
	idAddress
)

// The chassis and port ID subtypes Ironic reads (IEEE 802.1AB 8.5.2.2
// and 8.5.3.2); port ID 6, the agent circuit ID, is not among them.
var (
	chassisSubtypes = map[byte]idKind{1: idText, 2: idText, 3: idText, 4: idMAC, 5: idAddress, 6: idText, 7: idText}
	portSubtypes    = map[byte]idKind{1: idText, 2: idText, 3: idMAC, 4: idAddress, 5: idText, 7: idText}
)

// id reads a chassis or port ID: a subtype byte, then the ID.
func (p *parser) id(dst **string, b []byte, subtypes map[byte]idKind) error {
	if len(b) < 1 {
		return errors.New("no subtype")
	}
	v := b[1:]
	switch subtypes[b[0]] {
	case idText:
		return setText(dst, v)
	case idMAC:
		m, err := mac(v)
		if err != nil {
			return err
		}
		setString(dst, m)
		return nil
	case idAddress:
		a, err := address(v)
		if err != nil {
			return err
		}
		setString(dst, a)
		return nil
	}
	return fmt.Errorf("unknown ID subtype %d", b[0])
}

// dot1 reads an IEEE 802.1 (802.1Q) TLV.
func (p *parser) dot1(sub byte, b []byte) error {
	switch sub {
	case 1: // Port VLAN ID
		if len(b) < 2 {
			return fmt.Errorf("802.1 port VLAN ID: %d bytes", len(b))
		}
		setInt(&p.n.PortUntaggedVLANID, int(binary.BigEndian.Uint16(b)))
	case 2: // Port and Protocol VLAN ID
		if len(b) != 3 {
			return fmt.Errorf("802.1 port and protocol VLAN ID: %d bytes, want 3", len(b))
		}
		setBool(&p.n.PortProtocolVLANEnabled, b[0]&0x04 != 0)
		setBool(&p.n.PortProtocolVLANSupport, b[0]&0x02 != 0)
		p.n.PortProtocolVLANIDs = append(p.n.PortProtocolVLANIDs, int(binary.BigEndian.Uint16(b[1:])))
	case 3: // VLAN Name
		if len(b) < 3 || len(b)-3 < int(b[2]) {
			return fmt.Errorf("802.1 VLAN name: %d bytes", len(b))
		}
		// The name is read as a padded string: trailing NULs dropped.
		name := b[3 : 3+int(b[2])]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		if !utf8.Valid(name) {
			return errors.New("802.1 VLAN name: not UTF-8")
		}
		p.n.PortVLANs = append(p.n.PortVLANs, VLAN{ID: int(binary.BigEndian.Uint16(b)), Name: string(name)})
	case 4: // Protocol Identity
		if len(b) < 1 || len(b)-1 < int(b[0]) {
			return fmt.Errorf("802.1 protocol identity: %d bytes", len(b))
		}
		p.n.ProtocolIdentities = append(p.n.ProtocolIdentities, hex.EncodeToString(b[1:1+int(b[0])]))
	case 6: // Management VID
		if len(b) < 2 {
			return fmt.Errorf("802.1 management VID: %d bytes", len(b))
		}
		setInt(&p.n.PortManagementVLANID, int(binary.BigEndian.Uint16(b)))
	case 7: // Link Aggregation
		return p.linkAggregation(b)
	}
	return nil
}

// dot3 reads an IEEE 802.3 TLV.
func (p *parser) dot3(sub byte, b []byte) error {
	switch sub {
	case 1: // MAC/PHY Configuration/Status
		if len(b) != 5 {
			return fmt.Errorf("802.3 MAC/PHY configuration: %d bytes, want 5", len(b))
		}
		mau, ok := mauTypes[binary.BigEndian.Uint16(b[3:])]
		if !ok {
			// Ironic knows MAU types 0 to 53 (RFC 4836) and drops the
			// whole TLV for any other.
			return fmt.Errorf("802.3 MAC/PHY configuration: unknown MAU type %d", binary.BigEndian.Uint16(b[3:]))
		}
		setBool(&p.n.AutonegotiationEnabled, b[0]&0x02 != 0)
		setBool(&p.n.AutonegotiationSupport, b[0]&0x01 != 0)
		if p.n.PhysicalCapabilities == nil {
			p.n.PhysicalCapabilities = physicalCapabilities(binary.BigEndian.Uint16(b[1:]))
		}
		setString(&p.n.MAUType, mau)
	case 3: // Link Aggregation (deprecated, 802.1's format)
		return p.linkAggregation(b)
	case 4: // Maximum Frame Size
		if len(b) < 2 {
			return fmt.Errorf("802.3 maximum frame size: %d bytes", len(b))
		}
		setInt(&p.n.MTU, int(binary.BigEndian.Uint16(b)))
	}
	return nil
}

func (p *parser) linkAggregation(b []byte) error {
	if len(b) != 5 {
		return fmt.Errorf("link aggregation: %d bytes, want 5", len(b))
	}
	setBool(&p.n.LinkAggregationEnabled, b[0]&0x02 != 0)
	setBool(&p.n.LinkAggregationSupport, b[0]&0x01 != 0)
	if p.n.LinkAggregationID == nil {
		id := binary.BigEndian.Uint32(b[1:])
		p.n.LinkAggregationID = &id
	}
	return nil
}

// address reads an IANA address family number and the address after it:
// IPv4 (1), IPv6 (2) or a MAC (6); further bytes are not read.
func address(b []byte) (string, error) {
	if len(b) < 1 {
		return "", errors.New("no address family")
	}
	v := b[1:]
	switch b[0] {
	case 1:
		if len(v) < 4 {
			return "", fmt.Errorf("IPv4 address of %d bytes", len(v))
		}
		return netip.AddrFrom4([4]byte(v)).String(), nil
	case 2:
		if len(v) < 16 {
			return "", fmt.Errorf("IPv6 address of %d bytes", len(v))
		}
		return netip.AddrFrom16([16]byte(v)).String(), nil
	case 6:
		return mac(v)
	}
	return "", fmt.Errorf("unknown address family %d", b[0])
}

// mac formats the first six bytes as aa:bb:cc:dd:ee:ff.
func mac(b []byte) (string, error) {
	if len(b) < 6 {
		return "", fmt.Errorf("MAC address of %d bytes", len(b))
	}
	return net.HardwareAddr(b[:6]).String(), nil
}

// capabilityNames are the System Capabilities bits from 0x0002 up, in
// Ironic's order (bit 0x0001, "other", is not named).
var capabilityNames = []string{"Repeater", "Bridge", "WLAN", "Router", "Telephone", "DOCSIS cable device",
	"Station only", "C-Vlan", "S-Vlan", "TPMR"}

func capabilities(bits uint16) []string {
	out := []string{}
	for i, name := range capabilityNames {
		if bits&(0x0002<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// pmdNames are the auto-negotiation advertised capability bits
// (IANAifMauAutoNegCapBits, RFC 4836) from 0x4000 down; 0x8000 is "other".
var pmdNames = []string{"10BASE-T hdx", "10BASE-T fdx", "10BASE-T4", "100BASE-TX hdx", "100BASE-TX fdx",
	"100BASE-T2 hdx", "100BASE-T2 fdx", "PAUSE fdx", "Asym PAUSE fdx", "Sym PAUSE fdx", "Asym and Sym PAUSE fdx",
	"1000BASE-X hdx", "1000BASE-X fdx", "1000BASE-T hdx", "1000BASE-T fdx"}

func physicalCapabilities(bits uint16) []string {
	out := []string{}
	for i, name := range pmdNames {
		if bits&(0x4000>>i) != 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func setText(dst **string, b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("text is not UTF-8")
	}
	setString(dst, string(b))
	return nil
}

func setString(dst **string, s string) {
	if *dst == nil {
		*dst = &s
	}
}

func setInt(dst **int, v int) {
	if *dst == nil {
		*dst = &v
	}
}

func setBool(dst **bool, v bool) {
	if *dst == nil {
		*dst = &v
	}
}
