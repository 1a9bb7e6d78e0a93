//go:build linux

// Command testuinit is the uinit of the initramfs package's VM test: it
// reports what the deploy ramdisk's init set up (kernel modules loaded, a
// virtio NIC, the virtio disk) on the console and, since kernel messages
// can cut into a console line, also in the first sector of the virtio disk;
// then it powers off. See ../README.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	deadline := time.Now().Add(20 * time.Second)
	nic, disk := "", ""
	for time.Now().Before(deadline) {
		nic, disk = findNIC(), findDisk("/dev/vda")
		if nic != "" && disk != "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	report := fmt.Sprintf("RIVET-TEST-UINIT uptime=%s nic=%s disk=%s modules=%s vfat=%s\n", uptime(), orNone(nic), orNone(disk),
		strings.Join(virtioModules(), ","), onDemandVFAT())
	fmt.Print(report)
	if disk != "" {
		if err := writeReport("/dev/vda", report); err != nil {
			fmt.Println("RIVET-TEST-UINIT disk report failed:", err)
		}
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("RIVET-TEST-UINIT poweroff failed:", err)
	}
	select {}
}

// writeReport puts the report at the start of the disk, flushed.
func writeReport(path, report string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(report), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// findNIC returns name/driver/mac of the first network interface bound to
// virtio_net.
func findNIC() string {
	ifaces, _ := filepath.Glob("/sys/class/net/*")
	for _, dir := range ifaces {
		drv, err := os.Readlink(filepath.Join(dir, "device", "driver"))
		if err != nil || filepath.Base(drv) != "virtio_net" {
			continue
		}
		mac, _ := os.ReadFile(filepath.Join(dir, "address"))
		return filepath.Base(dir) + "/virtio_net/" + strings.TrimSpace(string(mac))
	}
	return ""
}

// findDisk returns path/size of the block device at path.
func findDisk(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil || size == 0 {
		return ""
	}
	return fmt.Sprintf("%s/%d", path, size)
}

// onDemandVFAT mounts the (blank) virtio disk as vfat read-only: vfat is
// not loaded at boot, so the kernel asks /sbin/modprobe for "fs-vfat"
// before the mount fails. It returns "loaded" when vfat is then in the
// kernel.
func onDemandVFAT() string {
	if loaded("vfat") {
		return "loaded-at-boot"
	}
	_ = os.MkdirAll("/mnt", 0o755)
	err := unix.Mount("/dev/vda", "/mnt", "vfat", unix.MS_RDONLY, "")
	if err == nil {
		_ = unix.Unmount("/mnt", 0)
	}
	if loaded("vfat") {
		return "loaded"
	}
	return "missing"
}

// loaded reports whether a module is in /proc/modules.
func loaded(name string) bool {
	b, _ := os.ReadFile("/proc/modules")
	for _, line := range strings.Split(string(b), "\n") {
		if n, _, _ := strings.Cut(line, " "); n == name {
			return true
		}
	}
	return false
}

// virtioModules lists the loaded kernel modules whose names start with virtio.
func virtioModules() []string {
	b, _ := os.ReadFile("/proc/modules")
	var mods []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, "virtio") {
			mods = append(mods, name)
		}
	}
	sort.Strings(mods)
	return mods
}

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	up, _, _ := strings.Cut(string(b), " ")
	return up
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
