package loadtest

import "syscall"

// conductorProcAttr makes the conductor under test die with the load test.
func conductorProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
