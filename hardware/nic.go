package hardware

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Interface is a physical network interface.
type Interface struct {
	Name       string `json:"name"`
	MACAddress string `json:"mac_address"`
	HasCarrier bool   `json:"has_carrier"`
	// Driver is the kernel driver bound to the device, e.g. "virtio_net".
	Driver string `json:"driver"`
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
