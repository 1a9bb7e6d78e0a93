package erase

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/rivetmetal/rivet/hardware"
	"golang.org/x/sys/unix"
)

// sgIOHdr is struct sg_io_hdr (scsi/sg.h); Go's alignment matches C's.
type sgIOHdr struct {
	InterfaceID    int32
	DxferDirection int32
	CmdLen         uint8
	MxSbLen        uint8
	IovecCount     uint16
	DxferLen       uint32
	Dxferp         uintptr
	Cmdp           uintptr
	Sbp            uintptr
	Timeout        uint32
	Flags          uint32
	PackID         int32
	UsrPtr         uintptr
	Status         uint8
	MaskedStatus   uint8
	MsgStatus      uint8
	SbLenWr        uint8
	HostStatus     uint16
	DriverStatus   uint16
	Resid          int32
	Duration       uint32
	Info           uint32
}

const (
	sgIO            = 0x2285
	sgDxferNone     = -1
	sgDxferToDev    = -2
	sgDxferFromDev  = -3
	sgDriverSense   = 0x08
	sgDefaultTimout = 30 * time.Second
)

// ataCommand sends one ATA command through SG_IO. data is read into or
// written from, per protocol.
func ataCommand(fd uintptr, protocol, command byte, data []byte, timeout time.Duration) error {
	cdb := ataCDB(protocol, command)
	var sense [32]byte
	h := sgIOHdr{InterfaceID: 'S', CmdLen: 16, MxSbLen: uint8(len(sense)), Cmdp: uintptr(unsafe.Pointer(&cdb[0])),
		Sbp: uintptr(unsafe.Pointer(&sense[0])), Timeout: uint32(timeout / time.Millisecond)}
	switch protocol {
	case ataProtoPIODataIn:
		h.DxferDirection = sgDxferFromDev
	case ataProtoPIODataOut:
		h.DxferDirection = sgDxferToDev
	default:
		h.DxferDirection = sgDxferNone
	}
	if len(data) > 0 {
		h.Dxferp = uintptr(unsafe.Pointer(&data[0]))
		h.DxferLen = uint32(len(data))
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, sgIO, uintptr(unsafe.Pointer(&h)))
	runtime.KeepAlive(&cdb)
	runtime.KeepAlive(&sense)
	runtime.KeepAlive(data)
	if errno != 0 {
		if errors.Is(errno, unix.ENOTTY) || errors.Is(errno, unix.EINVAL) {
			return fmt.Errorf("%w: %w", errUnsupported, os.NewSyscallError("ioctl(SG_IO)", errno))
		}
		return os.NewSyscallError("ioctl(SG_IO)", errno)
	}
	if h.Status != 0 || h.HostStatus != 0 || h.DriverStatus&^sgDriverSense != 0 {
		return fmt.Errorf("ATA command %#x failed: SCSI status %#x, host status %#x, driver status %#x, sense % x",
			command, h.Status, h.HostStatus, h.DriverStatus, sense[:h.SbLenWr])
	}
	return nil
}

// ataSecureErase runs ATA SECURITY ERASE UNIT (enhanced when supported)
// with a temporary user password. Disks that are not ATA, or whose
// security feature set is unsupported, give errUnsupported; a frozen drive
// or one already protected by an unknown password is an error.
func ataSecureErase(ctx context.Context, d hardware.BlockDevice) (string, error) {
	f, err := os.OpenFile(d.Path, os.O_RDWR|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("ata secure erase %s: %w", d.Path, err)
	}
	defer f.Close()
	fd := f.Fd()
	id := make([]byte, ataSectorBytes)
	if err := ataCommand(fd, ataProtoPIODataIn, ataIdentify, id, sgDefaultTimout); err != nil {
		if errors.Is(err, errUnsupported) {
			return "", err
		}
		return "", fmt.Errorf("ata secure erase %s: IDENTIFY DEVICE: %w (%w)", d.Path, errUnsupported, err)
	}
	sec, err := parseIdentifySecurity(id)
	if err != nil {
		return "", fmt.Errorf("ata secure erase %s: %w", d.Path, err)
	}
	switch {
	case !sec.Supported:
		return "", fmt.Errorf("ata secure erase %s: security feature set not supported: %w", d.Path, errUnsupported)
	case sec.Frozen:
		return "", fmt.Errorf("ata secure erase %s: the drive's security is frozen (the firmware froze it at boot)", d.Path)
	case sec.Locked || sec.Enabled:
		return "", fmt.Errorf("ata secure erase %s: the drive is protected by a password that is not ours", d.Path)
	case sec.CountExpired:
		return "", fmt.Errorf("ata secure erase %s: the drive's password attempt counter expired", d.Path)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	enhanced := sec.EnhancedSupported
	method := MethodATA
	if enhanced {
		method = MethodATAEnhanced
	}
	if err := ataCommand(fd, ataProtoPIODataOut, ataSecuritySetPass, ataPasswordBlock(false), sgDefaultTimout); err != nil {
		return "", fmt.Errorf("ata secure erase %s: SECURITY SET PASSWORD: %w", d.Path, err)
	}
	if err := ataCommand(fd, ataProtoNonData, ataSecurityErasePrep, nil, sgDefaultTimout); err != nil {
		return "", fmt.Errorf("ata secure erase %s: SECURITY ERASE PREPARE (the temporary password %q is set): %w", d.Path, ataSecurityPassword, err)
	}
	if err := ataCommand(fd, ataProtoPIODataOut, ataSecurityEraseUnit, ataPasswordBlock(enhanced), ataEraseTimeout(sec, enhanced)); err != nil {
		return "", fmt.Errorf("ata secure erase %s: SECURITY ERASE UNIT (the temporary password %q is set): %w", d.Path, ataSecurityPassword, err)
	}
	if err := ataCommand(fd, ataProtoPIODataIn, ataIdentify, id, sgDefaultTimout); err == nil {
		if after, err := parseIdentifySecurity(id); err == nil && (after.Enabled || after.Locked) {
			return "", fmt.Errorf("ata secure erase %s: security still enabled after the erase", d.Path)
		}
	}
	return method, nil
}
