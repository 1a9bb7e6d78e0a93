package agent

import (
	"net"

	"github.com/vishvananda/netlink"
)

// linksDown brings every network interface but loopback down, for
// system.lockdown. Only in the ramdisk: a host running the agent for
// debugging keeps its network.
func (a *Agent) linksDown() {
	if !InRamdisk() {
		a.log.Warn("lockdown: not in the deploy ramdisk, leaving the network interfaces up")
		return
	}
	links, err := netlink.LinkList()
	if err != nil {
		a.log.Error("lockdown: list links", "error", err)
		return
	}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		if err := netlink.LinkSetDown(l); err != nil {
			a.log.Error("lockdown: link down", "link", l.Attrs().Name, "error", err)
			continue
		}
		a.log.Info("lockdown: link down", "link", l.Attrs().Name)
	}
}
