package wire

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
	// LLDP is IPA's deprecated list of [type, hex value] pairs; null when
	// not collected.
	LLDP []any `json:"lldp"`
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
