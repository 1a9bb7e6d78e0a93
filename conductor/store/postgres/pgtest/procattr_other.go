//go:build !linux

package pgtest

import "syscall"

// serverProcAttr runs the server as cred. Outside Linux there is no parent
// death signal: a killed test binary leaves the server to Stop's caller.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
