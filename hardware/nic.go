package hardware

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Interface is a physical network interface as sysfs describes it
// (hardware/inventory turns it into the inventory's "interfaces" entry).
type Interface struct {
	Name       string
	MACAddress string
	HasCarrier bool
	// Vendor and Product are the PCI (or virtio) IDs, e.g. "0x8086".
	Vendor  string
	Product string
	// SpeedMbps is the link speed, 0 when unknown or down.
	SpeedMbps int
	// PCIAddress is the NIC's PCI function, e.g. "0000:00:03.0".
	PCIAddress string
	// Driver is the kernel driver bound to the device, e.g. "virtio_net".
	Driver string
}

// ListInterfaces returns the physical network interfaces (those backed by a
// device; loopback, bridges, tunnels and other virtual links are left out),
// sorted by name, reading sysfs under root ("" means "/").
func ListInterfaces(root string) ([]Interface, error) {
	if root == "" {
		root = "/"
	}
	dir := filepath.Join(root, "sys/class/net")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []Interface
	for _, e := range entries {
		ifdir := filepath.Join(dir, e.Name())
		if !exists(filepath.Join(ifdir, "device")) {
			continue
		}
		mac := readString(filepath.Join(ifdir, "address"))
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 || isZero(hw) {
			continue
		}
		it := Interface{Name: e.Name(), MACAddress: hw.String()}
		it.HasCarrier = readString(filepath.Join(ifdir, "carrier")) == "1"
		if drv, err := os.Readlink(filepath.Join(ifdir, "device/driver")); err == nil {
			it.Driver = filepath.Base(drv)
		}
		it.Vendor = readString(filepath.Join(ifdir, "device/vendor"))
		it.Product = readString(filepath.Join(ifdir, "device/device"))
		if sp := readIntOr(filepath.Join(ifdir, "speed"), 0); sp > 0 {
			it.SpeedMbps = int(sp)
		}
		if target, err := filepath.EvalSymlinks(filepath.Join(ifdir, "device")); err == nil {
			for _, e := range strings.Split(filepath.ToSlash(target), "/") {
				if pciAddr.MatchString(e) {
					it.PCIAddress = e
				}
			}
		}
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// NormalizeMAC returns a MAC address in lowercase colon form, accepting the
// pxelinux BOOTIF form ("01-aa-bb-cc-dd-ee-ff") and dashes.
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if strings.Count(s, "-") == 6 && strings.HasPrefix(s, "01-") {
		s = strings.TrimPrefix(s, "01-")
	}
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("invalid MAC address %q", s)
	}
	return hw.String(), nil
}
