//go:build linux

// Command testinit is /init of the test image's initramfs (see package
// testimage): it prints the boot marker with the image id and the firmware
// that booted it on the console, then powers the machine off.
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
