package wire

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Inventory is the hardware inventory as IPA's list_hardware_info reports
// it (contract §5.1): the agent sends it under "inventory" to the
// inspection callback (InspectionData) and returns it from
// poll.get_hardware_info; the conductor keeps it as the node's inventory.
// Keys IPA always sends are never omitted: an unknown string is "", an
// unknown list is [] (interfaces, disks, cpu.flags) or null (lldp).
type Inventory struct {
	Interfaces []NetworkInterface `json:"interfaces"`
	CPU        CPU                `json:"cpu"`
	Disks      []Disk             `json:"disks"`
	Memory     Memory             `json:"memory"`
	// BMCAddress and BMCv6Address are the BMC's LAN addresses;
	// NoBMCAddress and NoBMCv6Address when there is none or detection is
	// skipped, as IPA reports them.
	BMCAddress   string `json:"bmc_address"`
	BMCv6Address string `json:"bmc_v6address"`
	// BMCMAC is the BMC's MAC address, null when unknown.
	BMCMAC       *string      `json:"bmc_mac"`
	SystemVendor SystemVendor `json:"system_vendor"`
	Boot         BootInfo     `json:"boot"`
	Hostname     string       `json:"hostname"`
}

// What IPA reports for a machine whose BMC address it does not know.
const (
	NoBMCAddress   = "0.0.0.0"
	NoBMCv6Address = "::/0"
)

// NetworkInterface is one entry of the inventory's "interfaces".
type NetworkInterface struct {
	Name       string `json:"name"`
	MACAddress string `json:"mac_address"`
	// IPv4Address and IPv6Address are the interface's first address of
	// each family, "" when it has none.
	IPv4Address string `json:"ipv4_address"`
	IPv6Address string `json:"ipv6_address"`
	HasCarrier  bool   `json:"has_carrier"`
	// LLDP holds the TLVs of the first LLDP frame heard on the interface
	// (ipa-collect-lldp), as IPA's list of [type, hex value] pairs: null
	// when LLDP was not collected or the interface could not be listened
	// on, [] when no frame arrived in time.
	LLDP []LLDPTLV `json:"lldp"`
	// Vendor and Product are the PCI (or virtio) IDs, e.g. "0x8086".
	Vendor  string `json:"vendor"`
	Product string `json:"product"`
	// ClientID is the DHCP client id of an InfiniBand port, else null.
	ClientID *string `json:"client_id"`
	// BIOSDevName is the biosdevname name, null when not known.
	BIOSDevName *string `json:"biosdevname"`
	// SpeedMbps is the link speed, 0 when unknown or down.
	SpeedMbps int `json:"speed_mbps"`
	// PCIAddress is the NIC's PCI function, e.g. "0000:00:03.0".
	PCIAddress string `json:"pci_address"`
	// Driver is the kernel driver bound to the device, e.g. "virtio_net".
	Driver string `json:"driver"`
}

// CPU is the inventory's "cpu".
type CPU struct {
	ModelName string `json:"model_name"`
	// Frequency is the maximum (else current) clock in MHz as lscpu
	// prints it ("3500.0000"); "" when unknown.
	Frequency string `json:"frequency"`
	// Count is the number of logical CPUs.
	Count int `json:"count"`
	// Architecture is uname -m ("x86_64", "aarch64").
	Architecture string   `json:"architecture"`
	Flags        []string `json:"flags"`
	SocketCount  int      `json:"socket_count"`
}

