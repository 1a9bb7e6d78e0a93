// Package bootloader makes a freshly written disk bootable, as IPA's
// image.install_bootloader does (contract §6.5):
//
//  1. UEFI: find the EFI system partition (by GPT type, else by the UUID
//     Ironic passes), read it natively (FAT, through go-diskfs: no mount),
//     pick its loaders (a shim BOOTX64.CSV first, else the known loader
//     names) and write one UEFI boot entry per loader through efivarfs,
//     replacing entries with the same label.
//  2. A whole-disk image with no root partition UUID: nothing more; the
//     image's own bootloader is trusted.
//  3. GRUB, for partition images: mount the written root filesystem (and
//     the ESP), bind /dev, /proc, /sys and /run into it, and run the
//     image's own grub-install and grub-mkconfig in a chroot.
//
// Installer holds the machine-facing seams (the EFI variable store, the
// command runner, the mounter), so each step is tested without touching
// the host's firmware or filesystems.
package bootloader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rivetmetal/rivet/hardware"
	"github.com/rivetmetal/rivet/hardware/efivar"
)

// Request is one install_bootloader call.
type Request struct {
	// Disk is the install disk (chosen by the root device hints).
	Disk hardware.BlockDevice
	// RootUUID is the root filesystem's UUID (or PARTUUID) for partition
	// images, the disk identifier ("0x…") for whole-disk images.
	RootUUID string
	// EFISystemPartUUID locates the ESP when the disk has no GPT ESP.
	EFISystemPartUUID string
	// PRePBootPartUUID is ppc64 only and ignored here.
	PRePBootPartUUID string
	// TargetBootMode is "uefi" or "bios"; "" means the mode the ramdisk
	// booted in.
	TargetBootMode string
	// AllowGRUB is Ironic's enable_bios_bootloader_install: when false
	// the GRUB step is refused (CVE-2026-43003).
	AllowGRUB bool
}

// Installer carries out requests.
type Installer struct {
	// EFI is the UEFI variable store; a store that is not Available means
	// the ramdisk did not boot through UEFI, or efivarfs is missing.
	EFI efivar.Store
	// UEFIBooted says the firmware booted the ramdisk through UEFI
	// (/sys/firmware/efi exists), whether or not EFI is available.
	UEFIBooted bool
	// DevRoot holds dev/ with the disk's device nodes ("" means "/").
	DevRoot string
	// Run runs argv chrooted into root; nil means running it for real.
	Run func(ctx context.Context, root string, argv []string) ([]byte, error)
	// Mounter mounts and unmounts; nil means mount(2).
	Mounter Mounter
	// TempDir is where mount points are made; "" means os.TempDir().
	TempDir string
	Log     *slog.Logger
}

// ErrNoESP is returned when a UEFI install finds no EFI system partition.
var ErrNoESP = errors.New("no EFI system partition")

// ErrGRUBDisabled is returned when GRUB would be needed but Ironic did not
// enable it.
var ErrGRUBDisabled = errors.New("GRUB installation is disabled")

// Outcome says what Install did.
type Outcome struct {
	// Entries are the UEFI boot entries written ("Boot0004 ironic1 →
	// \EFI\BOOT\BOOTX64.EFI").
	Entries []string
	// GRUB is true when grub-install ran.
	GRUB bool
	// Note explains a decision to do nothing more.
	Note string
}

func (in *Installer) log() *slog.Logger {
	if in.Log == nil {
		return slog.Default()
	}
	return in.Log
}

// Install makes req.Disk bootable.
func (in *Installer) Install(ctx context.Context, req Request) (Outcome, error) {
	var out Outcome
	uefiBooted := in.EFI.Available()
	target := req.TargetBootMode
	if target == "" {
		target = "bios"
		if uefiBooted {
			target = "uefi"
		}
	}
	if target == "uefi" {
		switch {
		case !uefiBooted && in.UEFIBooted:
			in.log().Warn("UEFI target, but the UEFI variables are not available (efivarfs is not mounted and could not be): no boot entry can be written; continuing with the image's own fallback loader",
				"disk", req.Disk.Path)
		case !uefiBooted:
			in.log().Warn("UEFI target but the ramdisk did not boot through UEFI: no boot entry can be written; continuing with the image's own fallback loader",
				"disk", req.Disk.Path)
		default:
			entries, err := in.registerUEFI(ctx, req)
			if err != nil {
				return out, err
			}
			out.Entries = entries
			if len(entries) > 0 {
				return out, nil
			}
			in.log().Warn("empty EFI system partition; GRUB will populate it", "disk", req.Disk.Path)
		}
	}
	if isDiskIdentifier(req.RootUUID) {
		out.Note = "whole-disk image (root UUID " + req.RootUUID + "): its own bootloader is trusted"
		in.log().Info("not installing GRUB: "+out.Note, "disk", req.Disk.Path)
		return out, nil
	}
	if !req.AllowGRUB {
		return out, fmt.Errorf("%w: the image needs GRUB installed from inside it, and Ironic's enable_bios_bootloader_install is off", ErrGRUBDisabled)
	}
	if err := in.installGRUB(ctx, req, target == "uefi"); err != nil {
		return out, err
	}
	out.GRUB = true
	if target == "uefi" && uefiBooted {
		entries, err := in.registerUEFI(ctx, req)
		if err != nil {
			return out, err
		}
		out.Entries = entries
	}
	return out, nil
}

// isDiskIdentifier reports a whole-disk image's root "UUID": empty, or
// the MBR disk signature "0x…" that get_partition_uuids reports.
func isDiskIdentifier(s string) bool {
	return s == "" || strings.HasPrefix(strings.ToLower(s), "0x")
}
