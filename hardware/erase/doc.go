// Package erase wipes disks for the clean steps erase_devices_metadata,
// erase_devices and erase_devices_express, natively (no wipefs, sgdisk,
// nvme-cli, hdparm or shred in the ramdisk):
//
//   - Metadata zeroes the first and last MiB of every partition and of the
//     whole disk: filesystem, RAID and LVM signatures, the MBR and both
//     GPT copies.
//   - Device erases a whole disk with the best method it supports: NVMe
//     Format NVM (crypto erase when supported, else user-data erase), ATA
//     SECURITY ERASE UNIT (enhanced when supported), else overwriting it
//     with N random passes and a zero pass, as the node's settings say.
//   - Express uses NVMe format or a block discard, else Metadata.
//   - All runs one of those over several disks in parallel, with a limit,
//     and returns one Result per disk.
//
// Progress is reported per disk through a callback. Devices are opened
// O_EXCL, so a disk that is mounted or held by another device fails with
// EBUSY instead of being wiped.
package erase
