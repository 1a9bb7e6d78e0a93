package bootloader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// systemMounter uses mount(2).
type systemMounter struct{}

func (systemMounter) Mount(device, target, fstype string) error {
	if err := unix.Mount(device, target, fstype, 0, ""); err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: device + " on " + target, Err: err}
	}
	return nil
}

func (systemMounter) Bind(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "mount --bind", Path: source + " on " + target, Err: err}
	}
	return nil
}

func (systemMounter) Unmount(target string) error {
	var err error
	for i := 0; i < 3; i++ {
		if err = unix.Unmount(target, 0); err == nil || errors.Is(err, unix.EINVAL) {
			return nil
		}
		time.Sleep(time.Second)
	}
	if derr := unix.Unmount(target, unix.MNT_DETACH); derr == nil {
		return nil
	}
	return &os.PathError{Op: "umount", Path: target, Err: err}
}

func (systemMounter) DeviceNode(path string, major, minor int, dir string) (string, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		return path, nil
	}
	p := filepath.Join(dir, fmt.Sprintf("blk-%d-%d", major, minor))
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(major), uint32(minor)))); err != nil && !errors.Is(err, os.ErrExist) {
		return "", &os.PathError{Op: "mknod", Path: p, Err: err}
	}
	return p, nil
}

// runChroot runs argv inside root, the program found in the image's own
// directories.
func runChroot(ctx context.Context, root string, argv []string) ([]byte, error) {
	prog, err := findInRoot(root, argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, prog, argv[1:]...)
	cmd.Path = prog
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	return cmd.CombinedOutput()
}
