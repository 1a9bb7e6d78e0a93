//go:build !linux

package loadtest

import "syscall"

// conductorProcAttr has no parent death signal outside Linux; the load test
// stops the conductor itself when it ends.
func conductorProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
