// Package initramfs builds Rivet's deploy ramdisk: a u-root initramfs whose
// init starts rivet-agent as its uinit.
//
// The archive holds u-root's init and a few console commands in one
// busybox binary (/bbin), the agent as a separate binary (/bin/rivet-agent,
// linked from /bin/uinit), the kernel-modules tree given by the caller with a
// /lib/modules-load.d/rivet.conf that u-root's init loads at boot, the
// firmware tree given by the caller (lib/firmware), and an empty
// /etc/resolv.conf that the agent fills from DHCP. The agent itself loads
// the drivers of the devices it finds (hardware/kmod); modules-load.d names
// what no device asks for. The two flavours, hardware and virtual, differ
// only in the trees and the list given (docs/ramdisk.md). Everything is built
// for linux/amd64 with CGO_ENABLED=0, GOAMD64=v1 and -trimpath, so it runs on
// any x86-64 machine and on QEMU's TCG default CPU.
package initramfs
