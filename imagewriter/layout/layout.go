// Package layout plans partition tables the way Ironic's agent makes them
// (contract §6.3): for partition images, the ESP or BIOS boot partition,
// ephemeral, swap, config drive and root last, contiguous from 1 MiB, in
// MiB; and, for whole-disk images, a config drive partition in the last
// 64 MiB of the disk. It also encodes the swap signature mkswap writes.
// Plans are pure values; writing them is the caller's job.
package layout

import (
	"errors"
	"fmt"
	"strings"
)

// Role names a partition's job, with the keys get_partition_uuids reports.
type Role string

// Partition roles.
const (
	RoleRoot        Role = "root"
	RoleSwap        Role = "swap"
	RoleEphemeral   Role = "ephemeral"
	RoleConfigdrive Role = "configdrive"
	RoleESP         Role = "efi system partition"
	RoleBIOSBoot    Role = "BIOS Boot partition"
)

// Table is a partition table type.
type Table string

// Partition table types, named as Ironic's disk_label names them.
const (
	GPT   Table = "gpt"
	MSDOS Table = "msdos"
)

// GPT partition type GUIDs and MBR type bytes used by the plans.
const (
	TypeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeBIOSBoot  = "21686148-6449-6E6F-744E-656564454649"
	TypeLinux     = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeLinuxSwap = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	MBRLinux      = 0x83
	MBRSwap       = 0x82
)

// Sizes from the contract.
const (
	MiB = 1 << 20
	// DefaultESPMB is the ESP size of current Ironic (550 MiB).
	DefaultESPMB = 550
	// BIOSBootMB is the BIOS boot partition's size.
	BIOSBootMB = 1
	// ConfigdriveMB is the space a whole-disk image's new config drive
	// partition takes at the end of the disk.
	ConfigdriveMB = 64
	// gptTailMB keeps the last MiB free for the backup GPT.
	gptTailMB     = 1
	mbrMaxSectors = 1<<32 - 1
)

// ErrDoesNotFit is returned when the partitions do not fit the disk.
var ErrDoesNotFit = errors.New("partitions do not fit the disk")

// Spec is what a partition image asks for (image_info's partition keys).
type Spec struct {
	// BootMode is "uefi" or "bios"; "" means bios.
	BootMode string
	// DiskLabel is "gpt" or "msdos"; "" means msdos. UEFI forces gpt.
	DiskLabel string
	// RootMB is the root partition size; 0 takes the rest of the disk.
	RootMB int64
	// SwapMB and EphemeralMB are 0 for none.
	SwapMB, EphemeralMB int64
	// ConfigdriveBytes is the decoded config drive's size; 0 for none.
	ConfigdriveBytes int64
	// ESPMB is the ESP size; 0 means DefaultESPMB.
	ESPMB int64
}

// Partition is one planned partition.
type Partition struct {
	// Number is the partition number (1-based).
	Number int
	Role   Role
	// Start and Size are in bytes, MiB-aligned.
	Start, Size int64
	// GPTType and MBRType are the partition type for each table kind.
	GPTType string
	MBRType byte
	// Bootable sets the MBR boot flag.
	Bootable bool
	// Name is the GPT partition name.
	Name string
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Layout is a planned partition table.
type Layout struct {
	Table      Table
	DiskSize   int64
	SectorSize int64
	Partitions []Partition
}

// Find returns the partition with role r.
func (l *Layout) Find(r Role) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Role == r {
			return p, true
		}
	}
	return Partition{}, false
}

// TableFor returns the table type a boot mode and disk label give.
func TableFor(bootMode, diskLabel string) (Table, error) {
	bootMode = strings.ToLower(bootMode)
	switch bootMode {
	case "", "bios", "uefi":
	default:
		return "", fmt.Errorf("unknown boot mode %q (bios or uefi)", bootMode)
	}
	if bootMode == "uefi" {
		return GPT, nil
	}
	switch strings.ToLower(diskLabel) {
	case "", "msdos":
		return MSDOS, nil
	case "gpt":
		return GPT, nil
	}
	return "", fmt.Errorf("unknown disk_label %q (msdos or gpt)", diskLabel)
}

