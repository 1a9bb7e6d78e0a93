package imagewriter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deviceTarget writes through two descriptors of the same device: one with
// O_DIRECT for aligned chunks and a buffered one for anything unaligned.
type deviceTarget struct {
	path    string
	direct  *os.File
	tail    *os.File
	size    int64
	sector  int64
	isBlock bool
	offload bool
	sysDir  string // /sys/dev/block/MAJ:MIN for block devices
}

// openTarget opens path for writing. A block device is opened O_EXCL, so a
// device that is mounted or held by another claimant fails with EBUSY.
func openTarget(path string) (target, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTarget, err)
	}
	t := &deviceTarget{path: path, sector: 512, isBlock: fi.Mode()&os.ModeDevice != 0}
	flags := os.O_RDWR | unix.O_DIRECT | unix.O_CLOEXEC
	if t.isBlock {
		flags |= os.O_EXCL
	}
	t.direct, err = os.OpenFile(path, flags, 0)
	if err != nil && !t.isBlock && errors.Is(err, unix.EINVAL) {
		// tmpfs and some other filesystems refuse O_DIRECT.
		t.direct, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%w: open %s exclusively: %w (mounted, or held by another process or device)", ErrTarget, path, err)
		}
		return nil, fmt.Errorf("%w: open %s: %w", ErrTarget, path, err)
	}
	t.tail, err = os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.direct.Close()
		return nil, fmt.Errorf("%w: open %s: %w", ErrTarget, path, err)
	}
	if t.isBlock {
		fd := int(t.direct.Fd())
		size, err := unix.IoctlGetInt(fd, unix.BLKGETSIZE64)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("%w: %s: %w", ErrTarget, path, os.NewSyscallError("ioctl(BLKGETSIZE64)", err))
		}
		t.size = int64(size)
		if ss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && ss > 0 {
			t.sector = int64(ss)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			t.sysDir = fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			if b, err := os.ReadFile(filepath.Join(t.sysDir, "queue/write_zeroes_max_bytes")); err == nil {
				v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				t.offload = v > 0
			}
		}
	} else {
		t.size = fi.Size()
		t.offload = true // fallocate, where the filesystem has it
	}
	return t, nil
}

func (t *deviceTarget) Path() string      { return t.path }
func (t *deviceTarget) Size() int64       { return t.size }
func (t *deviceTarget) SectorSize() int64 { return t.sector }
func (t *deviceTarget) ZeroOffload() bool { return t.offload }
func (t *deviceTarget) File() *os.File    { return t.tail }
func (t *deviceTarget) IsBlock() bool     { return t.isBlock }

func (t *deviceTarget) aligned(p []byte, off int64) bool {
	return len(p) > 0 && int64(len(p))%t.sector == 0 && off%t.sector == 0 &&
		int64(uintptr(unsafe.Pointer(&p[0])))%t.sector == 0
}

func (t *deviceTarget) WriteAt(p []byte, off int64) (int, error) {
	f := t.direct
	if !t.aligned(p, off) {
		f = t.tail
	}
	n, err := f.WriteAt(p, off)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) || off+int64(len(p)) > t.size {
			return n, fmt.Errorf("%w: write %s at offset %d: %w", ErrTooLarge, t.path, off, err)
		}
		return n, fmt.Errorf("%w: write %s at offset %d: %w", ErrTarget, t.path, off, err)
	}
	return n, nil
}

func (t *deviceTarget) ReadAt(p []byte, off int64) (int, error) {
	n, err := t.tail.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read %s at offset %d: %w", t.path, off, err)
	}
	return n, nil
}

func (t *deviceTarget) ReadDirectAt(p []byte, off int64) (int, error) {
	f := t.direct
	if !t.aligned(p, off) {
		f = t.tail
	}
	n, err := f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read %s at offset %d: %w", t.path, off, err)
	}
	return n, nil
}

func (t *deviceTarget) ZeroRange(off, n int64) error {
	if n <= 0 {
		return nil
	}
	if off < 0 || off+n > t.size {
		return fmt.Errorf("%w: zero %s [%d, %d) beyond its %d bytes", ErrTooLarge, t.path, off, off+n, t.size)
	}
	if t.isBlock {
		if off%t.sector != 0 || n%t.sector != 0 {
			return t.writeZeros(off, n)
		}
		r := [2]uint64{uint64(off), uint64(n)}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, t.direct.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0]))); e != 0 {
			return fmt.Errorf("%w: %s [%d, %d): %w", ErrTarget, t.path, off, off+n, os.NewSyscallError("ioctl(BLKZEROOUT)", e))
		}
		return nil
	}
	fd := int(t.tail.Fd())
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	return t.writeZeros(off, n)
}

