package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// Configurator configures the ramdisk's network.
type Configurator struct {
	Log *slog.Logger
	// SysRoot is where sysfs is read; "" means "/".
	SysRoot string
}

// Configure applies an "ip=" setting. DHCP is retried until at least one
// NIC has a lease or ctx ends; every lease obtained is applied.
func (c Configurator) Configure(ctx context.Context, spec string) error {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			log.Warn("bring up lo", "error", err)
		}
	}
	mode, st, err := ParseIP(spec)
	if err != nil {
		return err
	}
	switch mode {
	case ModeOff:
		log.Info("network configuration off (ip=off)")
		return nil
	case ModeStatic:
		return c.static(st, log)
	}
	for attempt := 1; ; attempt++ {
		n, err := c.dhcp(ctx, st, log)
		if n > 0 {
			return nil
		}
		log.Warn("no DHCP lease yet; retrying", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("DHCP: no lease on any interface: %w", errors.Join(err, ctx.Err()))
		case <-time.After(2 * time.Second):
		}
	}
}

func (c Configurator) links(device string) ([]netlink.Link, error) {
	ifs, err := hardware.ListInterfaces(c.SysRoot)
	if err != nil {
		return nil, err
	}
	var links []netlink.Link
	for _, it := range ifs {
		if device != "" && it.Name != device && it.MACAddress != device {
			continue
		}
		l, err := netlink.LinkByName(it.Name)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", it.Name, err)
		}
		links = append(links, l)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("no network interface found (device %q)", device)
	}
	return links, nil
}

// dhcp asks for DHCPv4 leases on the NICs and applies each one; it returns
// how many were applied.
func (c Configurator) dhcp(ctx context.Context, st *Static, log *slog.Logger) (int, error) {
	device := ""
	if st != nil {
		device = st.Device
	}
	links, err := c.links(device)
	if err != nil {
		return 0, err
	}
	cfg := dhclient.Config{Timeout: 5 * time.Second, Retries: 3}
	applied := 0
	var errs []error
	for r := range dhclient.SendRequests(ctx, links, true, false, cfg, 20*time.Second) {
		name := r.Interface.Attrs().Name
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, r.Err))
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			errs = append(errs, fmt.Errorf("%s: configure lease: %w", name, err))
			continue
		}
		log.Info("DHCP lease configured", "interface", name, "lease", r.Lease.String())
		applied++
	}
	return applied, errors.Join(errs...)
}

func (c Configurator) static(st *Static, log *slog.Logger) error {
	links, err := c.links(st.Device)
	if err != nil {
		return err
	}
	l := links[0]
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", l.Attrs().Name, err)
	}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: &st.Address}); err != nil {
		return fmt.Errorf("address %s on %s: %w", st.Address.String(), l.Attrs().Name, err)
	}
	if st.Gateway != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: st.Gateway}); err != nil {
			return fmt.Errorf("default route via %s: %w", st.Gateway, err)
		}
	}
	log.Info("static network configured", "interface", l.Attrs().Name, "address", st.Address.String(), "gateway", st.Gateway)
	return nil
}
