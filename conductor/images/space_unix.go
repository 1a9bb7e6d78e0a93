//go:build linux || darwin

package images

import (
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// freeBytes is the space an unprivileged writer has on dir's file system.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// accessTime is a file's last access time (the cache sets it on each use;
// it does not rely on the file system updating it).
func accessTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return statAtime(st)
	}
	return fi.ModTime()
}
