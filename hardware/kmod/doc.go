// Package kmod loads Linux kernel modules for the devices a machine has,
// the job udev and modprobe do on an installed system, in pure Go for the
// deploy ramdisk (which has neither).
//
// At boot (coldplug) it reads the modalias of every device in sysfs
// (/sys/bus/*/devices/*/modalias), matches it against the patterns of
// modules.alias, and loads each matching module after its dependencies
// (modules.dep) and soft dependencies (modules.softdep) with
// finit_module(2). Devices that appear later (hotplug: SCSI disks found by
// a controller driver, virtio devices created by virtio_pci, USB devices)
// arrive as kernel uevents on a NETLINK_KOBJECT_UEVENT socket, opened
// before the sysfs walk so that nothing falls between the two. A module
// that fails to load is logged and the others go on; Report says which
// modules were loaded, which failed and which devices have no driver.
//
// Module options come from the kernel command line as for modprobe
// (name.param=value), and modprobe.blacklist=a,b keeps modules out.
package kmod
