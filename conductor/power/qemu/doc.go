// Package qemu is the "qemu" power driver: each node is a QEMU virtual
// machine on the conductor's host, the development and test stand-in for a
// BMC. Power on starts qemu-system-x86_64 (TCG) detached from the caller,
// power off stops it, and the boot device chooses between a direct kernel
// boot of the prepared deploy ramdisk ("pxe") and the firmware booting the
// node's virtual disk ("disk"), with OVMF (UEFI) or SeaBIOS.
//
// A node's network is QEMU user networking with restrict=on: the guest can
// reach nothing but the forwards the driver sets up. Every loopback URL the
// conductor hands to the node through NodeURL (the API, the image server)
// becomes http://<GuestHost>:<port>, forwarded with a guestfwd that runs
// the relay program once per connection to 127.0.0.1:<port>; the agent's
// API (port 9999 in the guest) is forwarded from a loopback port on the
// host, which the driver passes to the agent as ipa-advertise-host and
// ipa-advertise-port so its heartbeat callback URL is directly usable.
//
// Nodes can also look like physical servers (driver_info, docs/ramdisk.md):
// qemu_nic_model and qemu_disk_bus pick an emulated NIC (e1000e, e1000,
// vmxnet3, rtl8139) and disk controller (NVMe, AHCI, MegaRAID SAS, LSI SAS,
// USB); qemu_boot=network boots through the firmware and the NIC's iPXE
// option ROM instead of the kernel shortcut (qemu_nic_rom=none: through
// the firmware's own PXE client and TFTP, OVMF with a virtio NIC only);
// qemu_bridge puts the NIC on a
// Linux bridge through a tap instead of user networking (no forwards, no
// URL translation). NICArgs and DiskArgs build those devices for anyone
// running QEMU, and Driver.Command returns the whole command line of a
// node's next power on for callers that run the VM themselves.
//
// Per-node state (boot device, prepared ramdisk, ports, OVMF variables,
// pid file, console log) lives in Config.StateDir/<node uuid>/. VMs keep
// running when the conductor exits; a new Driver finds them through the
// pid file, checking that the process's command line names the node.
package qemu
