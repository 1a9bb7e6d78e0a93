// Package bmc reads the machine's BMC network settings in-band, as IPA's
// inventory reports them (bmc_address, bmc_mac, bmc_v6address): IPMI Get
// LAN Configuration Parameters sent to the BMC through the Linux IPMI
// device (/dev/ipmi0, ipmi_devintf) with pure Go ioctls — no ipmitool.
//
// The ramdisk needs the kernel modules ipmi_msghandler, ipmi_devintf and
// ipmi_si (KCS/SMIC/BT system interfaces; ipmi_ssif for SMBus BMCs).
//
// Read follows IPA's rules: LAN channels 1 to 11 are asked in order; the
// address is the first that is not 0.0.0.0 ("0.0.0.0" when none), the MAC
// that of the first channel with an address and a MAC (none when none),
// and the IPv6 address the first active DHCPv6/SLAAC, then static, address
// of a channel with IPv6 enabled ("::/0" when none).
package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Conn sends one IPMI request to the BMC and returns the response data,
// completion code first.
type Conn interface {
	Exchange(ctx context.Context, netFn, cmd byte, data []byte) ([]byte, error)
}

// Info is the BMC's network identity.
type Info struct {
	// Address is the BMC's IPv4 address ("0.0.0.0" when no channel has
	// one).
	Address string
	// MAC is the MAC of the channel with the address ("" when none).
	MAC string
	// V6Address is its IPv6 address ("::/0" when none).
	V6Address string
}

// IPMI numbers used here (IPMI 2.0 §23.2, LAN parameters of Table 23-4 and
// the IPv6 parameters of the 2.0 errata).
const (
	netFnTransport          = 0x0c
	cmdGetLANConfigParams   = 0x02
	paramIPAddress          = 3
	paramMACAddress         = 5
	paramIPv6Enables        = 51
	paramIPv6StaticAddress  = 56
	paramIPv6DynamicAddress = 59

	firstChannel = 1
	lastChannel  = 11
	maxAddresses = 16 // set selectors read per IPv6 address table
)

// CompletionError is a response whose completion code is not 0.
type CompletionError struct {
	Code byte
}

// Error implements error.
func (e *CompletionError) Error() string {
	return fmt.Sprintf("IPMI completion code %#02x", e.Code)
}

// getLANParam reads LAN configuration parameter param of channel (set
// selector set) and returns its data after the revision byte.
func getLANParam(ctx context.Context, c Conn, channel, param, set byte) ([]byte, error) {
	resp, err := c.Exchange(ctx, netFnTransport, cmdGetLANConfigParams, []byte{channel & 0x0f, param, set, 0})
	if err != nil {
		return nil, err
	}
	if len(resp) == 0 {
		return nil, errors.New("empty IPMI response")
	}
	if resp[0] != 0 {
		return nil, &CompletionError{Code: resp[0]}
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("LAN parameter %d of channel %d: response of %d bytes", param, channel, len(resp))
	}
	return resp[2:], nil
}

// Read reads the BMC's addresses. A channel that does not answer (not a
// LAN channel) is skipped; an error is returned only when the BMC cannot
// be talked to at all.
func Read(ctx context.Context, c Conn) (Info, error) {
	info := Info{Address: "0.0.0.0", V6Address: "::/0"}
	answered := false
	var lastErr error
	for ch := byte(firstChannel); ch <= lastChannel; ch++ {
		ipData, err := getLANParam(ctx, c, ch, paramIPAddress, 0)
		if err != nil {
			var ce *CompletionError
			if !errors.As(err, &ce) {
				if ctx.Err() != nil {
					return info, ctx.Err()
				}
				lastErr = err
			} else {
				answered = true
			}
			continue
		}
		answered = true
		if len(ipData) < 4 {
			continue
		}
		ip := net.IP(ipData[:4])
		if ip.Equal(net.IPv4zero) {
			continue
		}
		if info.Address == "0.0.0.0" {
			info.Address = ip.String()
		}
		if info.MAC == "" {
			if macData, err := getLANParam(ctx, c, ch, paramMACAddress, 0); err == nil && len(macData) >= 6 {
				if mac := net.HardwareAddr(macData[:6]); mac.String() != "00:00:00:00:00:00" {
					info.MAC = mac.String()
				}
			}
		}
	}
	for ch := byte(firstChannel); ch <= lastChannel && info.V6Address == "::/0"; ch++ {
		if v6 := v6Address(ctx, c, ch); v6 != "" {
			info.V6Address = v6
		}
	}
	if !answered && lastErr != nil {
		return info, fmt.Errorf("bmc: no answer to Get LAN Configuration Parameters: %w", lastErr)
	}
	return info, nil
}

// v6Address is the channel's first usable IPv6 address, "" when none.
func v6Address(ctx context.Context, c Conn, ch byte) string {
	enables, err := getLANParam(ctx, c, ch, paramIPv6Enables, 0)
	// 0 = IPv4 only, 1 = IPv6 only, 2 = both.
	if err != nil || len(enables) < 1 || (enables[0] != 1 && enables[0] != 2) {
		return ""
	}
	if a := v6FromTable(ctx, c, ch, paramIPv6DynamicAddress, true); a != "" {
		return a
	}
	return v6FromTable(ctx, c, ch, paramIPv6StaticAddress, false)
}

// v6FromTable walks an IPv6 address table (set selectors 0, 1, …): each
// entry is set selector, source/type (bit 7 enabled for static entries;
// low nibble 0 static, 1 SLAAC, 2 DHCPv6), 16 address bytes, prefix
// length, status (0 active).
func v6FromTable(ctx context.Context, c Conn, ch, param byte, dynamic bool) string {
	for set := byte(0); set < maxAddresses; set++ {
		d, err := getLANParam(ctx, c, ch, param, set)
		if err != nil || len(d) < 20 {
			return ""
		}
		source, status := d[1], d[19]
		addr := net.IP(d[2:18])
		usable := status == 0 && !addr.IsUnspecified()
		if dynamic {
			usable = usable && (source&0x0f == 1 || source&0x0f == 2)
		} else {
			usable = usable && source&0x80 != 0
		}
		if usable {
			return addr.String()
		}
	}
	return ""
}
