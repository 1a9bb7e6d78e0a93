// Package virtualrack runs a "virtual rack": emulated physical servers,
// their BMCs and a Rivet conductor on a private network, for the
// end-to-end proof of network boot and for operators trying Rivet
// (make rack). Everything lives in a network namespace Start creates, so
// nothing the rack sends leaves it:
//
//   - two bridges: the provisioning network (br-prov, the conductor at
//     .1, its DHCP range from .100) and the BMC network (br-bmc, the
//     conductor at .1, BMC i at .10+i);
//   - the real rivet-conductor binary, run in the namespace, bound to the
//     provisioning address with its boot services on br-prov in full
//     DHCP mode, http_basic authentication with a generated user, and
//     its own image serving (--image-dir);
//   - per node, OpenIPMI's ipmi_sim (internal/ipmisim) listening on the
//     node's BMC address, whose chassis power on starts the node's QEMU:
//     the argv comes from the qemu power driver's Command seam
//     (qemu_boot=network, qemu_bridge=br-prov, the node's NIC model and
//     disk bus), with the boot device the BMC was given (pxe: network
//     first; disk: the disk), plus an in-band KCS interface to the same
//     BMC;
//   - each node enrolled with the ipmi driver, its port MAC and
//     kernel_append_params that put the deploy ramdisk's console on the
//     serial port, then managed and provided (available).
//
// The API is plain HTTP inside the namespace: node firmware fetches the
// iPXE script, kernel and ramdisk from it and cannot verify a private CA
// (docs/security.md). Forward relays it to a loopback port of the host.
// Close stops every process, removes the namespace (with the bridges and
// taps) and the nodes' disk files.
//
// Programs using the package call ipmisim.RunHelper first thing in main
// or TestMain: ipmi_sim runs the calling executable as its helper.
package virtualrack
