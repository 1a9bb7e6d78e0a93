package erase

import (
	"context"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/rivetmetal/rivet/hardware"
	"golang.org/x/sys/unix"
)

// nvmePassthru is struct nvme_passthru_cmd (linux/nvme_ioctl.h).
type nvmePassthru struct {
	Opcode      uint8
	Flags       uint8
	Rsvd1       uint16
	NSID        uint32
	CDW2, CDW3  uint32
	Metadata    uint64
	Addr        uint64
	MetadataLen uint32
	DataLen     uint32
	CDW10       uint32
	CDW11       uint32
	CDW12       uint32
	CDW13       uint32
	CDW14       uint32
	CDW15       uint32
	TimeoutMS   uint32
	Result      uint32
}

const (
	// nvmeIoctlID is _IO('N', 0x40): the namespace ID of a block device.
	nvmeIoctlID = 0x4e40
	// nvmeIoctlAdminCmd is _IOWR('N', 0x41, struct nvme_passthru_cmd).
	nvmeIoctlAdminCmd = 0xc0484e41
	// nvmeFormatTimeoutMS bounds a format: a crypto erase is quick, a
	// user-data erase of a large drive takes minutes.
	nvmeFormatTimeoutMS = 60 * 60 * 1000
)

// nvmeAdmin issues an admin command on fd. A positive return is the NVMe
// status of a failed command.
func nvmeAdmin(fd uintptr, cmd *nvmePassthru) error {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, nvmeIoctlAdminCmd, uintptr(unsafe.Pointer(cmd)))
	if errno != 0 {
		return os.NewSyscallError("ioctl(NVME_IOCTL_ADMIN_CMD)", errno)
	}
	if r != 0 {
		return fmt.Errorf("NVMe admin opcode %#x failed with status %#x", cmd.Opcode, r)
	}
	return nil
}

// nvmeFormat erases an NVMe namespace with Format NVM, keeping its LBA
// format: crypto erase when supported, else user-data erase. Devices that
// are not NVMe namespaces, or controllers without Format NVM, give
// errUnsupported.
func nvmeFormat(ctx context.Context, d hardware.BlockDevice) (string, error) {
	if !strings.HasPrefix(d.Name, "nvme") {
		return "", errUnsupported
	}
	f, err := os.OpenFile(d.Path, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("nvme format %s: %w", d.Path, err)
	}
	defer f.Close()
	fd := f.Fd()
	nsid, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, nvmeIoctlID, 0)
	if errno != 0 {
		return "", fmt.Errorf("nvme format %s: %w (%w)", d.Path, errUnsupported, os.NewSyscallError("ioctl(NVME_IOCTL_ID)", errno))
	}
	buf := alignedBuffer(4096)
	identify := func(cns, ns uint32) ([]byte, error) {
		clear(buf)
		cmd := nvmePassthru{Opcode: nvmeOpIdentify, NSID: ns, Addr: uint64(uintptrOf(buf)), DataLen: 4096, CDW10: cns}
		if err := nvmeAdmin(fd, &cmd); err != nil {
			return nil, err
		}
		return buf, nil
	}
	b, err := identify(nvmeCNSController, 0)
	if err != nil {
		return "", fmt.Errorf("nvme format %s: identify controller: %w", d.Path, err)
	}
	ctrl, err := parseIdentifyController(b)
	if err != nil {
		return "", fmt.Errorf("nvme format %s: %w", d.Path, err)
	}
	if !ctrl.FormatSupported {
		return "", fmt.Errorf("nvme format %s: the controller has no Format NVM: %w", d.Path, errUnsupported)
	}
	b, err = identify(nvmeCNSNamespace, uint32(nsid))
	if err != nil {
		return "", fmt.Errorf("nvme format %s: identify namespace %d: %w", d.Path, nsid, err)
	}
	ns, err := parseIdentifyNamespace(b)
	if err != nil {
		return "", fmt.Errorf("nvme format %s: %w", d.Path, err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	ses, method := chooseSES(ctrl)
	cmd := nvmePassthru{Opcode: nvmeOpFormatNVM, NSID: uint32(nsid), CDW10: formatCDW10(ns, ses), TimeoutMS: nvmeFormatTimeoutMS}
	if err := nvmeAdmin(fd, &cmd); err != nil {
		return "", fmt.Errorf("nvme format %s (namespace %d, %s): %w", d.Path, nsid, method, err)
	}
	return method, nil
}
