// Package efivar reads and writes UEFI variables through efivarfs
// (/sys/firmware/efi/efivars), natively: no efibootmgr in the ramdisk. It
// encodes and decodes EFI_LOAD_OPTION boot entries and their device paths
// (UEFI spec §3.1.3 and §10.3), lists and edits Boot#### and BootOrder, and
// reads BootCurrent.
//
// A Store works on any directory laid out like efivarfs, so tests use a
// temporary directory; on Linux it also clears efivarfs's immutable flag
// before changing or deleting a variable.
package efivar