// Disk is one entry of the inventory's "disks" (and the inspection's
// "root_disk"): a whole block device.
type Disk struct {
	// Name is the device node, e.g. "/dev/sda".
	Name       string `json:"name"`
	Model      string `json:"model"`
	Vendor     string `json:"vendor"`
	Serial     string `json:"serial"`
	WWN        string `json:"wwn"`
	WWNWithExt string `json:"wwn_with_extension"`
	WWNVendExt string `json:"wwn_vendor_extension"`
	// HCTL is the SCSI host:channel:target:lun, "" for other buses.
	HCTL string `json:"hctl"`
	// ByPath is the /dev/disk/by-path link udev would make.
	ByPath string `json:"by_path"`
	// Size is in bytes.
	Size       int64 `json:"size"`
	Rotational bool  `json:"rotational"`
	// LogicalSectors and PhysicalSectors are the sector sizes in bytes.
	LogicalSectors  int `json:"logical_sectors"`
	PhysicalSectors int `json:"physical_sectors"`
	// Tran is the transport lsblk names ("sata", "sas", "nvme", "usb", …).
	Tran string `json:"tran"`
}

// Memory is the inventory's "memory".
type Memory struct {
	// Total is the usable memory in bytes (MemTotal).
	Total int64 `json:"total"`
	// PhysicalMB is the installed memory in MiB.
	PhysicalMB int64 `json:"physical_mb"`
}

// SystemVendor is the DMI system identity.
type SystemVendor struct {
	ProductName  string         `json:"product_name"`
	SerialNumber string         `json:"serial_number"`
	Manufacturer string         `json:"manufacturer"`
	Firmware     SystemFirmware `json:"firmware"`
}

// SystemFirmware is the DMI BIOS/UEFI firmware identity.
type SystemFirmware struct {
	Vendor    string `json:"vendor"`
	Version   string `json:"version"`
	BuildDate string `json:"build_date"`
}

// BootInfo says how the ramdisk booted.
type BootInfo struct {
	// CurrentBootMode is "uefi" when /sys/firmware/efi exists, else
	// "bios".
	CurrentBootMode string `json:"current_boot_mode"`
	// PXEInterface is the MAC the machine network-booted from (BOOTIF),
	// "" when unknown.
	PXEInterface string `json:"pxe_interface"`
}

// LLDPTLV is one TLV of an LLDP frame as IPA reports it, in the
// inventory's interfaces[].lldp and in the "lldp" collector's lldp_raw:
// the JSON pair [type, "hex-encoded value"].
type LLDPTLV struct {
	// Type is the TLV type: 0 ends the LLDPDU, 1 chassis ID, 2 port ID,
	// 3 TTL, … 127 organizationally specific.
	Type int
	// Value is the TLV's value, hex-encoded as it was sent. It is kept
	// as text so that a malformed value reaches the parser, which skips
	// that TLV, instead of failing the whole inventory.
	Value string
}

// NewLLDPTLV is the TLV of that type and raw value.
func NewLLDPTLV(typ int, value []byte) LLDPTLV {
	return LLDPTLV{Type: typ, Value: hex.EncodeToString(value)}
}

// Bytes decodes the value (upper- or lower-case hex).
func (t LLDPTLV) Bytes() ([]byte, error) {
	b, err := hex.DecodeString(t.Value)
	if err != nil {
		return nil, fmt.Errorf("LLDP TLV type %d: value is not hexadecimal: %w", t.Type, err)
	}
	return b, nil
}

// MarshalJSON writes the pair [type, "hex"].
func (t LLDPTLV) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]any{t.Type, t.Value})
}

// UnmarshalJSON reads the pair [type, "hex"]; anything else is an error
// naming what was wrong. The value's hex is not checked here (see Bytes).
func (t *LLDPTLV) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var pair []json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("LLDP TLV: not a [type, value] pair: %w", err)
	}
	if len(pair) != 2 {
		return fmt.Errorf("LLDP TLV: a [type, value] pair has 2 elements, not %d", len(pair))
	}
	var out LLDPTLV
	if err := json.Unmarshal(pair[0], &out.Type); err != nil {
		return fmt.Errorf("LLDP TLV: the type is not an integer: %w", err)
	}
	if err := json.Unmarshal(pair[1], &out.Value); err != nil {
		return fmt.Errorf("LLDP TLV type %d: value is not a string", out.Type)
	}
	*t = out
	return nil
}
