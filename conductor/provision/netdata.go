package provision

import (
	"fmt"
	"net"
	"strings"

	"github.com/rivetmetal/rivet/conductor/store"
)

// staticNetworkParams is the kernel "ip=" parameter that gives a node's
// deploy ramdisk its static address when the node has network_data
// (Metal3's preprovisioning network data, for networks without DHCP):
// from the first network of type "ipv4" — its ip_address (a CIDR or with
// netmask) and the gateway of its default route — as
// ip=<address>::<gateway>:<netmask>:::none, which the agent applies to its
// first NIC. None when the node has no such network; an error names a
// malformed one.
func staticNetworkParams(n *store.Node) ([]string, error) {
	networks, _ := n.NetworkData["networks"].([]any)
	for i, e := range networks {
		nw, _ := e.(map[string]any)
		if typ, _ := nw["type"].(string); typ != "ipv4" {
			continue
		}
		bad := func(format string, args ...any) error {
			return lastError(fmt.Sprintf("Invalid network_data of node %s: networks[%d]: %s", n.UUID, i, fmt.Sprintf(format, args...)))
		}
		addrText, _ := nw["ip_address"].(string)
		ip := net.ParseIP(addrText).To4()
		mask := net.IPMask(nil)
		if strings.Contains(addrText, "/") {
			a, pfx, err := net.ParseCIDR(addrText)
			if err != nil || a.To4() == nil {
				return nil, bad("ip_address %q is not an IPv4 address", addrText)
			}
			ip, mask = a.To4(), pfx.Mask
		}
		if ip == nil {
			return nil, bad("ip_address %q is not an IPv4 address", addrText)
		}
		if m, _ := nw["netmask"].(string); m != "" {
			mip := net.ParseIP(m).To4()
			if mip == nil {
				return nil, bad("netmask %q is not an IPv4 netmask", m)
			}
			mask = net.IPMask(mip)
		}
		if mask == nil {
			mask = ip.DefaultMask()
		}
		var gw net.IP
		routes, _ := nw["routes"].([]any)
		for _, r := range routes {
			rm, _ := r.(map[string]any)
			dst, _ := rm["network"].(string)
			rmask, _ := rm["netmask"].(string)
			if dst != "0.0.0.0" && dst != "0.0.0.0/0" {
				continue
			}
			if rmask != "" && rmask != "0.0.0.0" {
				continue
			}
			g, _ := rm["gateway"].(string)
			if gw = net.ParseIP(g).To4(); gw == nil {
				return nil, bad("default route gateway %q is not an IPv4 address", g)
			}
			break
		}
		gwText := ""
		if gw != nil {
			gwText = gw.String()
		}
		return []string{fmt.Sprintf("ip=%s::%s:%s:::none", ip, gwText, net.IP(mask).String())}, nil
	}
	return nil, nil
}
