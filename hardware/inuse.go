package hardware

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrDeviceInUse is returned for a disk that is mounted, holds a mounted
// partition, is used as swap or is held by another device (dm, md).
var ErrDeviceInUse = errors.New("device is in use")

// InUse reports whether the disk or any of its partitions is mounted, used as
// swap, or held by another block device, reading procfs and sysfs under root
// ("" means "/"). It returns nil when the disk is free, and an error wrapping
// ErrDeviceInUse that says who holds it otherwise.
func InUse(root string, d BlockDevice) error {
	if root == "" {
		root = "/"
	}
	nums := map[string]string{d.DevNum(): d.Path}
	names := map[string]string{d.Name: d.Path}
	for _, p := range d.Partitions {
		nums[fmt.Sprintf("%d:%d", p.Major, p.Minor)] = p.Path
		names[p.Name] = p.Path
	}
	var uses []string

	mounts, err := os.Open(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return fmt.Errorf("check %s in use: %w", d.Path, err)
	}
	defer mounts.Close()
	sc := bufio.NewScanner(mounts)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		source := ""
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				source = f[i+2]
				break
			}
		}
		if dev, ok := nums[f[2]]; ok {
			uses = append(uses, fmt.Sprintf("%s mounted at %s", dev, unescapeMount(f[4])))
			continue
		}
		if strings.HasPrefix(source, "/dev/") {
			if dev, ok := names[filepath.Base(source)]; ok {
				uses = append(uses, fmt.Sprintf("%s mounted at %s", dev, unescapeMount(f[4])))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("check %s in use: read mountinfo: %w", d.Path, err)
	}

	if b, err := os.ReadFile(filepath.Join(root, "proc/swaps")); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if dev, ok := names[filepath.Base(f[0])]; ok && strings.HasPrefix(f[0], "/dev/") {
				uses = append(uses, dev+" used as swap")
			}
		}
	}

	for name, dev := range names {
		dir := filepath.Join(root, "sys/class/block", name, "holders")
		holders, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, h := range holders {
			uses = append(uses, fmt.Sprintf("%s held by %s", dev, h.Name()))
		}
	}
	if len(uses) > 0 {
		return fmt.Errorf("%s: %w: %s", d.Path, ErrDeviceInUse, strings.Join(uses, "; "))
	}
	return nil
}

// unescapeMount undoes the octal escapes of mountinfo paths (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
