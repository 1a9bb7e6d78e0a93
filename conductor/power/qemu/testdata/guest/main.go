//go:build linux

// Command guest stands in for the agent in the qemu driver's VM test: it
// calls the conductor-side URL from the kernel command line through the
// driver's forward and serves the agent port. See ../README.md.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/rivetmetal/rivet/internal/kernelcmdline"
)

func main() {
	params := cmdline()
	iface, mac := waitNIC(20 * time.Second)
	if iface == "" {
		fmt.Println("RIVET-QEMU-GUEST error: no virtio NIC")
		return
	}
	if err := configure(iface); err != nil {
		fmt.Println("RIVET-QEMU-GUEST error:", err)
		return
	}
	l, err := net.Listen("tcp", ":9999")
	if err != nil {
		fmt.Println("RIVET-QEMU-GUEST error:", err)
		return
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "guest-ok mac=%s", mac)
	}))
	client := &http.Client{Timeout: 15 * time.Second}
	for n := 1; n <= 2; n++ {
		url := fmt.Sprintf("%s/hello?mac=%s&n=%d", strings.TrimRight(params["ipa-api-url"], "/"), mac, n)
		resp, err := client.Get(url)
		if err != nil {
			fmt.Printf("RIVET-QEMU-GUEST get n=%d error=%v\n", n, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("RIVET-QEMU-GUEST get n=%d status=%d body=%s\n", n, resp.StatusCode, body)
	}
	fmt.Printf("RIVET-QEMU-GUEST ready mac=%s advertise=%s:%s\n", mac, params["ipa-advertise-host"], params["ipa-advertise-port"])
	for {
		time.Sleep(time.Hour)
	}
}

// cmdline is the kernel command line's parameters (none when it cannot
// be read: the test then sees the guest report empty values).
func cmdline() map[string]string {
	params, err := kernelcmdline.Read()
	if err != nil {
		fmt.Println("RIVET-QEMU-GUEST", err)
		return map[string]string{}
	}
	return params
}

// waitNIC returns the name and MAC of the first interface bound to virtio_net.
func waitNIC(limit time.Duration) (string, string) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		dirs, _ := filepath.Glob("/sys/class/net/*")
		for _, dir := range dirs {
			drv, err := os.Readlink(filepath.Join(dir, "device", "driver"))
			if err != nil || filepath.Base(drv) != "virtio_net" {
				continue
			}
			mac, _ := os.ReadFile(filepath.Join(dir, "address"))
			return filepath.Base(dir), strings.TrimSpace(string(mac))
		}
	}
	return "", ""
}

// configure brings the NIC up with QEMU user networking's first address.
func configure(iface string) error {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr("10.0.2.15/24")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}
