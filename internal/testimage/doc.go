// Package testimage builds the small, bootable whole-disk image that the
// demo and the end-to-end test deploy: a GPT disk whose FAT32 EFI system
// partition holds a standalone GRUB as EFI/BOOT/BOOTX64.EFI, a kernel
// (/vmlinuz) and a tiny initramfs (/initrd.img) whose init, a static Go
// program (testinit), prints
//
//	RIVET-TESTIMAGE-BOOTED id=<image id> firmware=uefi
//
// on the serial console and powers the machine off. The protective MBR
// carries a non-zero disk signature derived from the id. The image boots
// with OVMF from any disk at least as large as the image; the space after
// the partition is zeros.
package testimage
