package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrOverflow is returned by Listener.Next when the kernel dropped events
// because the socket's buffer was full: the caller should rescan sysfs.
var ErrOverflow = errors.New("uevent socket overflowed: events were lost")

// maxUevent bounds one message (the kernel's are at most a few KiB).
const maxUevent = 16 << 10

// rcvBuf is the socket buffer asked for: a boot burst of events fits.
const rcvBuf = 4 << 20

// Listener receives kernel uevents from a NETLINK_KOBJECT_UEVENT socket.
type Listener struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
}

// Listen opens a socket on the kernel's uevent multicast group.
func Listen() (*Listener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, os.NewSyscallError("socket(NETLINK_KOBJECT_UEVENT)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind(NETLINK_KOBJECT_UEVENT)", err)
	}
	f := os.NewFile(uintptr(fd), "uevent")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kmod: uevent socket: %w", err)
	}
	return &Listener{f: f, rc: rc, buf: make([]byte, maxUevent)}, nil
}

// Next returns the next kernel uevent, waiting until one arrives or ctx
// ends. Messages not sent by the kernel are skipped. After ErrOverflow the
// Listener can still be used.
func (l *Listener) Next(ctx context.Context) (Event, error) {
	if err := l.f.SetReadDeadline(time.Time{}); err != nil {
		return Event{}, fmt.Errorf("kmod: uevent socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = l.f.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := l.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), l.buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			return Event{}, fmt.Errorf("kmod: read uevent: %w", err)
		}
		if errors.Is(rerr, unix.ENOBUFS) {
			return Event{}, ErrOverflow
		}
		if errors.Is(rerr, unix.EINTR) {
			continue
		}
		if rerr != nil {
			return Event{}, os.NewSyscallError("recvfrom(uevent)", rerr)
		}
		// Only the kernel (port id 0) is believed.
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue
		}
		ev, err := ParseUevent(l.buf[:n])
		if err != nil {
			continue
		}
		return ev, nil
	}
}

// Close closes the socket.
func (l *Listener) Close() error { return l.f.Close() }
