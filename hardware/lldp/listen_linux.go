package lldp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// linuxPort is an AF_PACKET socket bound to one interface and EtherType,
// with the LLDP filter attached before the bind and a promiscuous
// membership on the interface.
type linuxPort struct {
	name string
	conn *packet.Conn
	// ctl is a protocol-less packet socket, in the same namespace, for
	// the interface's flags; it receives nothing.
	ctl int
	// raised is set when the link was down and was brought up for the
	// wait; Close puts it down again.
	raised bool
}

// openPort opens the interface's LLDP socket, first bringing the link up
// if it is down (a socket bound to a down link reports ENETDOWN).
// Promiscuous mode, as IPA uses it, makes NICs that filter multicast pass
// LLDP's group addresses; it is a socket membership (PACKET_MR_PROMISC),
// not the interface's IFF_PROMISC flag, so the kernel drops it when the
// socket closes, even if the agent dies.
func openPort(name string, log *slog.Logger) (port, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("lldp: interface %s: %w", name, err)
	}
	prog, err := assembledFilter()
	if err != nil {
		return nil, fmt.Errorf("lldp: assemble the socket filter: %w", err)
	}
	ctl, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lldp: %s: %w", name, os.NewSyscallError("socket(AF_PACKET)", err))
	}
	p := &linuxPort{name: name, ctl: ctl}
	if ifi.Flags&net.FlagUp == 0 {
		if err := p.setUp(true); err != nil {
			_ = unix.Close(ctl)
			return nil, err
		}
		p.raised = true
		log.Info("LLDP: interface was down; up while listening", "interface", name)
	}
	c, err := packet.Listen(ifi, packet.Raw, EtherType, &packet.Config{Filter: prog})
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("lldp: open a raw socket on %s: %w", name, err)
	}
	p.conn = c
	if err := c.SetPromiscuous(true); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("lldp: promiscuous mode on %s: %w", name, err)
	}
	return p, nil
}

// ReadFrame reads the next frame. A link that goes down during the wait
// (ENETDOWN, reported once) does not end it: frames may come when it is
// back up.
func (p *linuxPort) ReadFrame(b []byte) (int, error) {
	for {
		n, _, err := p.conn.ReadFrom(b)
		if errors.Is(err, unix.ENETDOWN) {
			continue
		}
		return n, err
	}
}

func (p *linuxPort) SetReadDeadline(t time.Time) error { return p.conn.SetReadDeadline(t) }

func (p *linuxPort) Close() error {
	var errs []error
	if p.conn != nil {
		errs = append(errs, p.conn.Close())
	}
	if p.raised {
		errs = append(errs, p.setUp(false))
	}
	if err := unix.Close(p.ctl); err != nil {
		errs = append(errs, fmt.Errorf("lldp: %s: %w", p.name, os.NewSyscallError("close", err)))
	}
	return errors.Join(errs...)
}

// setUp sets or clears the interface's IFF_UP flag (SIOCGIFFLAGS, then
// SIOCSIFFLAGS) through the control socket, so in its namespace.
func (p *linuxPort) setUp(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	ifr, err := unix.NewIfreq(p.name)
	if err != nil {
		return fmt.Errorf("lldp: set %s %s: %w", p.name, state, err)
	}
	if err := unix.IoctlIfreq(p.ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lldp: set %s %s: %w", p.name, state, os.NewSyscallError("ioctl(SIOCGIFFLAGS)", err))
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(p.ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lldp: set %s %s: %w", p.name, state, os.NewSyscallError("ioctl(SIOCSIFFLAGS)", err))
	}
	return nil
}
