//go:build linux

// Command guest is /init of the bmc package's VM test (see ../README.md):
// it loads the IPMI modules, reads the BMC's LAN settings through
// /dev/ipmi0 with package bmc, prints them on the console and powers off.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rivetmetal/rivet/hardware/bmc"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("RIVET-BMC-ERROR", err)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour) // PID 1 must not exit
	}
}

func run() error {
	for _, m := range [][3]string{{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}} {
		_ = os.MkdirAll(m[1], 0o755)
		if err := unix.Mount(m[0], m[1], m[2], 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m[1], err)
		}
	}
	// The modules are named in load order (ipmi_msghandler first).
	mods, _ := filepath.Glob("/lib/modules/*.ko")
	sort.Strings(mods)
	for _, m := range mods {
		f, err := os.Open(m)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", m, err)
		}
	}
	var dev *bmc.Device
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if dev, err = bmc.Open(bmc.DefaultDevice); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := bmc.Read(ctx, dev)
	if err != nil {
		return err
	}
	fmt.Printf("RIVET-BMC address=%s mac=%s v6=%s\n", info.Address, info.MAC, info.V6Address)
	return nil
}
