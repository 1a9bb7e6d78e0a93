// Package hardware describes the machine the agent runs on, read from sysfs
// and procfs rather than from udev (a u-root ramdisk has none): block devices,
// network interfaces, and which devices are in use. It also chooses the
// install disk from Ironic root device hints.
//
// Every reader takes a root directory ("/" in production, a testdata tree in
// tests), so the parsing is tested without the devices it describes.
// Package hardware knows nothing about HTTP, the agent API or the conductor.
package hardware
