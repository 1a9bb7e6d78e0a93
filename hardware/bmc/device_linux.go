//go:build linux && (amd64 || arm64 || ppc64le || riscv64 || s390x)

package bmc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux IPMI device interface (include/uapi/linux/ipmi.h), laid out
// as a 64-bit kernel expects it.
const (
	ipmiIOCMagic                 = 'i'
	ipmiSystemInterfaceAddrType  = 0x0c
	ipmiBMCChannel               = 0x0f
	ipmiResponseRecvType         = 1
	ipmiMaxMsgLength             = 272
	defaultTimeout               = 5 * time.Second
	pollSlice                    = 100 * time.Millisecond
	sizeofIPMIReq, sizeofIPMIRcv = 40, 48
)

// ipmiMsg is struct ipmi_msg.
type ipmiMsg struct {
	netFn   uint8
	cmd     uint8
	dataLen uint16
	_       [4]byte
	data    unsafe.Pointer
}

// ipmiReq is struct ipmi_req.
type ipmiReq struct {
	addr    unsafe.Pointer
	addrLen uint32
	_       [4]byte
	msgID   int64
	msg     ipmiMsg
}

// ipmiRecv is struct ipmi_recv.
type ipmiRecv struct {
	recvType int32
	_        [4]byte
	addr     unsafe.Pointer
	addrLen  uint32
	_        [4]byte
	msgID    int64
	msg      ipmiMsg
}

// systemInterfaceAddr is struct ipmi_system_interface_addr.
type systemInterfaceAddr struct {
	addrType int32
	channel  int16
	lun      uint8
	_        uint8
}

// ioc builds an ioctl number (asm-generic/ioctl.h).
func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | ipmiIOCMagic<<8 | nr }

var (
	// IPMICTL_SEND_COMMAND is _IOR('i', 13, struct ipmi_req).
	ipmictlSendCommand = ioc(2, 13, sizeofIPMIReq)
	// IPMICTL_RECEIVE_MSG_TRUNC is _IOWR('i', 11, struct ipmi_recv).
	ipmictlReceiveMsgTrunc = ioc(3, 11, sizeofIPMIRcv)
)

// The layouts must match the kernel's.
var _ = [1]struct{}{}[unsafe.Sizeof(ipmiReq{})-sizeofIPMIReq]
var _ = [1]struct{}{}[unsafe.Sizeof(ipmiRecv{})-sizeofIPMIRcv]

// DefaultDevice is the first IPMI device.
const DefaultDevice = "/dev/ipmi0"

// Device is an open Linux IPMI device; it implements Conn. Requests are
// sent one at a time.
type Device struct {
	path string
	f    *os.File
	// Timeout bounds the wait for each response (default 5 s).
	Timeout time.Duration

	mu    sync.Mutex
	msgID int64
}

// Open opens an IPMI device (DefaultDevice when path is empty).
func Open(path string) (*Device, error) {
	if path == "" {
		path = DefaultDevice
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("bmc: %w", err)
	}
	return &Device{path: path, f: f, Timeout: defaultTimeout}, nil
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

// Exchange implements Conn: it sends the request to the BMC's system
// interface and waits for the response with the same message id.
func (d *Device) Exchange(ctx context.Context, netFn, cmd byte, data []byte) ([]byte, error) {
	if len(data) > ipmiMaxMsgLength {
		return nil, fmt.Errorf("bmc: %s: request of %d bytes", d.path, len(data))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.msgID++
	id := d.msgID
	// Everything the kernel reads or writes lives on the heap (Go moves
	// stacks, never heap objects), referenced through unsafe.Pointer
	// fields so that it stays alive.
	addr := &systemInterfaceAddr{addrType: ipmiSystemInterfaceAddrType, channel: ipmiBMCChannel}
	payload := make([]byte, len(data)+1)
	copy(payload, data)
	req := &ipmiReq{addr: unsafe.Pointer(addr), addrLen: uint32(unsafe.Sizeof(*addr)), msgID: id,
		msg: ipmiMsg{netFn: netFn, cmd: cmd, dataLen: uint16(len(data)), data: unsafe.Pointer(&payload[0])}}
	if err := d.ioctl(ipmictlSendCommand, unsafe.Pointer(req)); err != nil {
		return nil, fmt.Errorf("bmc: %s: netfn %#02x cmd %#02x: %w", d.path, netFn, cmd,
			os.NewSyscallError("ioctl(IPMICTL_SEND_COMMAND)", err))
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	buf := make([]byte, ipmiMaxMsgLength)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bmc: %s: %w", d.path, err)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, fmt.Errorf("bmc: %s: netfn %#02x cmd %#02x: no response within %s", d.path, netFn, cmd, timeout)
		}
		if wait > pollSlice {
			wait = pollSlice
		}
		fds := []unix.PollFd{{Fd: int32(d.f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("bmc: %s: %w", d.path, os.NewSyscallError("poll", err))
		}
		if n == 0 {
			continue
		}
		from := new(systemInterfaceAddr)
		recv := &ipmiRecv{addr: unsafe.Pointer(from), addrLen: uint32(unsafe.Sizeof(*from)),
			msg: ipmiMsg{dataLen: uint16(len(buf)), data: unsafe.Pointer(&buf[0])}}
		if err := d.ioctl(ipmictlReceiveMsgTrunc, unsafe.Pointer(recv)); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			// EMSGSIZE: the data was truncated to buf, still usable.
			if !errors.Is(err, unix.EMSGSIZE) {
				return nil, fmt.Errorf("bmc: %s: %w", d.path, os.NewSyscallError("ioctl(IPMICTL_RECEIVE_MSG_TRUNC)", err))
			}
		}
		if recv.recvType != ipmiResponseRecvType || recv.msgID != id {
			continue // an event or a late answer to an earlier request
		}
		n = int(recv.msg.dataLen)
		if n > len(buf) {
			n = len(buf)
		}
		return append([]byte(nil), buf[:n]...), nil
	}
}

func (d *Device) ioctl(req uintptr, arg unsafe.Pointer) error {
	conn, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if cerr := conn.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg))
	}); cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}
