package hardware

import (
	"fmt"
	"sort"
	"strings"
)

// MinRootDiskSize is the smallest disk chosen when no hints are given
// (IPA's 4 GiB).
const MinRootDiskSize = 4 * GiB

// FindDevices returns every device that satisfies the hints, in the order
// given (the first one is what IPA would pick).
func FindDevices(devs []BlockDevice, hints Hints) []BlockDevice {
	var out []BlockDevice
	for _, d := range devs {
		if hints.Match(d) {
			out = append(out, d)
		}
	}
	return out
}

// SelectRootDevice picks the install disk: the first device matching the
// hints, or with no hints the smallest device of at least 4 GiB (by size,
// then name). Read-only devices and the medium the ramdisk came from are
// never chosen. The error names the hints and every device seen, so an
// operator can tell why nothing matched.
func SelectRootDevice(devs []BlockDevice, hints Hints) (BlockDevice, error) {
	writable := writableDevices(devs)
	if !hints.Empty() {
		if m := FindDevices(writable, hints); len(m) > 0 {
			return m[0], nil
		}
		return BlockDevice{}, fmt.Errorf("%w: no disk matches the root device hints %s; disks seen: %s",
			ErrDeviceNotFound, hints, describe(devs))
	}
	cands := make([]BlockDevice, 0, len(writable))
	for _, d := range writable {
		if d.Size >= MinRootDiskSize {
			cands = append(cands, d)
		}
	}
	if len(cands) == 0 {
		return BlockDevice{}, fmt.Errorf("%w: no disk of at least %d GiB; disks seen: %s",
			ErrDeviceNotFound, MinRootDiskSize/GiB, describe(devs))
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Size != cands[j].Size {
			return cands[i].Size < cands[j].Size
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0], nil
}

// SelectMatchingDevices returns every device the hints match, in the order
// FindDevices gives (the first is SelectRootDevice's choice), skipping
// read-only devices and the ramdisk's boot medium. Hints are required: with
// none, every large disk would match.
func SelectMatchingDevices(devs []BlockDevice, hints Hints) ([]BlockDevice, error) {
	if hints.Empty() {
		return nil, fmt.Errorf("%w: writing every matching disk needs root device hints", ErrDeviceNotFound)
	}
	writable := writableDevices(devs)
	if m := FindDevices(writable, hints); len(m) > 0 {
		return m, nil
	}
	return nil, fmt.Errorf("%w: no disk matches the root device hints %s; disks seen: %s",
		ErrDeviceNotFound, hints, describe(devs))
}

// writableDevices drops read-only devices and the ramdisk's boot medium.
func writableDevices(devs []BlockDevice) []BlockDevice {
	var writable []BlockDevice
	for _, d := range devs {
		if !d.ReadOnly && d.BootMedia == "" {
			writable = append(writable, d)
		}
	}
	return writable
}

func describe(devs []BlockDevice) string {
	if len(devs) == 0 {
		return "none"
	}
	s := make([]string, len(devs))
	for i, d := range devs {
		s[i] = d.String()
		if d.ReadOnly {
			s[i] += " read-only"
		}
		if d.BootMedia != "" {
			s[i] += " refused: boot medium of this ramdisk: " + d.BootMedia
		}
	}
	return strings.Join(s, ", ")
}
