package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
	"golang.org/x/sys/unix"
)

// TestVMNetworkBootOnBridge: qemu_boot=network with qemu_bridge, in a
// network namespace the test makes (a bridge, nothing else). The driver
// powers the node on with boot device pxe; QEMU makes the tap, the ifup
// script puts it on the bridge, and the firmware (SeaBIOS, then OVMF)
// runs the NIC's iPXE option ROM, whose DHCP DISCOVER — with the PXE
// client class of the firmware's architecture and the node's MAC — the
// test captures on the bridge. Power off removes the tap. Nothing leaves
// the namespace.
func TestVMNetworkBootOnBridge(t *testing.T) {
	for _, c := range []struct{ mode, model, arch string }{
		{BootBIOS, "e1000", "00000"},  // SeaBIOS + pxe-e1000.rom
		{BootUEFI, "virtio", "00007"}, // OVMF + efi-virtio.rom (x86-64 UEFI)
	} {
		t.Run(c.mode+"-"+c.model, func(t *testing.T) {
			testNetworkBoot(t, c.mode, c.model, "PXEClient:Arch:"+c.arch)
		})
	}
}

func testNetworkBoot(t *testing.T, mode, model, class string) {
	ns := vmtest.Netns(t)
	ipBin := vmtest.Tool(t, "ip")
	vmtest.Run(t, ipBin, "-n", ns, "link", "add", "br0", "type", "bridge")
	vmtest.Run(t, ipBin, "-n", ns, "link", "set", "br0", "up")

	// QEMU (and so the ifup script) runs inside the namespace.
	wrapper := filepath.Join(t.TempDir(), "qemu-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s -k 5 300 %s \"$@\"\n", ipBin, ns, vmtest.Tool(t, "timeout"), vmtest.QEMU(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, Config{Binary: wrapper})
	if mode == BootUEFI && d.cfg.OVMFCode == "" {
		vmtest.Unavailable(t, "OVMF not installed (run make deps)")
	}
	id := "7e7b0000-7f0e-4c1e-9a2c-1d1f0f6f7a1" + map[string]string{BootBIOS: "0", BootUEFI: "1"}[mode]
	n := testNode(t, id, map[string]any{InfoBootMode: mode, InfoBoot: BootNetwork, InfoBridge: "br0",
		InfoNICModel: model, InfoDiskBus: DiskAHCI, InfoMemoryMB: 512})
	if err := os.Truncate(n.DriverInfo[InfoDisk].(string), 64<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := d.SetBootDevice(ctx, n, power.BootPXE, true); err != nil {
		t.Fatal(err)
	}
	capture, err := listenDHCP(ns, "br0")
	if err != nil {
		t.Fatalf("capture on br0 in %s: %v", ns, err)
	}
	defer capture.close()
	t.Cleanup(func() { _ = d.SetPowerState(context.Background(), n, power.Off) })
	start := time.Now()
	if err := d.SetPowerState(ctx, n, power.On); err != nil {
		t.Fatal(err)
	}
	tap := tapName(id)
	if out := vmtest.Run(t, ipBin, "-n", ns, "-o", "link", "show", "master", "br0"); !strings.Contains(out, tap) {
		t.Errorf("tap %s is not a port of br0: %s", tap, out)
	}
	mac, _ := net.ParseMAC(testMAC)
	got, err := capture.waitDiscover(ctx, mac)
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(d.cfg.StateDir, id, "console.log"))
		t.Fatalf("no DHCP DISCOVER from %s on the bridge: %v\nconsole:\n%s", testMAC, err, b)
	}
	if !strings.HasPrefix(got, class) {
		t.Errorf("DHCP class identifier %q, want %s... (iPXE in the firmware)", got, class)
	}
	t.Logf("%s/%s: iPXE's DHCP DISCOVER (%s) on the bridge %v after power on", mode, model, got, time.Since(start).Round(10*time.Millisecond))
	if err := d.SetPowerState(ctx, n, power.Off); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ipBin, "-n", ns, "link", "show", tap).CombinedOutput(); err == nil {
		t.Errorf("tap %s still exists after power off: %s", tap, out)
	}
}

// dhcpCapture is a packet socket on an interface inside a namespace.
type dhcpCapture struct{ fd int }

// listenDHCP opens an AF_PACKET socket bound to iface in the namespace ns;
// the socket stays in that namespace after the thread returns to its own.
func listenDHCP(ns, iface string) (*dhcpCapture, error) {
	var c *dhcpCapture
	err := vmtest.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_IP)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return os.NewSyscallError("socket(AF_PACKET)", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return os.NewSyscallError("bind(AF_PACKET)", err)
		}
		tv := unix.NsecToTimeval(int64(500 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c = &dhcpCapture{fd: fd}
		return nil
	})
	return c, err
}

func (c *dhcpCapture) close() { unix.Close(c.fd) }

// waitDiscover returns the class identifier (option 60) of the first
// DHCP DISCOVER from mac.
func (c *dhcpCapture) waitDiscover(ctx context.Context, mac net.HardwareAddr) (string, error) {
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", os.NewSyscallError("recvfrom", err)
		}
		if class, ok := dhcpDiscover(buf[:n], mac); ok {
			return class, nil
		}
	}
	return "", ctx.Err()
}

// dhcpDiscover parses an IPv4 packet: a UDP datagram to port 67 holding a
// BOOTREQUEST from mac with DHCP message type DISCOVER. It returns the
// class identifier option.
func dhcpDiscover(pkt []byte, mac net.HardwareAddr) (string, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_UDP {
		return "", false
	}
	ihl := int(pkt[0]&0xf) * 4
	if len(pkt) < ihl+8 || binary.BigEndian.Uint16(pkt[ihl+2:]) != 67 {
		return "", false
	}
	b := pkt[ihl+8:]
	const optStart = 240 // fixed BOOTP fields and the magic cookie
	if len(b) < optStart || b[0] != 1 || !bytes.Equal(b[28:34], mac) ||
		!bytes.Equal(b[236:240], []byte{99, 130, 83, 99}) {
		return "", false
	}
	class, discover := "", false
	for i := optStart; i < len(b); {
		code := b[i]
		if code == 255 {
			break
		}
		if code == 0 {
			i++
			continue
		}
		if i+1 >= len(b) || i+2+int(b[i+1]) > len(b) {
			break
		}
		val := b[i+2 : i+2+int(b[i+1])]
		switch code {
		case 53:
			discover = len(val) == 1 && val[0] == 1
		case 60:
			class = string(val)
		}
		i += 2 + len(val)
	}
	return class, discover
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
