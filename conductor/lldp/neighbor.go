package lldp

import "reflect"

// Neighbor is one interface's entry of Ironic's parsed_lldp: what the
// switch port at the other end of the cable said about itself. Encoded as
// JSON it is exactly Ironic's dictionary: a field is present only when a
// TLV set it (a nil pointer or slice is left out; an empty list that a TLV
// set, such as no capabilities, is []).
type Neighbor struct {
	// Chassis ID TLV: a MAC ("3c:fd:fe:00:17:01"), an address, or a name.
	ChassisID *string `json:"switch_chassis_id,omitzero"`
	// Port ID TLV: an interface name ("Ethernet1/7"), a MAC, an address.
	PortID *string `json:"switch_port_id,omitzero"`
	// Port Description, System Name and System Description TLVs.
	PortDescription   *string `json:"switch_port_description,omitzero"`
	SystemName        *string `json:"switch_system_name,omitzero"`
	SystemDescription *string `json:"switch_system_description,omitzero"`
	// System Capabilities TLV: what the system can be and what it is
	// ("Bridge", "Router", …, in Ironic's order).
	CapabilitiesSupport []string `json:"switch_capabilities_support,omitzero"`
	CapabilitiesEnabled []string `json:"switch_capabilities_enabled,omitzero"`
	// MgmtAddresses are the Management Address TLVs' addresses, in order.
	MgmtAddresses []string `json:"switch_mgmt_addresses,omitzero"`

	// 802.1Q: the port's untagged VLAN (PVID).
	PortUntaggedVLANID *int `json:"switch_port_untagged_vlan_id,omitzero"`
	// 802.1Q port and protocol VLAN IDs, with the flags of the first.
	PortProtocolVLANEnabled *bool `json:"switch_port_protocol_vlan_enabled,omitzero"`
	PortProtocolVLANSupport *bool `json:"switch_port_protocol_vlan_support,omitzero"`
	PortProtocolVLANIDs     []int `json:"switch_port_protocol_vlan_ids,omitzero"`
	// PortVLANs are the 802.1Q VLAN Name TLVs: the VLANs on the port.
	PortVLANs []VLAN `json:"switch_port_vlans,omitzero"`
	// ProtocolIdentities are the 802.1Q Protocol Identity TLVs, in hex.
	ProtocolIdentities []string `json:"switch_protocol_identities,omitzero"`
	// PortManagementVLANID is the 802.1Q Management VID.
	PortManagementVLANID *int `json:"switch_port_management_vlan_id,omitzero"`
	// Link aggregation (802.1Q, or the deprecated 802.3 TLV).
	LinkAggregationEnabled *bool   `json:"switch_port_link_aggregation_enabled,omitzero"`
	LinkAggregationSupport *bool   `json:"switch_port_link_aggregation_support,omitzero"`
	LinkAggregationID      *uint32 `json:"switch_port_link_aggregation_id,omitzero"`

	// 802.3 MAC/PHY Configuration/Status: auto-negotiation, the
	// advertised capabilities ("1000BASE-T fdx", …, sorted) and the
	// operational MAU type ("1000BASE-T full duplex").
	AutonegotiationEnabled *bool    `json:"switch_port_autonegotiation_enabled,omitzero"`
	AutonegotiationSupport *bool    `json:"switch_port_autonegotiation_support,omitzero"`
	PhysicalCapabilities   []string `json:"switch_port_physical_capabilities,omitzero"`
	MAUType                *string  `json:"switch_port_mau_type,omitzero"`
	// MTU is the 802.3 Maximum Frame Size TLV.
	MTU *int `json:"switch_port_mtu,omitzero"`
}

// VLAN is one entry of switch_port_vlans.
type VLAN struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// IsZero says whether no TLV set anything (Ironic then leaves the
// interface out of parsed_lldp).
func (n Neighbor) IsZero() bool { return reflect.ValueOf(n).IsZero() }
