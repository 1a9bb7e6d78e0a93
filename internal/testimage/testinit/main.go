//go:build linux

// Command testinit is /init of the test images' initramfs (see package
// testimage): it prints the boot marker with the image id and the firmware
// that booted it on the console, then the kernel command line the boot
// loader gave, and powers the machine off.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// idFile is written into the initramfs by testimage.Build.
const idFile = "/etc/rivet-testimage-id"

func main() {
	id, err := os.ReadFile(idFile)
	if err != nil {
		fmt.Println("RIVET-TESTIMAGE-ERROR", err)
	}
	fmt.Printf("RIVET-TESTIMAGE-BOOTED id=%s firmware=%s\n", strings.TrimSpace(string(id)), firmware())
	fmt.Printf("RIVET-TESTIMAGE-CMDLINE %s\n", cmdline())
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("RIVET-TESTIMAGE-ERROR poweroff:", err)
	}
	// PID 1 must not exit: the kernel would panic.
	for {
		time.Sleep(time.Hour)
	}
}

// firmware reports "uefi" when the kernel was started by UEFI firmware.
func firmware() string {
	if err := os.MkdirAll("/sys", 0o755); err != nil {
		return "unknown"
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil && err != unix.EBUSY {
		return "unknown"
	}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		return "uefi"
	}
	return "bios"
}

// cmdline returns the kernel command line (/proc/cmdline).
func cmdline() string {
	if err := os.MkdirAll("/proc", 0o755); err != nil {
		return "unknown: " + err.Error()
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil && err != unix.EBUSY {
		return "unknown: " + err.Error()
	}
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}
