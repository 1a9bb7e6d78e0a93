package pgtest

import "syscall"

// serverProcAttr runs the server as cred and makes it die with us (SIGQUIT:
// postgres's immediate shutdown) if the test binary is killed before Stop.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
