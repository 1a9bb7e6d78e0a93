package hardware

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// GiB is 2^30 bytes, the unit of the size root device hint.
const GiB = 1 << 30

// BlockDevice is a whole disk as the inventory and the root device hints see
// it (hardware/inventory turns it into the inventory's "disks" entry).
type BlockDevice struct {
	// Name is the kernel name, e.g. "sda", "nvme0n1", "vda", "loop3".
	Name string
	// Path is the device node, e.g. "/dev/sda". It is the inventory's "name".
	Path       string
	Model      string
	Vendor     string
	Serial     string
	WWN        string
	WWNWithExt string
	WWNVendExt string
	HCTL       string
	ByPath     string
	// Size is in bytes.
	Size       int64
	Rotational bool
	// LogicalSectorSize and PhysicalSectorSize are in bytes.
	LogicalSectorSize  int
	PhysicalSectorSize int
	Tran               string
	ReadOnly           bool
	Removable          bool
	// BootMedia, when not empty, says why this device is the medium the
	// ramdisk itself came from (virtual media, the UEFI boot entry in use);
	// such a device is never chosen as the install disk nor erased.
	BootMedia string
	// Major and Minor are the device numbers.
	Major, Minor int
	// Partitions are the device's partitions as the kernel knows them.
	Partitions []Partition
}

// Partition is a partition of a BlockDevice.
type Partition struct {
	Name         string
	Path         string
	Number       int
	Major, Minor int
	// Start and Size are in bytes.
	Start, Size int64
}

// DevNum returns "major:minor".
func (d BlockDevice) DevNum() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// String names the device for messages: path, size and serial.
func (d BlockDevice) String() string {
	s := fmt.Sprintf("%s (%.1f GiB", d.Path, float64(d.Size)/GiB)
	if d.Model != "" {
		s += ", model " + d.Model
	}
	if d.Serial != "" {
		s += ", serial " + d.Serial
	}
	return s + ")"
}

// virtualPrefixes name kernel block devices that are never install disks
// unless explicitly allowed: loop devices, RAM disks, device-mapper, md,
// network block devices, optical and floppy drives.
var virtualPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd", "mtdblock"}

// Lister reads block devices from sysfs.
type Lister struct {
	// Root is the filesystem root holding sys/ and dev/; "" means "/".
	Root string
	// Allow, when not empty, restricts the result to these device paths
	// (e.g. "/dev/loop3"), whatever their kind: it is the only way loop
	// devices become candidates (ipa-block-devices). When empty, virtual
	// devices (loop, ram, dm, md, nbd, optical, floppy) are left out.
	Allow []string
}

func (l Lister) root() string {
	if l.Root == "" {
		return "/"
	}
	return l.Root
}

// List returns the whole disks, sorted by name. Devices of size zero (e.g.
// unattached loop devices, empty card readers) are left out.
func (l Lister) List() ([]BlockDevice, error) {
	classDir := filepath.Join(l.root(), "sys/class/block")
	entries, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	allowed := map[string]bool{}
	for _, a := range l.Allow {
		allowed[filepath.Base(filepath.Clean(a))] = true
	}
	var devs []BlockDevice
	for _, e := range entries {
		name := e.Name()
		sysDir := filepath.Join(classDir, name)
		if exists(filepath.Join(sysDir, "partition")) {
			continue
		}
		if len(allowed) > 0 {
			if !allowed[name] {
				continue
			}
		} else if isVirtual(name) {
			continue
		}
		d, err := l.readDevice(name, sysDir)
		if err != nil {
			return nil, err
		}
		if d.Size == 0 {
			continue
		}
		devs = append(devs, d)
	}
	markBootMedia(l.root(), devs)
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })
	return devs, nil
}

// Get returns the device at path (e.g. "/dev/vda"), honouring Allow.
func (l Lister) Get(path string) (BlockDevice, error) {
	devs, err := l.List()
	if err != nil {
		return BlockDevice{}, err
	}
	for _, d := range devs {
		if d.Path == path {
			return d, nil
		}
	}
	return BlockDevice{}, fmt.Errorf("block device %s: %w", path, ErrDeviceNotFound)
}

// ErrDeviceNotFound is returned when no device fits a request.
var ErrDeviceNotFound = errors.New("device not found")

func isVirtual(name string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (l Lister) readDevice(name, sysDir string) (BlockDevice, error) {
	d := BlockDevice{Name: name, Path: "/dev/" + name}
	sectors, err := readInt(filepath.Join(sysDir, "size"))
	if err != nil {
		return d, fmt.Errorf("read size of %s: %w", name, err)
	}
	d.Size = sectors * 512 // sysfs "size" is always in 512-byte units
	d.Major, d.Minor, err = readDevNum(filepath.Join(sysDir, "dev"))
	if err != nil {
		return d, fmt.Errorf("read dev of %s: %w", name, err)
	}
	d.Rotational = readString(filepath.Join(sysDir, "queue/rotational")) == "1"
	d.ReadOnly = readString(filepath.Join(sysDir, "ro")) == "1"
	d.Removable = readString(filepath.Join(sysDir, "removable")) == "1"
	d.LogicalSectorSize = int(readIntOr(filepath.Join(sysDir, "queue/logical_block_size"), 512))
	d.PhysicalSectorSize = int(readIntOr(filepath.Join(sysDir, "queue/physical_block_size"), int64(d.LogicalSectorSize)))
	readIdentity(l.root(), name, sysDir, &d)
	d.Partitions, err = l.readPartitions(name, sysDir)
	if err != nil {
		return d, err
	}
	return d, nil
}

func (l Lister) readPartitions(disk, sysDir string) ([]Partition, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return nil, fmt.Errorf("read partitions of %s: %w", disk, err)
	}
	var parts []Partition
	for _, e := range entries {
		pdir := filepath.Join(sysDir, e.Name())
		if !strings.HasPrefix(e.Name(), disk) || !exists(filepath.Join(pdir, "partition")) {
			continue
		}
		p := Partition{Name: e.Name(), Path: "/dev/" + e.Name()}
		p.Number = int(readIntOr(filepath.Join(pdir, "partition"), 0))
		p.Start = readIntOr(filepath.Join(pdir, "start"), 0) * 512
		p.Size = readIntOr(filepath.Join(pdir, "size"), 0) * 512
		p.Major, p.Minor, _ = readDevNum(filepath.Join(pdir, "dev"))
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

// hctlFromPath finds a SCSI host:channel:target:lun element in a sysfs path.
func hctlFromPath(p string) string {
	parts := strings.Split(p, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		f := strings.Split(parts[i], ":")
		if len(f) != 4 {
			continue
		}
		ok := true
		for _, x := range f {
			if _, err := strconv.Atoi(x); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return parts[i]
		}
	}
	return ""
}

// vpdSerial decodes the unit serial number VPD page (0x80) of a SCSI device.
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return strings.TrimSpace(string(b[4 : 4+n]))
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readString(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func readIntOr(p string, def int64) int64 {
	v, err := readInt(p)
	if err != nil {
		return def
	}
	return v
}

func readDevNum(p string) (int, int, error) {
	s := readString(p)
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("%s: bad device number %q: %w", p, s, fs.ErrInvalid)
	}
	maj, err1 := strconv.Atoi(a)
	mnr, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s: bad device number %q: %w", p, s, fs.ErrInvalid)
	}
	return maj, mnr, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
