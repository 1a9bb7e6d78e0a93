// Package power defines the conductor's power and boot-device drivers: the
// out-of-band "BMC" operations a conductor performs on a node. Concrete
// drivers live in sub-packages (fake, qemu, redfish, ipmi); the
// conductor's driver list is written out in cmd/rivet-conductor.
package power

import (
	"context"
	"errors"
	"os"
)

// State is a power state, with Ironic's wire strings.
type State string

// Power states and targets as Ironic names them.
const (
	On         State = "power on"
	Off        State = "power off"
	Reboot     State = "rebooting"
	SoftOff    State = "soft power off"
	SoftReboot State = "soft rebooting"
	// Error is reported when the state cannot be read.
	Error State = "error"
)

// BootDevice is a boot device, with Ironic's wire strings.
type BootDevice string

// Boot devices.
const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// BootMode is the firmware boot mode, with Ironic's wire strings.
type BootMode string

// Boot modes. The zero value means "the driver's default", which is UEFI
// (Ironic's default since Yoga).
const (
	BootModeUEFI BootMode = "uefi"
	BootModeBIOS BootMode = "bios"
)

// Node is what a driver needs to know of a node.
type Node struct {
	UUID string
	Name string
	// DriverInfo holds the driver's own settings (addresses, credentials,
	// for qemu the disk path), unmasked.
	DriverInfo map[string]any
	// MACs are the node's port addresses, PXE-enabled ones first.
	MACs []string
	// BootMode is the boot mode the node is set up for (Ironic takes it
	// from instance_info.deploy_boot_mode, then the boot_mode capability
	// in properties); empty means the driver's default, UEFI. Drivers
	// that set boot devices through the BMC (ipmi, redfish) use it.
	BootMode BootMode
}

// Driver is a power and boot-device driver.
type Driver interface {
	// Name is the driver's name as used in node.driver ("fake-hardware",
	// "qemu", "ipmi", "redfish").
	Name() string
	// Validate checks DriverInfo without touching the node.
	Validate(node Node) error
	// PowerState reads the node's current power state.
	PowerState(ctx context.Context, node Node) (State, error)
	// SetPowerState moves the node to On, Off or Reboot (and the soft
	// variants where supported). It returns once the request was accepted.
	SetPowerState(ctx context.Context, node Node, target State) error
	// SetBootDevice sets the device the node boots from next.
	SetBootDevice(ctx context.Context, node Node, dev BootDevice, persistent bool) error
}

// BootDeviceReader is implemented by drivers that can read back the boot
// device a node will boot from next (GET .../management/boot_device).
type BootDeviceReader interface {
	// GetBootDevice returns the boot device and whether it is persistent;
	// an empty device means the BMC reports none (no override).
	GetBootDevice(ctx context.Context, node Node) (dev BootDevice, persistent bool, err error)
}

// BootDeviceLister is implemented by drivers that report the boot devices
// they can set; drivers without it support BootPXE and BootDisk.
type BootDeviceLister interface {
	SupportedBootDevices(node Node) []BootDevice
}

// ConnectionValidator is implemented by drivers that talk to a management
// controller: beyond Validate's check of DriverInfo, ValidateConnection
// checks that the controller answers and accepts the credentials (GET
// /v1/nodes/{id}/validate). Its error names the controller's address.
type ConnectionValidator interface {
	ValidateConnection(ctx context.Context, node Node) error
}

// Ramdisk describes a deploy ramdisk network boot prepared by the
// conductor's boot interface: the kernel, the initramfs and the kernel
// command line parameters (ipa-api-url=…, BOOTIF=…).
type Ramdisk struct {
	Kernel    string
	Initramfs string
	Params    []string
	// Open opens Kernel and Initramfs for reading; nil means os.Open.
	// The engine opens the files a node's driver_info names through the
	// conductor's allowed directories (conductor/hostpath).
	Open func(path string) (*os.File, error)
}

// RamdiskBooter is implemented by drivers that boot the deploy ramdisk
// themselves instead of through PXE (the qemu driver boots the kernel
// directly). The conductor calls PrepareRamdisk before a power-on with the
// boot device set to BootPXE.
type RamdiskBooter interface {
	PrepareRamdisk(ctx context.Context, node Node, rd Ramdisk) error
}

// NodeView is implemented by drivers whose nodes see the conductor's
// network through a translation (the qemu driver's user networking). The
// conductor asks it how a node reaches a URL that the conductor can reach,
// e.g. http://127.0.0.1:6385 → http://10.0.2.100:6385.
type NodeView interface {
	NodeURL(node Node, hostURL string) (string, error)
}

// HostPathChecker is implemented by drivers whose driver_info names
// files on the conductor's host (the qemu driver's disk and console log):
// CheckHostPaths checks only those settings that are present, so the API
// can refuse a path the driver would not use (400) as soon as it is set,
// before the rest of driver_info is complete.
type HostPathChecker interface {
	CheckHostPaths(node Node) error
}

// ErrUnsupported is returned for an operation a driver cannot perform.
var ErrUnsupported = errors.New("operation not supported by this driver")

// ErrInvalidDriverInfo wraps DriverInfo validation failures.
var ErrInvalidDriverInfo = errors.New("invalid driver_info")