func (t *deviceTarget) writeZeros(off, n int64) error {
	z := zeroBuffer()
	for n > 0 {
		k := min(n, int64(len(z)))
		if _, err := t.tail.WriteAt(z[:k], off); err != nil {
			return fmt.Errorf("%w: write zeros to %s at %d: %w", ErrTarget, t.path, off, err)
		}
		off += k
		n -= k
	}
	return nil
}

func (t *deviceTarget) Flush() error {
	for _, f := range []*os.File{t.tail, t.direct} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("%w: fsync %s: %w", ErrTarget, t.path, err)
		}
	}
	if t.isBlock {
		if err := unix.IoctlSetInt(int(t.direct.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrTarget, t.path, os.NewSyscallError("ioctl(BLKFLSBUF)", err))
		}
	}
	return nil
}

// PartitionPath follows the kernel's naming: sda → sda1, nvme0n1 →
// nvme0n1p1, loop3 → loop3p1.
func (t *deviceTarget) PartitionPath(n int) string {
	if !t.isBlock {
		return ""
	}
	sep := ""
	if last := t.path[len(t.path)-1]; last >= '0' && last <= '9' {
		sep = "p"
	}
	return t.path + sep + strconv.Itoa(n)
}

// SyncPartitions asks the kernel to re-read the table (BLKRRPART); when
// that is refused or leaves the kernel's view different from parts (a
// kernel without that table parser, a busy partition), it adds, resizes
// and deletes partitions one by one with BLKPG, as partprobe does.
func (t *deviceTarget) SyncPartitions(parts []kernelPartition) error {
	if !t.isBlock {
		return nil
	}
	fd := int(t.direct.Fd())
	rrErr := unix.IoctlSetInt(fd, unix.BLKRRPART, 0)
	have := t.kernelPartitions()
	want := map[int]kernelPartition{}
	for _, p := range parts {
		want[p.Number] = p
	}
	same := len(have) == len(want)
	for n, p := range want {
		if h, ok := have[n]; !ok || h != p {
			same = false
		}
	}
	if same {
		return nil
	}
	var errs []error
	for n, h := range have {
		if p, ok := want[n]; !ok || p != h {
			if err := blkpg(fd, unix.BLKPG_DEL_PARTITION, kernelPartition{Number: n}); err != nil {
				errs = append(errs, fmt.Errorf("delete partition %d: %w", n, err))
			}
		}
	}
	for n, p := range want {
		if h, ok := have[n]; !ok || h != p {
			if err := blkpg(fd, unix.BLKPG_ADD_PARTITION, p); err != nil {
				errs = append(errs, fmt.Errorf("add partition %d: %w", n, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %s: re-reading the partition table (BLKRRPART: %v): %w", ErrTarget, t.path, rrErr, err)
	}
	return nil
}

func blkpg(fd int, op int32, p kernelPartition) error {
	part := unix.BlkpgPartition{Start: p.Start, Length: p.Length, Pno: int32(p.Number)}
	arg := unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(part)), Data: (*byte)(unsafe.Pointer(&part))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); e != 0 {
		return os.NewSyscallError("ioctl(BLKPG)", e)
	}
	return nil
}

// kernelPartitions reads the partitions the kernel knows from sysfs.
func (t *deviceTarget) kernelPartitions() map[int]kernelPartition {
	out := map[int]kernelPartition{}
	if t.sysDir == "" {
		return out
	}
	dir, err := filepath.EvalSymlinks(t.sysDir)
	if err != nil {
		return out
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		pn, err := readInt(filepath.Join(sub, "partition"))
		if err != nil {
			continue
		}
		start, err1 := readInt(filepath.Join(sub, "start"))
		size, err2 := readInt(filepath.Join(sub, "size"))
		if err1 != nil || err2 != nil {
			continue
		}
		// sysfs counts 512-byte sectors whatever the logical size.
		out[int(pn)] = kernelPartition{Number: int(pn), Start: start * 512, Length: size * 512}
	}
	return out
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func (t *deviceTarget) Close() error {
	err1 := t.tail.Close()
	err2 := t.direct.Close()
	return errors.Join(err1, err2)
}