// Plan lays out a partition image's disk in Ironic's order: ESP (UEFI) or
// BIOS boot (BIOS + GPT), ephemeral, swap, config drive, root last.
func Plan(s Spec, diskSize, sectorSize int64) (*Layout, error) {
	table, err := TableFor(s.BootMode, s.DiskLabel)
	if err != nil {
		return nil, err
	}
	if sectorSize <= 0 {
		sectorSize = 512
	}
	if s.RootMB < 0 || s.SwapMB < 0 || s.EphemeralMB < 0 || s.ConfigdriveBytes < 0 || s.ESPMB < 0 {
		return nil, fmt.Errorf("negative partition size in %+v", s)
	}
	l := &Layout{Table: table, DiskSize: diskSize, SectorSize: sectorSize}
	usableEnd := diskSize / MiB * MiB
	if table == GPT {
		usableEnd -= gptTailMB * MiB
	}
	next := int64(MiB)
	add := func(role Role, mb int64, gptType string, mbrType byte, name string) {
		l.Partitions = append(l.Partitions, Partition{Number: len(l.Partitions) + 1, Role: role, Start: next, Size: mb * MiB,
			GPTType: gptType, MBRType: mbrType, Name: name})
		next += mb * MiB
	}
	bios := !strings.EqualFold(s.BootMode, "uefi")
	switch {
	case !bios:
		esp := s.ESPMB
		if esp == 0 {
			esp = DefaultESPMB
		}
		add(RoleESP, esp, TypeESP, 0xef, "efi-part")
	case table == GPT:
		add(RoleBIOSBoot, BIOSBootMB, TypeBIOSBoot, 0, "bios-boot")
	}
	if s.EphemeralMB > 0 {
		add(RoleEphemeral, s.EphemeralMB, TypeLinux, MBRLinux, "ephemeral0")
	}
	if s.SwapMB > 0 {
		add(RoleSwap, s.SwapMB, TypeLinuxSwap, MBRSwap, "swap1")
	}
	if s.ConfigdriveBytes > 0 {
		add(RoleConfigdrive, (s.ConfigdriveBytes+MiB-1)/MiB, TypeLinux, MBRLinux, "config-2")
	}
	root := s.RootMB
	if root == 0 {
		root = (usableEnd - next) / MiB
		if root <= 0 {
			return nil, fmt.Errorf("%w: no room left for the root partition on a %d-byte disk", ErrDoesNotFit, diskSize)
		}
	}
	add(RoleRoot, root, TypeLinux, MBRLinux, "root")
	if bios && table == MSDOS {
		l.Partitions[len(l.Partitions)-1].Bootable = true
	}
	if next > usableEnd {
		return nil, fmt.Errorf("%w: %d MiB of partitions on a %d-byte disk (%d MiB usable)", ErrDoesNotFit, next/MiB, diskSize, usableEnd/MiB)
	}
	if table == MSDOS {
		if len(l.Partitions) > 4 {
			return nil, fmt.Errorf("%w: %d partitions on an msdos table (4 primary at most)", ErrDoesNotFit, len(l.Partitions))
		}
		if next/sectorSize > mbrMaxSectors {
			return nil, fmt.Errorf("%w: an msdos table cannot address past 2^32 sectors", ErrDoesNotFit)
		}
	}
	return l, nil
}

// ConfigdriveAtEnd plans a whole-disk image's new config drive partition:
// the last 64 MiB of the disk (after the backup GPT's MiB on GPT; on an
// msdos disk over 2 TiB, just below the 2 TiB mark). used are the
// partitions already on the disk; the new one must not overlap them.
func ConfigdriveAtEnd(table Table, used []Partition, diskSize, sectorSize int64) (Partition, error) {
	if sectorSize <= 0 {
		sectorSize = 512
	}
	end := diskSize / MiB * MiB
	switch table {
	case GPT:
		end -= gptTailMB * MiB
	case MSDOS:
		if limit := int64(mbrMaxSectors) * sectorSize / MiB * MiB; end > limit {
			end = limit
		}
		if len(used) >= 4 {
			return Partition{}, fmt.Errorf("%w: the msdos table already has 4 partitions; no room for a config drive", ErrDoesNotFit)
		}
	default:
		return Partition{}, fmt.Errorf("unknown partition table %q", table)
	}
	p := Partition{Role: RoleConfigdrive, Start: end - ConfigdriveMB*MiB, Size: ConfigdriveMB * MiB,
		GPTType: TypeLinux, MBRType: MBRLinux, Name: "config-2"}
	maxNum := 0
	for _, u := range used {
		if u.Start < p.End() && p.Start < u.End() {
			return Partition{}, fmt.Errorf("%w: the last %d MiB of the disk are taken by partition %d", ErrDoesNotFit, ConfigdriveMB, u.Number)
		}
		maxNum = max(maxNum, u.Number)
	}
	if p.Start < MiB {
		return Partition{}, fmt.Errorf("%w: a %d-byte disk has no room for a config drive", ErrDoesNotFit, diskSize)
	}
	p.Number = maxNum + 1
	return p, nil
}
