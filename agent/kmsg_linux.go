package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// kernelLog reads the kernel's ring buffer (dmesg) through syslog(2).
func kernelLog() ([]byte, error) {
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		return nil, os.NewSyscallError("syslog(SIZE_BUFFER)", err)
	}
	buf := make([]byte, n)
	m, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return nil, os.NewSyscallError("syslog(READ_ALL)", err)
	}
	return buf[:m], nil
}
