// Package hardware describes the machine the agent runs on, read from sysfs
// and procfs rather than from udev (a u-root ramdisk has none): block devices
// with the identity udev would give them (model, serial, WWN, by-path,
// transport, from VPD pages and the sysfs device path), network interfaces,
// which devices are in use or are the medium the ramdisk came from, and
// which hold shared cluster filesystems. It also chooses the install disk
// from Ironic root device hints.
//
// Every reader takes a root directory ("/" in production, a testdata tree in
// tests), so the parsing is tested without the devices it describes.
// Package hardware knows nothing about HTTP, the agent API or the conductor.
//
// Subpackages: inventory (IPA's inventory, with ghw), erase (disk erasure),
// ondisk (the on-disk format readers: partition tables, filesystem
// signatures, disk identifiers), efivar (UEFI variables through efivarfs),
// manager (the hardware-manager seam: support levels, steps, per-disk
// erase and inventory dispatch).
package hardware
