// Package ondisk reads the on-disk formats a deploy ramdisk has to
// recognise, natively and read-only: GUID partition tables and master boot
// records, the superblocks of the filesystems a deployed image uses (type,
// UUID and label, as blkid reports them), the signatures of shared cluster
// filesystems, and the identifiers Ironic is told about (the MBR disk
// identifier, partition PARTUUIDs).
//
// Every reader takes an io.ReaderAt (a device node, an image file, an
// in-memory buffer), so it is tested without the devices it describes; it
// never writes (writing tables and filesystems is the imagewriter's job).
// Reads are bounded by the formats' own fixed sizes and limits, never by
// what a corrupt header claims. The package imports only the standard
// library: hardware, imagewriter and agent/bootloader all use it.
package ondisk
