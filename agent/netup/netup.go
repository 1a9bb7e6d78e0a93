// Package netup brings up the deploy ramdisk's network: DHCP on every
// physical NIC through u-root's dhclient, or a static address from the
// kernel's "ip=" parameter. It runs only inside the ramdisk.
package netup

import (
	"fmt"
	"net"
	"strings"
)

// Static is a parsed static "ip=" setting:
// ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>
type Static struct {
	Address  net.IPNet
	Gateway  net.IP
	Hostname string
	Device   string
}

// Mode is what an "ip=" value asks for.
type Mode int

// Modes of ParseIP.
const (
	ModeDHCP Mode = iota
	ModeOff
	ModeStatic
)

// ParseIP parses the kernel's "ip=" value. "", "dhcp", "on", "any" and
// "both" mean DHCP on every NIC; "off" and "none" mean leave the network
// alone; a colon form with a client address is static, and a colon form
// whose autoconf field is dhcp means DHCP on that device only.
func ParseIP(spec string) (Mode, *Static, error) {
	switch strings.ToLower(spec) {
	case "", "dhcp", "on", "any", "both", "dhcp6":
		return ModeDHCP, nil, nil
	case "off", "none":
		return ModeOff, nil, nil
	}
	f := strings.Split(spec, ":")
	for len(f) < 7 {
		f = append(f, "")
	}
	st := &Static{Hostname: f[4], Device: f[5]}
	auto := strings.ToLower(f[6])
	if f[0] == "" || auto == "dhcp" || auto == "on" || auto == "any" {
		if f[0] != "" {
			return 0, nil, fmt.Errorf("ip=%s: a client address with autoconf %q", spec, f[6])
		}
		return ModeDHCP, st, nil
	}
	ip := net.ParseIP(f[0]).To4()
	if ip == nil {
		return 0, nil, fmt.Errorf("ip=%s: bad client address %q", spec, f[0])
	}
	mask := net.IPv4Mask(255, 255, 255, 0)
	if f[3] != "" {
		m := net.ParseIP(f[3]).To4()
		if m == nil {
			return 0, nil, fmt.Errorf("ip=%s: bad netmask %q", spec, f[3])
		}
		mask = net.IPMask(m)
	}
	st.Address = net.IPNet{IP: ip, Mask: mask}
	if f[2] != "" {
		if st.Gateway = net.ParseIP(f[2]).To4(); st.Gateway == nil {
			return 0, nil, fmt.Errorf("ip=%s: bad gateway %q", spec, f[2])
		}
	}
	return ModeStatic, st, nil
}
